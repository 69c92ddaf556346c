// diffuse-eval: the Fréchet distance of generated images with diffuse's own feature
// network (metrics/classifier.hpp, metrics/frechet.hpp). Two commands:
//
//   diffuse-eval classifier --data TRAIN --labels LABELS --test-data TEST --test-labels TEST_LABELS --out FILE
//       trains the feature network on labelled images (an IDX file and its labels, or a
//       folder of class folders with --class-folders), prints its accuracy on the test
//       images and writes its weights (safetensors, atomically) with that accuracy;
//   diffuse-eval fd --classifier FILE --reference TEST --images SAMPLES
//       prints the Fréchet distance between the features of two sets of images (an IDX
//       file or a folder of image files; a folder's grid.png, the grid diffuse-sample
//       writes beside the images, is left out);
//   diffuse-eval ema --snapshots RUN/ema-snapshots --sigma-rel 0.08 --out FILE
//       writes the power-function EMA of that width (EDM2's post-hoc EMA) from the
//       snapshots diffuse-train wrote: weights diffuse-sample reads.
//
// The distance compares sets only under one feature network: not Inception FID, and not
// between two classifiers' numbers (docs/quality.md).
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "diffuse/io/atomic_file.hpp"
#include "diffuse/io/data_error.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/image_folder.hpp"
#include "diffuse/metrics/classifier.hpp"
#include "diffuse/programs/cli.hpp"
#include "diffuse/programs/common.hpp"
#include "diffuse/programs/data.hpp"
#include "diffuse/programs/frechet_eval.hpp"
#include "diffuse/train/ema_reconstruction.hpp"

namespace diffuse::programs {

/// diffuse-eval's options (both commands).
struct EvalOptions {
  std::string data;         ///< classifier: --data, the training images
  std::string labels;       ///< classifier: --labels (IDX)
  std::string test_data;    ///< classifier: --test-data, the held-out images
  std::string test_labels;  ///< classifier: --test-labels (IDX)
  std::string out;          ///< classifier: --out, the weights file
  bool class_folders = false;    ///< classifier: --class-folders (labels from the sub-folders)
  std::string shape = "28x28x1";  ///< classifier: --shape of the images (HxWxC)
  std::size_t epochs = 3;         ///< classifier: --epochs
  std::size_t batch = 128;        ///< classifier: --batch
  double lr = 2e-3;               ///< classifier: --lr
  std::uint64_t seed = 0;         ///< classifier: --seed
  std::string classifier;  ///< fd: --classifier, the feature network's file
  std::string reference;   ///< fd: --reference, the real images
  std::string images;      ///< fd: --images, the generated images
  std::size_t count = 0;  ///< fd: --count, N images of --images (0: all)
  std::size_t skip = 0;   ///< fd: --skip, images of --images passed over before those
  std::string snapshots;  ///< ema: --snapshots, the ema-snapshots folder of a run
  double sigma_rel = 0.1;  ///< ema: --sigma-rel, the width to reconstruct
  std::uint64_t at_images = 0;  ///< ema: --at, the time in images (0: the latest snapshot's)
  bool resize = false;  ///< --resize images of another size
  int threads = 0;      ///< --threads
};


/// `diffuse-eval classifier` for images of (H, W, C).
template <std::size_t H, std::size_t W, std::size_t C>
int eval_train_classifier(const EvalOptions& o, const char* program) {
  constexpr std::size_t K = label_classes;
  std::vector<std::string> train_classes;  // class folders of --data, which --test-data must repeat
  // The programs' reader of labelled images (programs/data.hpp), and what the classifier
  // needs besides: labels it has classes for, and the same class folders in both sets.
  auto load = [&](const std::string& data, const std::string& labels) {
    TrainOptions t;
    t.data = data;
    t.labels = labels;
    t.class_folders = o.class_folders;
    t.resize = o.resize;
    TrainingData<H, W, C> d = load_training_data<H, W, C>(t);
    if (o.class_folders) {
      if (train_classes.empty()) train_classes = d.classes;
      else if (d.classes != train_classes)
        throw io::DataError(data, "class folders " + joined(d.classes) + ", but --data has " + joined(train_classes));
    }
    std::vector<int> l(d.images.size());
    for (std::size_t i = 0; i < l.size(); ++i) {
      l[i] = d.images.label(i);
      if (l[i] < 0 || std::size_t(l[i]) >= K)
        throw io::DataError(labels, "label " + std::to_string(l[i]) + ": the classifier takes classes 0.." +
                                        std::to_string(K - 1));
    }
    std::fprintf(stderr, "%s: %zu images of %zux%zux%zu from %s\n", program, l.size(), H, W, C, data.c_str());
    return std::pair{std::move(d), std::move(l)};
  };
  const auto [train_data, train_labels] = load(o.data, o.labels);
  const auto [test_data, test_labels] = load(o.test_data, o.test_labels);
  const auto train = train_data.images.images().view();
  const auto test = test_data.images.images().view();
  metrics::Classifier<H, W, C, K> net;
  metrics::train_classifier(net, train, train_labels,
                            {.epochs = o.epochs, .batch = o.batch, .lr = o.lr, .seed = o.seed},
                            [&](std::size_t epoch, double loss) {
                              std::fprintf(stderr, "%s: epoch %zu of %zu: mean cross-entropy %.4f\n", program,
                                           epoch + 1, o.epochs, loss);
                            });
  const double acc = metrics::accuracy(net, test, test_labels);
  std::printf("test accuracy %.4f (%zu images of %s)\n", acc, test.batch(), o.test_data.c_str());
  const std::map<std::string, std::string> meta = {{"diffuse.test_accuracy", exact_text(acc)},
                                                   {"diffuse.train_data", o.data},
                                                   {"diffuse.test_data", o.test_data},
                                                   {"diffuse.epochs", std::to_string(o.epochs)}};
  io::write_atomically(o.out, [&](const std::string& tmp) { metrics::save_classifier(net, tmp, meta); });
  std::fprintf(stderr, "%s: wrote %s\n", program, o.out.c_str());
  return 0;
}

/// `diffuse-eval fd` with the classifier `file` of images (H, W, C).
template <std::size_t H, std::size_t W, std::size_t C>
int eval_frechet(const EvalOptions& o, const io::SafetensorsFile& file, const char* program) {
  FrechetEvaluator<H, W, C> evaluate(file, o.reference, o.resize);
  const auto gen = load_eval_images<H, W, C>(o.images, o.resize, o.count, o.skip);
  if (gen.batch() < 2)
    throw UsageError("the Fréchet distance needs at least two images in each set (" + std::to_string(gen.batch()) +
                     " in --images)");
  const double d = evaluate(gen.view());
  std::fprintf(stderr, "%s: %zu images of %s against %zu of %s, features of %s\n", program, gen.batch(),
               o.images.c_str(), evaluate.reference_count(), o.reference.c_str(), o.classifier.c_str());
  std::printf("frechet_distance %.6g\n", d);
  return 0;
}

/// The whole of diffuse-eval: returns the exit status (0 done, 1 bad data or classifier
/// file, 2 bad command line).
inline int eval_main(int argc, char** argv) {
  const std::string name = program_name(argc, argv, "diffuse-eval");
  const char* program = name.c_str();
  EvalOptions o;
  CLI::App app{name + ": the Fréchet distance of generated images under diffuse's own feature network"};
  app.require_subcommand(1);
  auto* cls = app.add_subcommand("classifier", "train the feature network on labelled images and write its weights");
  cls->add_option("--data", o.data, "training images: an IDX file, or with --class-folders a folder of class folders")
      ->required();
  cls->add_option("--labels", o.labels, "their labels (IDX)");
  cls->add_option("--test-data", o.test_data, "held-out images to measure the accuracy on")->required();
  cls->add_option("--test-labels", o.test_labels, "their labels (IDX)");
  cls->add_flag("--class-folders", o.class_folders, "the labels are the sub-folders of --data and --test-data");
  cls->add_option("--out", o.out, "the classifier's weights (safetensors)")->required();
  cls->add_option("--shape", o.shape, "image shape HxWxC")->check(CLI::IsMember(eval_shapes))->capture_default_str();
  cls->add_option("--epochs", o.epochs, "passes over the data")->check(integer_in(1, 1000))->capture_default_str();
  cls->add_option("--batch", o.batch, "images per step")->check(integer_in(1, max_batch))->capture_default_str();
  cls->add_option("--lr", o.lr, "AdamW learning rate")->check(real_in(0, 10, true))->capture_default_str();
  cls->add_option("--seed", o.seed, "initialisation and shuffle")->capture_default_str();
  auto* fd = app.add_subcommand("fd", "print the Fréchet distance between the features of two sets of images");
  fd->add_option("--classifier", o.classifier, "the feature network (written by diffuse-eval classifier)")->required();
  fd->add_option("--reference", o.reference, "real images: an IDX file or a folder of image files")->required();
  fd->add_option("--images", o.images, "generated images: an IDX file or a folder (its grid.png left out)")->required();
  fd->add_option("--count", o.count, "use N images of --images (0: all)")
      ->check(integer_in(0, 100'000'000))->capture_default_str();
  fd->add_option("--skip", o.skip, "pass over the first N images of --images (disjoint sets of real images "
                                   "measure the distance's noise)")
      ->check(integer_in(0, 100'000'000))->capture_default_str();
  auto* ema = app.add_subcommand("ema", "write the power-function EMA of any width from a run's snapshots (EDM2 post-hoc EMA)");
  ema->add_option("--snapshots", o.snapshots, "the run's ema-snapshots folder (diffuse-train --out OUT: OUT/ema-snapshots)")
      ->required();
  ema->add_option("--sigma-rel", o.sigma_rel, "the width: the profile's standard deviation relative to the run's length "
                                              "(EDM2's sigma_rel; 0.05 and 0.10 are kept, others reconstructed)")
      ->check(real_in(0, 0.288, true))->capture_default_str();
  ema->add_option("--at", o.at_images, "the time, in images seen, of one of the snapshots (default: the latest)")
      ->check(integer_in(0, 1'000'000'000'000'000LL));
  ema->add_option("--out", o.out, "the averaged weights (safetensors)")->required();
  for (CLI::App* sub : {cls, fd}) {
    sub->add_flag("--resize", o.resize, "resize images of another size (else they are an error)");
    sub->add_option("--threads", o.threads, "OpenMP threads (default: all cores)")->check(integer_in(1, max_threads));
  }
  if (const int code = parse_command_line(app, argc, argv, program); code >= 0) return code;
  if (o.threads > 0) set_num_threads(o.threads);
  std::fprintf(stderr, "%s\n", info_line().c_str());
  return run_reporting_errors(program, [&] {
    if (ema->parsed()) {
      const auto snaps = train::list_power_ema_snapshots(o.snapshots);
      const double at = o.at_images ? double(o.at_images) : snaps.back().profile.images;
      const auto r = train::reconstruct_power_ema(snaps, {at, o.sigma_rel}, o.out);
      for (std::size_t i = 0; i < r.used.size(); ++i)
        std::fprintf(stderr, "%s: %+.6f x %s\n", program, r.fit.coefficients[i], r.used[i].path.c_str());
      std::printf("sigma_rel %s at %.0f images from %zu snapshots: profile error %.2f %%, wrote %s\n",
                  exact_text(o.sigma_rel).c_str(), at, r.used.size(), 100.0 * r.fit.relative_error, o.out.c_str());
      if (r.fit.relative_error > 0.1)
        std::fprintf(stderr, "%s: warning: the snapshots match this width poorly (profile error above 10 %%): "
                             "more snapshots (--ema-snapshot-every) or a width nearer 0.05-0.10 fit better\n", program);
      return 0;
    }
    if (cls->parsed()) {
      if (!o.class_folders && (o.labels.empty() || o.test_labels.empty()))
        throw UsageError("classifier: --labels and --test-labels name the classes of --data and --test-data "
                         "(or --class-folders for folders of class folders)");
      if (o.class_folders && (!o.labels.empty() || !o.test_labels.empty()))
        throw UsageError("classifier: --class-folders takes the labels from the folders; leave out --labels and --test-labels");
      if (o.shape == "28x28x1") return eval_train_classifier<28, 28, 1>(o, program);
      if (o.shape == "32x32x3") return eval_train_classifier<32, 32, 3>(o, program);
      return eval_train_classifier<64, 64, 3>(o, program);
    }
    if (!std::filesystem::is_regular_file(o.classifier))
      throw io::DataError(o.classifier, "no such file (make one with: " + name +
                                            " classifier --data ... --labels ... --test-data ... --test-labels ... --out FILE)");
    const io::SafetensorsFile file(o.classifier);
    const auto& m = file.metadata();
    const auto it = m.find(metrics::classifier_keys::shape);
    const std::string shape = it == m.end() ? "" : it->second;
    if (shape == "28x28x1") return eval_frechet<28, 28, 1>(o, file, program);
    if (shape == "32x32x3") return eval_frechet<32, 32, 3>(o, file, program);
    if (shape == "64x64x3") return eval_frechet<64, 64, 3>(o, file, program);
    throw io::DataError(o.classifier, "not a classifier written by diffuse-eval classifier (" +
                                          (shape.empty() ? std::string("its metadata give no image shape")
                                                         : "image shape " + shape + ", expected one of " +
                                                               joined(eval_shapes)) + ")");
  });
}

}  // namespace diffuse::programs

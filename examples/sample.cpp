// diffuse-sample: draws images from a trained EDM diffusion model (a checkpoint of
// diffuse-train, or a plain weights file with PyTorch names), or turns given images into
// new ones (img2img, SDEdit: noise them part of the way, then denoise), writing one PNG
// per image and a grid into the output folder.
//
//   diffuse-sample --checkpoint runs/fashion/checkpoint.safetensors --count 16 --out samples
//   diffuse-sample --checkpoint runs/fashion/model_ema.safetensors --init photos/ --strength 0.5
//   diffuse-sample --checkpoint runs/classes/checkpoint.safetensors --class 7 --guidance 2
//
// Image i of a run uses the noise of (seed, i), so the images do not depend on --batch.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <span>

#include <diffuse/diffusion/guidance.hpp>
#include <diffuse/diffusion/precond.hpp>
#include <diffuse/diffusion/sampler.hpp>
#include <diffuse/io/image.hpp>
#include <diffuse/io/image_folder.hpp>
#include <diffuse/metrics/ssim.hpp>
#include <diffuse/train/checkpoint.hpp>

#include "program.hpp"

namespace {

using namespace diffuse;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr const char* program = "diffuse-sample";

struct Options {
  std::string checkpoint;
  std::string model = "edm-mnist-small";
  std::string out = "samples";
  std::string sampler = "heun";
  std::string schedule = "karras";
  long long steps = 18;
  long long count = 16;
  long long batch = 16;
  std::uint64_t seed = 0;
  std::string init;
  double strength = 0.5;
  double sigma_min = 0;  // 0: the schedule's own
  double sigma_max = 0;
  double eta = -1;       // < 0: the sampler's own (1 for euler_ancestral, 0 for ddim)
  double churn = 0;
  int label = -1;        // --class; -1: none
  double guidance = programs::default_guidance;
  int threads = 0;
  bool no_ema = false;
  bool resize = false;
};

const std::vector<std::string> sampler_names = {"euler", "heun", "euler_ancestral", "dpmpp_2m", "ddim"};
const std::vector<std::string> schedule_names = {"karras", "exponential", "ve", "vp", "ddpm", "cosine"};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// A CSV field: quoted when it holds a comma, a quote or a line break.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// A command line that parses but makes no sense.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check_options(const Options& o, const CLI::App& app) {
  auto known = [](const std::vector<std::string>& names, const std::string& v) {
    return std::find(names.begin(), names.end(), v) != names.end();
  };
  if (o.checkpoint.empty()) throw UsageError("--checkpoint is required (a training checkpoint or a weights file)");
  if (o.steps < 1) throw UsageError("--steps must be at least 1 (got " + std::to_string(o.steps) + ")");
  if (o.count < 1) throw UsageError("--count must be at least 1 (got " + std::to_string(o.count) + ")");
  if (o.batch < 1) throw UsageError("--batch must be at least 1 (got " + std::to_string(o.batch) + ")");
  if (!known(sampler_names, o.sampler))
    throw UsageError("unknown sampler '" + o.sampler + "' (known: " + joined(sampler_names) + ")");
  if (!known(schedule_names, o.schedule))
    throw UsageError("unknown schedule '" + o.schedule + "' (known: " + joined(schedule_names) + ")");
  if (!known(programs::model_names, o.model))
    throw UsageError("unknown model '" + o.model + "' (known: " + joined(programs::model_names) + ")");
  if (!(o.strength >= 0.0 && o.strength <= 1.0))
    throw UsageError("--strength must be in [0, 1] (got " + number(o.strength) + ")");
  if (app.count("--strength") && o.init.empty()) throw UsageError("--strength goes with --init (img2img)");
  if (app.count("--resize") && o.init.empty()) throw UsageError("--resize goes with --init (img2img)");
  if (app.count("--count") && !o.init.empty())
    throw UsageError("--count is for generation; with --init every input image is processed");
  if (app.count("--sigma-min") && !(o.sigma_min > 0)) throw UsageError("--sigma-min must be positive");
  if (app.count("--sigma-max") && !(o.sigma_max > 0)) throw UsageError("--sigma-max must be positive");
  if (o.sigma_min > 0 && o.sigma_max > 0 && !(o.sigma_min < o.sigma_max))
    throw UsageError("--sigma-min must be below --sigma-max");
  if ((o.sigma_min > 0 || o.sigma_max > 0) && o.schedule == "ddpm")
    throw UsageError("--sigma-min/--sigma-max do not apply to the ddpm schedule (its betas fix its range)");
  if (app.count("--eta") && o.sampler != "euler_ancestral" && o.sampler != "ddim")
    throw UsageError("--eta applies to the samplers euler_ancestral and ddim, not " + o.sampler);
  if (app.count("--eta") && !(o.eta >= 0)) throw UsageError("--eta must not be negative");
  if (app.count("--churn") && o.sampler != "euler" && o.sampler != "heun")
    throw UsageError("--churn applies to the samplers euler and heun, not " + o.sampler);
  if (app.count("--churn") && !(o.churn >= 0)) throw UsageError("--churn must not be negative");
  if (app.count("--class") && o.label < 0) throw UsageError("--class must not be negative");
  if (app.count("--guidance") && !app.count("--class")) throw UsageError("--guidance goes with --class");
  if (app.count("--guidance") && !(o.guidance >= 0)) throw UsageError("--guidance must not be negative");
}

// The n sigmas of the chosen schedule, then 0.
std::vector<double> schedule_sigmas(const Options& o) {
  const auto n = static_cast<std::size_t>(o.steps);
  auto ranged = [&](auto s) {
    if (o.sigma_min > 0) s.sigma_min = o.sigma_min;
    if (o.sigma_max > 0) s.sigma_max = o.sigma_max;
    return s.sigmas(n);
  };
  if (o.schedule == "karras") return ranged(diffusion::KarrasSchedule{});
  if (o.schedule == "exponential") return ranged(diffusion::ExponentialSchedule{});
  if (o.schedule == "ve") return ranged(diffusion::VeSchedule{});
  if (o.schedule == "cosine") return ranged(diffusion::CosineSchedule{});
  if (o.schedule == "ddpm") return diffusion::DdpmSchedule{}.sigmas(n);
  diffusion::VpSchedule vp;  // "vp"
  if (o.sigma_min > 0 || o.sigma_max > 0)
    vp = diffusion::VpSchedule::from_range(o.sigma_min > 0 ? o.sigma_min : vp.sigma(vp.eps_s),
                                         o.sigma_max > 0 ? o.sigma_max : vp.sigma(1.0));
  return vp.sigmas(n);
}

// Calls f(sampler) with the chosen sampler (its own schedule and steps are unused: the
// program passes the sigmas to run()).
template <class F>
void with_sampler(const Options& o, F&& f) {
  const auto n = static_cast<std::size_t>(o.steps);
  if (o.sampler == "euler") return f(diffusion::Euler<>{.steps = n, .s_churn = o.churn});
  if (o.sampler == "heun") return f(diffusion::Heun<>{.steps = n, .s_churn = o.churn});
  if (o.sampler == "euler_ancestral")
    return f(diffusion::EulerAncestral<>{.steps = n, .eta = o.eta < 0 ? 1.0 : o.eta});
  if (o.sampler == "dpmpp_2m") return f(diffusion::DpmPp2M<>{.steps = n});
  return f(diffusion::ddim(n, o.eta < 0 ? 0.0 : o.eta));  // "ddim"
}

// The output file names of img2img: the inputs' names with .png, checked for clashes.
std::vector<std::string> output_names(const std::vector<std::string>& inputs, const fs::path& out) {
  std::set<std::string> used = {"grid.png"};
  std::vector<std::string> names;
  for (const auto& in : inputs) {
    std::string name = fs::path(in).stem().string() + ".png";
    if (!used.insert(name).second)
      throw UsageError("two outputs would be named " + name + " (from " + in + "); rename the input");
    names.push_back(std::move(name));
  }
  std::error_code ec;
  const fs::path in_dir = fs::weakly_canonical(fs::absolute(fs::path(inputs.front()).parent_path()), ec);
  if (!ec && in_dir == fs::weakly_canonical(fs::absolute(out), ec))
    throw UsageError("--out is the folder of the input images; choose another so that they are not overwritten");
  return names;
}

template <nn::UNetConfig Cfg>
int run(const Options& o, const std::vector<double>& sigmas) {
  using Net = nn::UNet<Cfg>;
  using Model = diffusion::EDMPrecond<Net>;
  using Batch = typename Net::Batch;
  constexpr std::size_t R = Cfg.image_size, C = Cfg.image_channels;
  using Image = Shape<R, R, C>;
  const auto steps = static_cast<std::size_t>(o.steps);
  const bool img2img = !o.init.empty();
  const fs::path out(o.out);

  // Inputs first (cheap to check), then the weights.
  std::vector<std::string> inputs, names;
  Tensor<float, Batch> init;
  if (img2img) {
    if (fs::is_directory(o.init)) inputs = io::image_files(o.init);
    else if (fs::exists(o.init)) inputs = {o.init};
    else throw io::DataError(o.init, "no such file or folder");
    names = output_names(inputs, out);
    init.resize(inputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) io::load_image<R, R, C>(inputs[i], init.item(i), o.resize);
  }
  const std::size_t total = img2img ? inputs.size() : static_cast<std::size_t>(o.count);
  if (!img2img)
    for (std::size_t i = 0; i < total; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "image-%04zu.png", i);
      names.emplace_back(name);
    }

  auto model = std::make_unique<Model>(diffusion::Edm{}, 0);
  std::string loaded;
  try {
    loaded = train::load_sampling_weights(model->net(), o.checkpoint, o.model, !o.no_ema);
  } catch (const io::SafetensorsError& e) {
    throw io::SafetensorsError(std::string(e.what()) + "; choose the configuration with --model");
  }
  std::fprintf(stderr, "model %s: %s\n", o.model.c_str(), loaded.c_str());
  if (o.label >= 0)
    std::fprintf(stderr, "class %d of %zu, classifier-free guidance %g\n", o.label, Cfg.classes, o.guidance);

  // img2img starts at sigmas[start]: strength 1 from sigma_max, 0 at sigma = 0 (unchanged).
  const std::size_t start = img2img ? static_cast<std::size_t>(std::lround((1.0 - o.strength) * double(steps))) : 0;
  const std::span<const double> run_sigmas(sigmas.data() + start, sigmas.size() - start);
  std::fprintf(stderr, "sampler %s, schedule %s, %zu steps (sigma %.4g to %.4g), seed %llu, batch %lld\n",
               o.sampler.c_str(), o.schedule.c_str(), steps, sigmas.front(), sigmas[steps - 1],
               static_cast<unsigned long long>(o.seed), o.batch);
  if (img2img)
    std::fprintf(stderr, "img2img: %zu image(s) from %s, strength %g: noised to sigma %.4g, then %zu of the %zu steps\n",
                 total, o.init.c_str(), o.strength, sigmas[start], steps - start, steps);
  if (img2img && start == steps && o.strength > 0)
    std::fprintf(stderr, "note: strength %g with %zu steps rounds to no step at all (the outputs are the inputs); "
                         "raise --steps or --strength\n", o.strength, steps);

  fs::create_directories(out);
  Tensor<float, Batch> all(total);  // every output, for the grid
  std::vector<double> ssim(total, 0.0);
  std::size_t evaluations = 0;
  std::optional<diffusion::Guided<Model>> guided;  // the model, guided towards --class if given
  auto denoise = [&](TensorView<const float, Batch> x, float sigma, TensorView<float, Batch> d) {
    evaluations += guided->network_passes();
    (*guided)(x, sigma, d);
  };
  diffusion::NoCallback callback;
  programs::install_stop_handler();
  double seconds = 0;
  std::size_t done = 0, batches_run = 0;
  const auto batch = static_cast<std::size_t>(o.batch);
  const std::size_t batches = (total + batch - 1) / batch;
  with_sampler(o, [&](const auto& sampler) {
    Tensor<float, Batch> x;
    for (std::size_t first = 0; first < total && !programs::stop_requested; first += batch) {
      const std::size_t b = std::min(batch, total - first);
      x.resize(b);
      guided.emplace(*model, std::vector<int>(b, o.label), o.guidance);
      const auto t0 = Clock::now();
      diffusion::NoiseSource<Batch> noise(o.seed, first, b);  // image i: the streams of (seed, i)
      noise.draw(x.view());
      const auto s0 = static_cast<float>(run_sigmas[0]);
      if (img2img) {
        x = init.items(first, b) + s0 * x;
      } else {
        x = x * s0;
      }
      sampler.run(denoise, x.view(), run_sigmas, noise, callback);
      const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
      seconds += dt;
      all.items(first, b) = clamp(x, -1.f, 1.f);
      for (std::size_t i = 0; i < b; ++i) {
        const std::size_t j = first + i;
        io::write_png((out / names[j]).string(), io::to_image8(TensorView<const float, Image>(all.item(j))));
        if (img2img) {
          ssim[j] = metrics::ssim(init.item(j), all.item(j));
          std::fprintf(stderr, "%s -> %s: SSIM %.4f\n", inputs[j].c_str(), names[j].c_str(), ssim[j]);
        }
      }
      done = first + b;
      ++batches_run;
      std::fprintf(stderr, "batch %zu/%zu: images %zu-%zu in %.2f s\n", first / batch + 1, batches, first, done - 1, dt);
    }
  });

  const TensorView<const float, Batch> finished(all.items(0, done));
  if (done > 0) io::write_png((out / "grid.png").string(), io::image_grid(finished));
  if (img2img && done > 0) {
    std::FILE* f = std::fopen((out / "ssim.csv").c_str(), "w");
    if (!f) throw io::DataError((out / "ssim.csv").string(), "cannot write");
    std::fprintf(f, "input,output,ssim\n");
    double mean = 0;
    for (std::size_t j = 0; j < done; ++j) {
      std::fprintf(f, "%s,%s,%.6f\n", csv_field(inputs[j]).c_str(), csv_field(names[j]).c_str(), ssim[j]);
      mean += ssim[j];
    }
    std::fclose(f);
    std::fprintf(stderr, "mean SSIM %.4f over %zu image(s) (input vs output, images in [-1, 1])\n",
                 mean / double(done), done);
  }
  const bool stopped = done < total;
  std::fprintf(stderr, "%s %zu image(s) in %.2f s: %.3f images/s, %zu network evaluations per image; %s\n",
               stopped ? "interrupted after" : (img2img ? "img2img on" : "sampled"), done, seconds,
               seconds > 0 ? double(done) / seconds : 0.0, batches_run ? evaluations / batches_run : 0,
               (out / "grid.png").c_str());
  return stopped ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"diffuse-sample: draws images from a trained EDM diffusion model, or reworks given ones (img2img)"};
  // A later occurrence of an option wins (cmake/setup.sh main passes defaults first).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--checkpoint", o.checkpoint,
                 "training checkpoint (checkpoint.safetensors) or weights file (model_ema.safetensors)");
  app.add_option("--model", o.model, "model configuration (" + joined(programs::model_names) + ")")
      ->capture_default_str();
  app.add_flag("--no-ema", o.no_ema, "use a training checkpoint's raw weights instead of their EMA");
  app.add_option("--out", o.out, "output folder (one PNG per image, grid.png)")->capture_default_str();
  app.add_option("--count", o.count, "images to generate")->capture_default_str();
  app.add_option("--batch", o.batch, "images per batch")->capture_default_str();
  app.add_option("--sampler", o.sampler, "sampler (" + joined(sampler_names) + ")")->capture_default_str();
  app.add_option("--schedule", o.schedule, "sigma schedule (" + joined(schedule_names) + ")")->capture_default_str();
  app.add_option("--steps", o.steps, "sampling steps")->capture_default_str();
  app.add_option("--seed", o.seed, "random seed (image i uses the noise of (seed, i))")->capture_default_str();
  app.add_option("--sigma-min", o.sigma_min, "lowest sigma of the schedule (default: the schedule's own)");
  app.add_option("--sigma-max", o.sigma_max, "highest sigma of the schedule (default: the schedule's own)");
  app.add_option("--eta", o.eta, "noise of euler_ancestral (default 1) and ddim (default 0)");
  app.add_option("--churn", o.churn, "EDM's S_churn for euler and heun (default 0: deterministic)");
  app.add_option("--class", o.label, "class to generate (a model trained with diffuse-train --labels)");
  app.add_option("--guidance", o.guidance,
                 "with --class: classifier-free guidance scale (1: plain conditional, 0: unconditional)")
      ->capture_default_str();
  app.add_option("--init", o.init, "img2img: an image file, or a folder of images, to start from");
  app.add_option("--strength", o.strength, "img2img: how much to change, 0 (nothing) to 1 (all)")
      ->capture_default_str();
  app.add_flag("--resize", o.resize, "img2img: resize images of another size (else they are rejected)");
  app.add_option("--threads", o.threads, "OpenMP threads (default: all cores)")->check(diffuse::programs::positive_number);
  app.set_version_flag("--version", diffuse::programs::info_line());
  bool info = false;
  app.add_flag("--info", info, "print version, instruction set, threads and device, then exit");
  if (const int code = diffuse::programs::parse_command_line(app, argc, argv, program); code >= 0) return code;
  if (o.threads > 0) diffuse::set_num_threads(o.threads);
  std::fprintf(stderr, "%s\n", diffuse::programs::info_line().c_str());
  if (info) return 0;
  try {
    check_options(o, app);
    const std::vector<double> sigmas = schedule_sigmas(o);
    const diffuse::train::CheckpointInfo saved = diffuse::train::read_checkpoint_info(o.checkpoint);
    if (saved.training_checkpoint && saved.model != o.model)
      throw diffuse::io::DataError(o.checkpoint, "checkpoint of model '" + saved.model + "', but --model is '" + o.model +
                                                     "' (pass --model " + saved.model + ")");
    if (!saved.training_checkpoint && o.no_ema)
      throw diffuse::io::DataError(o.checkpoint, "--no-ema applies to training checkpoints, but this file holds plain weights");
    const std::size_t classes = saved.classes;
    if (o.label >= 0 && classes == 0)
      throw UsageError("--class needs a class-conditional model, but " + o.checkpoint +
                       " was trained without labels (diffuse-train --labels)");
    if (o.label >= 0 && static_cast<std::size_t>(o.label) >= classes)
      throw UsageError("--class " + std::to_string(o.label) + " is not a class of the model (0.." +
                       std::to_string(classes - 1) + ")");
    if (classes != 0 && classes != diffuse::programs::label_classes)
      throw diffuse::io::DataError(o.checkpoint, "a model with " + std::to_string(classes) + " classes; the programs take " +
                                                     std::to_string(diffuse::programs::label_classes));
    return diffuse::programs::with_model(o.model, classes > 0,
                                         [&]<diffuse::nn::UNetConfig Cfg>() { return run<Cfg>(o, sigmas); });
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
}

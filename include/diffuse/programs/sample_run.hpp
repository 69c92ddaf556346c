// diffuse-sample's sampling run for one model configuration (see sample.hpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <type_traits>

#include "diffuse/diffusion/guidance.hpp"
#include "diffuse/diffusion/inpaint.hpp"
#include "diffuse/diffusion/precond.hpp"
#include "diffuse/diffusion/sampler.hpp"
#include "diffuse/diffusion/sampler_registry.hpp"
#include "diffuse/io/image.hpp"
#include "diffuse/io/image_folder.hpp"
#include "diffuse/metrics/ssim.hpp"
#include "diffuse/train/checkpoint.hpp"
#include "diffuse/unet.hpp"

#include "diffuse/programs/sample_options.hpp"

namespace diffuse::programs {

namespace detail {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A CSV field: quoted when it holds a comma, a quote or a line break.
inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// Calls f(sampler) with the chosen sampler (its own schedule and steps are unused: the
// program passes the sigmas to run(), so one instantiation serves every schedule).
template <class F>
void with_sampler(const SampleOptions& o, F&& f) {
  diffusion::with_sampler(
      o.sampler, {.steps = static_cast<std::size_t>(o.steps), .eta = o.eta, .churn = o.churn, .rtol = o.rtol, .atol = o.atol},
      f);
}

// Evaluations per image as a whole number when it is one ("35"), else with one decimal.
inline std::string per_image_text(std::size_t evaluations, std::size_t images) {
  if (images == 0) return "0";
  char text[32];
  if (evaluations % images == 0)
    std::snprintf(text, sizeof text, "%zu", evaluations / images);
  else
    std::snprintf(text, sizeof text, "%.1f", double(evaluations) / double(images));
  return text;
}

// The output file names of img2img: the inputs' names with .png, checked for clashes.
inline std::vector<std::string> output_names(const std::vector<std::string>& inputs, const fs::path& out) {
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

}  // namespace detail

template <nn::UNetConfig Cfg>
int sample_model(const SampleOptions& o, const std::vector<double>& sigmas) {
  using namespace detail;
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
    update_device(init);  // read on the host
  }
  // Inpainting: one mask for every input, white (1) regenerated, black (0) kept.
  Tensor<float, Batch> mask(o.mask.empty() ? 0 : inputs.size());
  if (!o.mask.empty()) {
    if (!fs::is_regular_file(o.mask)) throw io::DataError(o.mask, "no such file (--mask takes one image)");
    io::load_image<R, R, C>(o.mask, mask.item(0), o.resize);
    for (std::size_t i = 1; i < inputs.size(); ++i) mask.item(i) = mask.item(0);
    mask = (mask + 1.f) * 0.5f;  // [-1, 1] -> [0, 1]
    update_device(mask);
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
  const bool adaptive = diffusion::find_sampler(o.sampler)->adaptive;
  std::fprintf(stderr, "sampler %s, schedule %s, %s (sigma %.4g to %.4g), seed %llu, batch %lld\n",
               o.sampler.c_str(), o.schedule.c_str(),
               adaptive ? "steps chosen by the error" : (std::to_string(steps) + " steps").c_str(), sigmas.front(),
               sigmas[steps - 1], static_cast<unsigned long long>(o.seed), o.batch);
  if (img2img)
    std::fprintf(stderr, "img2img: %zu image(s) from %s, strength %g: noised to sigma %.4g, then %zu of the %zu steps\n",
                 total, o.init.c_str(), o.strength, sigmas[start], steps - start, steps);
  if (!o.mask.empty())
    std::fprintf(stderr, "inpainting: the white pixels of %s are regenerated, the black ones kept\n", o.mask.c_str());
  if (img2img && start == steps && o.strength > 0)
    std::fprintf(stderr, "note: strength %g with %zu steps rounds to no step at all (the outputs are the inputs); "
                         "raise --steps or --strength\n", o.strength, steps);

  fs::create_directories(out);
  Tensor<float, Batch> all(total);  // every output, for the grid
  std::vector<double> ssim(total, 0.0);
  std::size_t evaluations = 0;
  std::optional<diffusion::Guided<Model>> guided;  // the model, guided towards --class if given
  std::size_t first_of_batch = 0;  // the batch being sampled starts at this input (inpainting)
  // sigma: one float for the batch, or one per image (dpm_adaptive)
  auto denoise = [&](TensorView<const float, Batch> x, const auto& sigma, TensorView<float, Batch> d) {
    evaluations += x.batch() * guided->network_passes();  // network passes of single images
    (*guided)(x, sigma, d);
    if (!o.mask.empty())  // the known pixels stay the input's (diffusion/inpaint.hpp)
      diffusion::keep_known(d, TensorView<const float, Batch>(init.items(first_of_batch, x.batch())),
                            TensorView<const float, Batch>(mask.items(first_of_batch, x.batch())));
  };
  diffusion::NoCallback callback;
  install_stop_handler();
  double seconds = 0;
  std::size_t done = 0;
  const auto batch = static_cast<std::size_t>(o.batch);
  const std::size_t batches = (total + batch - 1) / batch;
  with_sampler(o, [&](const auto& sampler) {
    Tensor<float, Batch> x;
    for (std::size_t first = 0; first < total && !stop_requested; first += batch) {
      const std::size_t b = std::min(batch, total - first);
      x.resize(b);
      guided.emplace(*model, std::vector<int>(b, o.label), o.guidance);
      first_of_batch = first;
      const auto t0 = Clock::now();
      diffusion::NoiseSource<Batch> noise(o.seed, first, b);  // image i: the streams of (seed, i)
      noise.draw(x.view());
      const auto s0 = static_cast<float>(run_sigmas[0]);
      if (img2img) {
        x = init.items(first, b) + s0 * x;
      } else {
        x = x * s0;
      }
      using Run = decltype(sampler.run(denoise, x.view(), run_sigmas, noise, callback));
      if constexpr (std::is_same_v<Run, diffusion::AdaptiveStats>) {
        const diffusion::AdaptiveStats a = sampler.run(denoise, x.view(), run_sigmas, noise, callback);
        // what each image needed; the batch ran as long as its slowest image (the last line)
        std::fprintf(stderr, "dpm_adaptive: %.1f denoiser evaluations per image (at most %zu), %zu steps accepted, "
                             "%zu rejected\n", a.nfe(), a.max_evaluations, a.accepted, a.rejected);
      } else {
        sampler.run(denoise, x.view(), run_sigmas, noise, callback);
      }
      const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
      seconds += dt;
      all.items(first, b) = clamp(x, -1.f, 1.f);
      update_host(all.items(first, b));  // from the GPU, when sampling ran there
      for (std::size_t i = 0; i < b; ++i) {
        const std::size_t j = first + i;
        io::write_png((out / names[j]).string(), io::to_image8(TensorView<const float, Image>(all.item(j))));
        if (img2img) {
          ssim[j] = metrics::ssim(init.item(j), all.item(j));
          std::fprintf(stderr, "%s -> %s: SSIM %.4f\n", inputs[j].c_str(), names[j].c_str(), ssim[j]);
        }
      }
      done = first + b;
      std::fprintf(stderr, "batch %zu/%zu: images %zu-%zu in %.2f s\n", first / batch + 1, batches, first, done - 1, dt);
    }
  });

  const TensorView<const float, Batch> finished(all.items(0, done));
  if (done > 0) {  // the images as they are; the grid enlarged to a size people can look at
    const io::Image8 grid = io::image_grid(finished);
    io::write_png((out / "grid.png").string(), io::upscale_nearest(grid, io::readable_scale(grid.width)));
  }
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
  std::fprintf(stderr, "%s %zu image(s) in %.2f s: %.3f images/s, %s network evaluations per image; %s\n",
               stopped ? "interrupted after" : (img2img ? "img2img on" : "sampled"), done, seconds,
               seconds > 0 ? double(done) / seconds : 0.0, per_image_text(evaluations, done).c_str(),
               (out / "grid.png").c_str());
  return stopped ? 130 : 0;
}

}  // namespace diffuse::programs

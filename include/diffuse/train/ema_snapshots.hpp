// Snapshots of the power-function EMAs during training, for post-hoc EMA (EDM2): every
// so often the trainer's averages (TrainerConfig::power_ema) are written, one file per
// width, as plain weights (state_dict names, PyTorch layouts) that also say their width
// and time. diffuse-sample can sample any one of them; train/ema_reconstruction.hpp
// combines them into the average of another width.
//
// File names: phema-<images seen, 12 digits>-<sigma_rel, 3 decimals>.safetensors.
// Metadata: diffuse.model, diffuse.ema_sigma_rel, diffuse.ema_images (and no
// diffuse.format: they are weights, not training checkpoints).
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/optim/power_ema.hpp"
#include "diffuse/train/checkpoint.hpp"

namespace diffuse::train {

/// Metadata key of a snapshot's width (sigma_rel, exact decimal).
inline constexpr const char* ema_sigma_rel_key = "diffuse.ema_sigma_rel";
/// Metadata key of a snapshot's time (images seen when it was taken).
inline constexpr const char* ema_images_key = "diffuse.ema_images";

/// "phema-000000123456-0.050.safetensors".
inline std::string power_ema_snapshot_name(std::uint64_t images, double sigma_rel) {
  char name[80];
  std::snprintf(name, sizeof name, "phema-%012llu-%.3f.safetensors", static_cast<unsigned long long>(images), sigma_rel);
  return name;
}

/// Writes the trainer's power-function EMAs into `folder` (created if needed), one file per
/// width, each atomically; returns their paths (none when the trainer keeps no power EMA).
/// Throws io::DataError naming a file that cannot be written.
template <class Model, class Source, class Loss>
std::vector<std::string> save_power_ema_snapshots(const std::string& folder, const std::string& model_name,
                                                  Model& model, Trainer<Model, Source, Loss>& trainer) {
  std::vector<std::string> paths;
  optim::PowerEma& p = trainer.power_ema();
  if (p.size() == 0) return paths;
  std::filesystem::create_directories(folder);
  const auto refs = detail::param_refs(model.net());
  const std::uint64_t images = trainer.counters().images_seen;
  for (std::size_t k = 0; k < p.size(); ++k) {
    const double s = p.sigma_rels()[k];
    const std::string path = (std::filesystem::path(folder) / power_ema_snapshot_name(images, s)).string();
    io::write_atomically(path, [&](const std::string& tmp) {
      io::SafetensorsWriter w;
      p.average(k).for_each_param([&](std::string_view name, std::span<float> v) {
        const auto ref = refs.find(name);  // an average holds the parameters under their own names
        if (ref == refs.end())
          throw std::logic_error("diffuse::train: averaged parameter '" + std::string(name) + "' is not the model's");
        update_host(v.data(), v.size());  // the GPU's copy, while that is the device
        nn::write_param(w, ref->second, std::span<const float>(v), std::string(name));
      });
      w.set_metadata(keys::model, model_name);
      char text[32];
      std::snprintf(text, sizeof text, "%.17g", s);
      w.set_metadata(ema_sigma_rel_key, text);
      w.set_metadata(ema_images_key, std::to_string(images));
      w.write(tmp);
    });
    paths.push_back(path);
  }
  return paths;
}

}  // namespace diffuse::train

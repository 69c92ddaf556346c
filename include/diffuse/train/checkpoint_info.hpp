// What a checkpoint or weights file says about itself, read without building a model:
// the metadata keys of training checkpoints, CheckpointInfo and read_checkpoint_info().
// Light on purpose (the safetensors reader and the standard library): a program reads it
// before it chooses which model to build. Writing and restoring checkpoints is
// checkpoint.hpp.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include "diffuse/io/data_error.hpp"
#include "diffuse/io/safetensors.hpp"

namespace diffuse::train {

/// The value of the checkpoint's "diffuse.format" metadata this version writes and reads.
inline constexpr const char* checkpoint_format = "training-checkpoint-1";

/// Metadata keys of a training checkpoint. "diffuse." keys are written by
/// save_checkpoint; "train." keys are the programs' settings, stored as extra metadata.
namespace keys {
inline constexpr const char* format = "diffuse.format";              ///< checkpoint_format
inline constexpr const char* model = "diffuse.model";                ///< configuration name
inline constexpr const char* seed = "diffuse.seed";                  ///< the run's seed
inline constexpr const char* steps = "diffuse.steps";                ///< training steps done
inline constexpr const char* optimizer_steps = "diffuse.optimizer_steps";  ///< AdamW updates
inline constexpr const char* images_seen = "diffuse.images_seen";    ///< images trained on
inline constexpr const char* batch = "diffuse.batch";                ///< images per step
inline constexpr const char* data_size = "diffuse.data_size";        ///< images in the data set
inline constexpr const char* classes = "diffuse.classes";            ///< 0: unconditional
inline constexpr const char* lr = "train.lr";                        ///< learning rate
inline constexpr const char* data = "train.data";                    ///< data set path
inline constexpr const char* label_dropout = "train.label_dropout";  ///< fraction without label
inline constexpr const char* warmup = "train.warmup";                ///< learning-rate warm-up steps
inline constexpr const char* ema_half_life = "train.ema_half_life";  ///< EMA half-life, millions of images
inline constexpr const char* ema_rampup = "train.ema_rampup";        ///< EMA ramp-up ratio (absent: 0.05)
inline constexpr const char* xflip = "train.xflip";                  ///< "1": images mirrored half of the time
inline constexpr const char* class_names = "train.class_names";      ///< JSON array of the class folders' names
}  // namespace keys

/// The most classes a checkpoint's metadata may declare (far above any real model's).
inline constexpr std::uint64_t max_classes = 1'000'000;

/// What a checkpoint or weights file says about itself, read without building a model.
struct CheckpointInfo {
  std::string path;  ///< the file read
  bool training_checkpoint = false;  ///< true: written by save_checkpoint; false: plain weights
  std::string model;                 ///< configuration name (empty for weights that do not say)
  std::size_t classes = 0;           ///< classes of the model (0: unconditional)
  ///@{
  /// The trainer's counters, batch and data set size (training checkpoints; 0 otherwise).
  std::uint64_t seed = 0, steps = 0, optimizer_steps = 0, images_seen = 0, batch = 0, data_size = 0;
  ///@}
  std::map<std::string, std::string> metadata;  ///< every metadata entry, the caller's extras too

  /// A number stored as extra metadata (e.g. keys::label_dropout), if present. Throws
  /// io::DataError naming the file when it is there but not a number.
  std::optional<double> number(const std::string& key) const {
    const auto it = metadata.find(key);
    if (it == metadata.end()) return std::nullopt;
    try {
      std::size_t used = 0;
      const double v = std::stod(it->second, &used);
      if (used == it->second.size()) return v;
    } catch (const std::exception&) {
    }
    throw io::DataError(path, "metadata '" + key + "' is not a number: '" + it->second + "'");
  }
};

namespace detail {

// A counter stored as metadata: decimal digits only (no sign, space or exponent: std::stoull
// would take "-1" as 2^64 - 1), at most `max`. Errors name the file, the key and the value.
inline std::uint64_t metadata_number(const io::SafetensorsFile& f, const std::string& key,
                                     std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end())
    throw io::DataError(f.path(), "not a diffuse training checkpoint (metadata '" + key + "' is missing)");
  const std::string& text = it->second;
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw io::DataError(f.path(), "metadata '" + key + "' is not a whole number: '" + text + "'");
  std::uint64_t v = 0;  // digits only: from_chars either reads them all or overflows
  if (std::from_chars(text.data(), text.data() + text.size(), v).ec == std::errc::result_out_of_range || v > max)
    throw io::DataError(f.path(), "metadata '" + key + "' is " + text + ", more than " + std::to_string(max));
  return v;
}

// As metadata_number, `fallback` when the key is absent (files of older versions).
inline std::uint64_t metadata_number_or(const io::SafetensorsFile& f, const std::string& key, std::uint64_t fallback,
                                        std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) {
  return f.metadata().count(key) ? metadata_number(f, key, max) : fallback;
}

// Opens `path` as a safetensors file; a missing file or a folder is an io::DataError.
inline io::SafetensorsFile open_weights(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw io::DataError(path, "no such file");
  if (fs::is_directory(path, ec)) throw io::DataError(path, "is a folder, not a checkpoint or weights file");
  return io::SafetensorsFile(path);
}

inline CheckpointInfo info_of(const io::SafetensorsFile& f) {
  CheckpointInfo info;
  info.path = f.path();
  info.metadata = f.metadata();
  const auto format = info.metadata.find(keys::format);
  info.training_checkpoint = format != info.metadata.end();
  if (!info.training_checkpoint) {  // plain weights: classes from map_label.weight (C, classes)
    const auto model = info.metadata.find(keys::model);  // export_weights names it
    if (model != info.metadata.end()) info.model = model->second;
    if (f.contains("map_label.weight")) {
      const auto& shape = f.info("map_label.weight").shape;
      info.classes = shape.size() == 2 ? shape[1] : 0;
    }
    return info;
  }
  if (format->second != checkpoint_format)
    throw io::DataError(f.path(), "checkpoint format '" + format->second + "' is not supported (expected " +
                                      checkpoint_format + ")");
  const auto model = info.metadata.find(keys::model);
  info.model = model == info.metadata.end() ? "?" : model->second;
  info.classes = metadata_number_or(f, keys::classes, 0, max_classes);
  // Absent counters read as 0 here (sampling needs none of them); load_checkpoint, which
  // does, requires them.
  info.seed = metadata_number_or(f, keys::seed, 0);
  info.steps = metadata_number_or(f, keys::steps, 0);
  info.optimizer_steps = metadata_number_or(f, keys::optimizer_steps, 0);
  info.images_seen = metadata_number_or(f, keys::images_seen, 0);
  info.batch = metadata_number_or(f, keys::batch, 0);
  info.data_size = metadata_number_or(f, keys::data_size, 0);
  return info;
}

}  // namespace detail

/// "10 classes (class-conditional)" or "no classes (unconditional)".
inline std::string classes_text(std::size_t classes) {
  return classes ? std::to_string(classes) + " classes (class-conditional)" : "no classes (unconditional)";
}

/// Reads what a training checkpoint (save_checkpoint) or a plain weights file
/// (export_weights, or a PyTorch state_dict in safetensors form) says about itself.
/// Throws io::DataError (no such file, a folder, an unsupported checkpoint format, a
/// counter that is not a number) or io::SafetensorsError (not a safetensors file), each
/// naming the file.
inline CheckpointInfo read_checkpoint_info(const std::string& path) { return detail::info_of(detail::open_weights(path)); }

}  // namespace diffuse::train

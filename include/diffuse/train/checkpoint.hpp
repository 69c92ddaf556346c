// Training checkpoints: the whole state of a run in one safetensors file, written
// atomically, from which training resumes bit-identically.
//
// Tensors (all float32, PyTorch names and layouts, so that PyTorch can read them):
//   <param>                         the model's weights (the network's state_dict names)
//   ema.<param>                     the EMA of the weights (what sampling uses)
//   optim.<param>.exp_avg           AdamW's first moment
//   optim.<param>.exp_avg_sq        AdamW's second moment
// Metadata (strings):
//   diffuse.format = training-checkpoint-1, diffuse.model = the configuration's name,
//   diffuse.seed, diffuse.steps, diffuse.optimizer_steps, diffuse.images_seen
//   (the trainer's counters: with the seed they are its random state), diffuse.batch and
//   diffuse.data_size (a run resumes only with the same batch size and data set size,
//   which fix the images of every step), diffuse.classes (0 for an unconditional model;
//   a checkpoint loads only into a model with as many classes), plus whatever the caller
//   adds.
//
// export_weights() writes just the EMA (or current) weights: a file that loads into the
// PyTorch model with load_state_dict(strict=True). read_checkpoint_info() and
// load_sampling_weights() read either kind of file, for programs that sample.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/io/atomic_file.hpp"
#include "diffuse/io/data_error.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/nn/state_dict.hpp"
#include "diffuse/optim/ema.hpp"
#include "diffuse/train/trainer.hpp"

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
}  // namespace keys

/// What a checkpoint or weights file says about itself, read without building a model.
struct CheckpointInfo {
  std::string path;  ///< the file read
  bool training_checkpoint = false;  ///< true: written by save_checkpoint; false: plain weights
  std::string model;                 ///< configuration name (empty for plain weights)
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

// The network's parameter descriptions by name, for the layouts of the state tensors.
template <class Net>
auto param_refs(Net& net) {
  std::map<std::string, nn::ParamRef<float>, std::less<>> refs;
  net.for_each_param_ref([&](const nn::ParamRef<float>& p) {
    nn::ParamRef<float> q = p;
    q.name = {};  // p.name lives only during the visit
    refs.emplace(std::string(p.name), q);
  });
  return refs;
}

// The parameter a state tensor belongs to: "ema.X" -> X, "optim.X.exp_avg[_sq]" -> X.
inline std::string_view param_of(std::string_view state) {
  if (state.starts_with("ema.")) return state.substr(4);
  state.remove_prefix(6);  // "optim."
  for (std::string_view suffix : {".exp_avg_sq", ".exp_avg"})
    if (state.ends_with(suffix)) return state.substr(0, state.size() - suffix.size());
  return state;
}

// The description of the parameter that state tensor `state` belongs to.
inline const nn::ParamRef<float>& ref_of(const std::map<std::string, nn::ParamRef<float>, std::less<>>& refs,
                                         std::string_view state) {
  auto it = refs.find(param_of(state));
  if (it == refs.end())
    throw std::logic_error("diffuse::train: state tensor '" + std::string(state) + "' belongs to no parameter");
  return it->second;
}

inline std::uint64_t metadata_number(const io::SafetensorsFile& f, const std::string& key) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end())
    throw io::DataError(f.path(), "not a diffuse training checkpoint (metadata '" + key + "' is missing)");
  try {
    std::size_t used = 0;
    const auto v = std::stoull(it->second, &used);
    if (used != it->second.size()) throw std::invalid_argument("trailing characters");
    return v;
  } catch (const std::exception&) {
    throw io::DataError(f.path(), "metadata '" + key + "' is not a number: '" + it->second + "'");
  }
}

// As metadata_number, `fallback` when the key is absent (files of older versions).
inline std::uint64_t metadata_number_or(const io::SafetensorsFile& f, const std::string& key, std::uint64_t fallback) {
  return f.metadata().count(key) ? metadata_number(f, key) : fallback;
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
  info.classes = metadata_number_or(f, keys::classes, 0);
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

/// Writes the complete training state of `model` (a Precond around a network) and
/// `trainer` to `path`, atomically. `model_name` identifies the configuration; `extra`
/// adds metadata (e.g. keys::lr).
template <class Model, class Source, class Loss>
void save_checkpoint(const std::string& path, const std::string& model_name, Model& model,
                     Trainer<Model, Source, Loss>& trainer, const std::map<std::string, std::string>& extra = {}) {
  io::SafetensorsWriter w;
  auto refs = detail::param_refs(model.net());
  nn::write_state_dict(w, model.net());
  trainer.for_each_state([&](std::string_view name, std::span<float> v) {
    nn::write_param(w, detail::ref_of(refs, name), std::span<const float>(v), std::string(name));
  });
  const auto c = trainer.counters();
  w.set_metadata(keys::format, checkpoint_format);
  w.set_metadata(keys::model, model_name);
  w.set_metadata(keys::seed, std::to_string(c.seed));
  w.set_metadata(keys::steps, std::to_string(c.steps));
  w.set_metadata(keys::optimizer_steps, std::to_string(c.optimizer_steps));
  w.set_metadata(keys::images_seen, std::to_string(c.images_seen));
  w.set_metadata(keys::batch, std::to_string(trainer.config().batch));
  w.set_metadata(keys::data_size, std::to_string(trainer.data_size()));
  w.set_metadata(keys::classes, std::to_string(Trainer<Model, Source, Loss>::classes));
  for (const auto& [k, v] : extra) w.set_metadata(k, v);
  io::write_atomically(path, [&](const std::string& tmp) { w.write(tmp); });
}

/// Restores a state written by save_checkpoint. Throws io::DataError or
/// io::SafetensorsError naming the file (and tensor) when it is not a checkpoint of this
/// configuration, classes, batch size, data set size and seed; then neither the model,
/// the trainer nor the file is modified.
template <class Model, class Source, class Loss>
void load_checkpoint(const std::string& path, const std::string& model_name, Model& model,
                     Trainer<Model, Source, Loss>& trainer) {
  const io::SafetensorsFile f(path);
  const auto format = f.metadata().find(keys::format);
  if (format == f.metadata().end() || format->second != checkpoint_format)
    throw io::DataError(path, std::string("not a diffuse training checkpoint (expected metadata ") + keys::format +
                                  " = " + checkpoint_format + ")");
  const CheckpointInfo info = detail::info_of(f);
  if (info.model != model_name)
    throw io::DataError(path, "checkpoint of model '" + info.model + "', but this run uses '" + model_name + "'");
  constexpr std::size_t classes = Trainer<Model, Source, Loss>::classes;
  if (info.classes != classes)
    throw io::DataError(path, "checkpoint of a model with " + classes_text(info.classes) + ", but this one has " +
                                  classes_text(classes));
  // The counters are the run's random state, batch and data set size fix its images:
  // resuming needs every one of them.
  for (const char* key : {keys::seed, keys::steps, keys::optimizer_steps, keys::images_seen, keys::batch, keys::data_size})
    detail::metadata_number(f, key);
  if (info.batch != trainer.config().batch || info.data_size != trainer.data_size())
    throw io::DataError(path, "the run was trained with batch " + std::to_string(info.batch) + " on " +
                                  std::to_string(info.data_size) + " images; this one has batch " +
                                  std::to_string(trainer.config().batch) + " and " + std::to_string(trainer.data_size()) +
                                  " images, and would not continue it");
  if (info.seed != trainer.config().seed)
    throw io::DataError(path, "the run was trained with seed " + std::to_string(info.seed) + ", this one uses " +
                                  std::to_string(trainer.config().seed));
  // Read everything first: a bad tensor halfway leaves the model and trainer untouched.
  auto refs = detail::param_refs(model.net());
  std::vector<std::vector<float>> staged;
  auto stage = [&](const nn::ParamRef<float>& p, std::string_view name, std::size_t size) {
    staged.emplace_back(size);
    nn::read_param(f, p, std::span<float>(staged.back()), name);
  };
  model.net().for_each_param_ref([&](const nn::ParamRef<float>& p) { stage(p, p.name, p.value.size()); });
  trainer.for_each_state([&](std::string_view name, std::span<float> v) { stage(detail::ref_of(refs, name), name, v.size()); });
  std::size_t k = 0;
  auto commit = [&](std::span<float> dst) {
    std::copy(staged[k].begin(), staged[k].end(), dst.begin());
    ++k;
  };
  model.net().for_each_param_ref([&](const nn::ParamRef<float>& p) { commit(p.value); });
  trainer.for_each_state([&](std::string_view, std::span<float> v) { commit(v); });
  typename Trainer<Model, Source, Loss>::Counters c;
  c.seed = info.seed;
  c.steps = info.steps;
  c.optimizer_steps = info.optimizer_steps;
  c.images_seen = info.images_seen;
  trainer.set_counters(c);
}

/// Loads the weights to sample with into `net` from `path`: a training checkpoint's EMA
/// weights ("ema.<param>"; its raw weights "<param>" when `use_ema` is false), whose
/// metadata must name `model_name`, or a plain weights file with state_dict names
/// (export_weights, or one written from PyTorch). Returns what was loaded, e.g. "EMA
/// weights of training checkpoint run/checkpoint.safetensors (step 1000)". Throws
/// io::DataError or io::SafetensorsError naming the file (and tensor); `net` is then
/// unchanged.
template <class Net>
std::string load_sampling_weights(Net& net, const std::string& path, const std::string& model_name, bool use_ema = true) {
  const io::SafetensorsFile file = detail::open_weights(path);
  const CheckpointInfo info = detail::info_of(file);
  if (info.training_checkpoint && info.model != model_name)
    throw io::DataError(path, "checkpoint of model '" + info.model + "', not '" + model_name + "'");
  if (!info.training_checkpoint && !use_ema)
    throw io::DataError(path, "raw (non-EMA) weights exist only in training checkpoints; this file holds plain weights");
  try {
    nn::load_state_dict(net, file, info.training_checkpoint && use_ema ? "ema." : "");
  } catch (const io::SafetensorsError& e) {
    throw io::SafetensorsError(std::string(e.what()) + " (not weights of model '" + model_name + "'?)");
  }
  if (!info.training_checkpoint) return "weights of " + path;
  return std::string(use_ema ? "EMA weights" : "raw (non-EMA) weights") + " of training checkpoint " + path +
         " (step " + std::to_string(info.steps) + ")";
}

/// Writes the network's weights alone (state_dict names, PyTorch layouts), atomically.
template <class Net>
void export_weights(const std::string& path, Net& net) {
  io::write_atomically(path, [&](const std::string& tmp) { nn::save_state_dict(net, tmp); });
}

}  // namespace diffuse::train

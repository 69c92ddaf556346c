// Training checkpoints: the whole state of a run in one safetensors file, written
// atomically, from which training resumes bit-identically.
//
// Tensors (all float32, PyTorch names and layouts, so that PyTorch can read them):
//   <param>                         the model's weights (the network's state_dict names)
//   ema.<param>                     the EMA of the weights (what sampling uses)
//   phema050.<param> ...            power-function EMAs (TrainerConfig::power_ema), if kept
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
// PyTorch model with load_state_dict(strict=True). load_sampling_weights() reads either
// kind of file, for programs that sample; read_checkpoint_info() (checkpoint_info.hpp)
// tells what a file holds without building a model.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/io/atomic_file.hpp"
#include "diffuse/io/data_error.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/nn/state_dict.hpp"
#include "diffuse/optim/ema.hpp"
#include "diffuse/train/checkpoint_info.hpp"
#include "diffuse/train/trainer.hpp"

namespace diffuse::train {

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

// A power-function EMA's state tensor: "phema" + three digits + ".".
inline bool is_power_ema_state(std::string_view state) {
  return state.size() > power_ema_stem.size() + 4 && state.starts_with(power_ema_stem) &&
         state[power_ema_stem.size() + 3] == '.';
}

// The parameter a state tensor belongs to: "ema.X" -> X, "phema050.X" -> X,
// "optim.X.exp_avg[_sq]" -> X.
inline std::string_view param_of(std::string_view state) {
  if (state.starts_with(ema_prefix)) return state.substr(ema_prefix.size());
  if (is_power_ema_state(state)) return state.substr(power_ema_stem.size() + 4);
  state.remove_prefix(optimizer_prefix.size());
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

}  // namespace detail

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
    update_host(v.data(), v.size());  // the GPU's copy, while that is the device
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

/// What load_checkpoint found besides the state it restored.
struct CheckpointLoad {
  /// The trainer keeps power-function EMAs the file does not have (written without them,
  /// or by a version before them): they start from the file's EMA weights.
  bool power_ema_from_ema = false;
};

/// Restores a state written by save_checkpoint. Throws io::DataError or
/// io::SafetensorsError naming the file (and tensor) when it is not a checkpoint of this
/// configuration, classes, batch size, data set size and seed; then neither the model,
/// the trainer nor the file is modified.
template <class Model, class Source, class Loss>
CheckpointLoad load_checkpoint(const std::string& path, const std::string& model_name, Model& model,
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
  CheckpointLoad report;
  std::string ema_name;
  auto stage = [&](const nn::ParamRef<float>& p, std::string_view name, std::size_t size) {
    staged.emplace_back(size);
    if (detail::is_power_ema_state(name) && !f.contains(name)) {
      ema_name.assign(ema_prefix).append(detail::param_of(name));
      name = ema_name;
      report.power_ema_from_ema = true;
    }
    nn::read_param(f, p, std::span<float>(staged.back()), name);
  };
  model.net().for_each_param_ref([&](const nn::ParamRef<float>& p) { stage(p, p.name, p.value.size()); });
  trainer.for_each_state([&](std::string_view name, std::span<float> v) { stage(detail::ref_of(refs, name), name, v.size()); });
  std::size_t k = 0;
  auto commit = [&](std::span<float> dst) {
    std::copy(staged[k].begin(), staged[k].end(), dst.begin());
    update_device(dst.data(), dst.size());
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
  return report;
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
  if (!info.model.empty() && info.model != model_name)
    throw io::DataError(path, "holds model '" + info.model + "', not '" + model_name + "'");
  if (!info.training_checkpoint && !use_ema)
    throw io::DataError(path, "raw (non-EMA) weights exist only in training checkpoints; this file holds plain weights");
  try {
    nn::load_state_dict(net, file, info.training_checkpoint && use_ema ? ema_prefix : std::string_view{});
  } catch (const io::SafetensorsError& e) {
    throw io::SafetensorsError(std::string(e.what()) + " (not weights of model '" + model_name + "'?)");
  }
  if (!info.training_checkpoint) return "weights of " + path;
  return std::string(use_ema ? "EMA weights" : "raw (non-EMA) weights") + " of training checkpoint " + path +
         " (step " + std::to_string(info.steps) + ")";
}

/// Writes the network's weights alone (state_dict names, PyTorch layouts), atomically;
/// with a `model_name`, the file says which configuration it holds (metadata
/// keys::model, which PyTorch's loaders ignore).
template <class Net>
void export_weights(const std::string& path, Net& net, const std::string& model_name = {}) {
  io::write_atomically(path, [&](const std::string& tmp) {
    io::SafetensorsWriter w;
    nn::write_state_dict(w, net);
    if (!model_name.empty()) w.set_metadata(keys::model, model_name);
    w.write(tmp);
  });
}

}  // namespace diffuse::train

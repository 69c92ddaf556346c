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
// PyTorch model with load_state_dict(strict=True).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/io/atomic_file.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/train/trainer.hpp"

namespace diffuse::train {

inline constexpr const char* checkpoint_format = "training-checkpoint-1";

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

// `values` in diffuse's layout as a tensor of `w` in PyTorch's (shape, order).
inline void add_like(io::SafetensorsWriter& w, std::string name, const nn::ParamRef<float>& p,
                     std::span<const float> values) {
  std::vector<float> torch(values.begin(), values.end());
  if (p.layout == nn::ParamLayout::conv_hwio)
    kernels::hwio_to_oihw(values.data(), torch.data(), kernels::index_t(p.torch_shape[0]),
                          kernels::index_t(p.torch_shape[1]), kernels::index_t(p.torch_shape[2]));
  w.add<float>(std::move(name), std::vector<std::size_t>(p.torch_shape.begin(), p.torch_shape.begin() + p.torch_rank),
               std::span<const float>(torch));
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

}  // namespace detail

/// "10 classes (class-conditional)" or "no classes (unconditional)".
inline std::string classes_text(std::size_t classes) {
  return classes ? std::to_string(classes) + " classes (class-conditional)" : "no classes (unconditional)";
}

/// Writes the complete training state of `model` (a Precond around a network) and
/// `trainer` to `path`, atomically. `model_name` identifies the configuration.
template <class Model, class Source>
void save_checkpoint(const std::string& path, const std::string& model_name, Model& model,
                     Trainer<Model, Source>& trainer, const std::map<std::string, std::string>& extra = {}) {
  io::SafetensorsWriter w;
  auto refs = detail::param_refs(model.net());
  model.net().for_each_param_ref([&](const nn::ParamRef<float>& p) {
    detail::add_like(w, std::string(p.name), p, std::span<const float>(p.value));
  });
  trainer.for_each_state([&](std::string_view name, std::span<float> v) {
    detail::add_like(w, std::string(name), detail::ref_of(refs, name), std::span<const float>(v));
  });
  const auto c = trainer.counters();
  w.set_metadata("diffuse.format", checkpoint_format);
  w.set_metadata("diffuse.model", model_name);
  w.set_metadata("diffuse.seed", std::to_string(c.seed));
  w.set_metadata("diffuse.steps", std::to_string(c.steps));
  w.set_metadata("diffuse.optimizer_steps", std::to_string(c.optimizer_steps));
  w.set_metadata("diffuse.images_seen", std::to_string(c.images_seen));
  w.set_metadata("diffuse.batch", std::to_string(trainer.config().batch));
  w.set_metadata("diffuse.data_size", std::to_string(trainer.data_size()));
  w.set_metadata("diffuse.classes", std::to_string(Trainer<Model, Source>::classes));
  for (const auto& [k, v] : extra) w.set_metadata(k, v);
  io::write_atomically(path, [&](const std::string& tmp) { w.write(tmp); });
}

/// The metadata of a checkpoint (to read settings before building anything).
inline std::map<std::string, std::string> checkpoint_metadata(const std::string& path) {
  return io::SafetensorsFile(path).metadata();
}

/// Restores a state written by save_checkpoint. Throws io::DataError or
/// io::SafetensorsError naming the file (and tensor) when it is not a checkpoint of this
/// configuration; the file itself is never modified.
template <class Model, class Source>
void load_checkpoint(const std::string& path, const std::string& model_name, Model& model,
                     Trainer<Model, Source>& trainer) {
  const io::SafetensorsFile f(path);
  auto format = f.metadata().find("diffuse.format");
  if (format == f.metadata().end() || format->second != checkpoint_format)
    throw io::DataError(path, "not a diffuse training checkpoint (expected metadata diffuse.format = " +
                                  std::string(checkpoint_format) + ")");
  auto model_it = f.metadata().find("diffuse.model");
  const std::string saved_model = model_it == f.metadata().end() ? "?" : model_it->second;
  if (saved_model != model_name)
    throw io::DataError(path, "checkpoint of model '" + saved_model + "', but this run uses '" + model_name + "'");
  constexpr std::size_t classes = Trainer<Model, Source>::classes;
  const auto saved_classes = detail::metadata_number_or(f, "diffuse.classes", 0);
  if (saved_classes != classes)
    throw io::DataError(path, "checkpoint of a model with " + classes_text(saved_classes) + ", but this one has " +
                                  classes_text(classes));
  typename Trainer<Model, Source>::Counters c;
  c.seed = detail::metadata_number(f, "diffuse.seed");
  c.steps = detail::metadata_number(f, "diffuse.steps");
  c.optimizer_steps = detail::metadata_number(f, "diffuse.optimizer_steps");
  c.images_seen = detail::metadata_number(f, "diffuse.images_seen");
  const auto batch = detail::metadata_number(f, "diffuse.batch");
  const auto data_size = detail::metadata_number(f, "diffuse.data_size");
  if (batch != trainer.config().batch || data_size != trainer.data_size())
    throw io::DataError(path, "the run was trained with batch " + std::to_string(batch) + " on " +
                                  std::to_string(data_size) + " images; this one has batch " +
                                  std::to_string(trainer.config().batch) + " and " + std::to_string(trainer.data_size()) +
                                  " images, and would not continue it");
  if (c.seed != trainer.config().seed)
    throw io::DataError(path, "the run was trained with seed " + std::to_string(c.seed) + ", this one uses " +
                                  std::to_string(trainer.config().seed));
  // Read everything first: a bad tensor halfway leaves the model and trainer untouched.
  auto refs = detail::param_refs(model.net());
  std::vector<std::vector<float>> staged;
  auto stage = [&](nn::ParamRef<float> p, std::string_view name, std::size_t size) {
    p.name = name;
    staged.emplace_back(size);
    io::read_param(f, p, std::span<float>(staged.back()));
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
  trainer.set_counters(c);
}

/// Writes the network's weights alone (state_dict names, PyTorch layouts), atomically.
template <class Net>
void export_weights(const std::string& path, Net& net) {
  io::write_atomically(path, [&](const std::string& tmp) { io::save_params(net, tmp); });
}

}  // namespace diffuse::train

// PyTorch state dicts: the one place that maps diffuse's parameters to PyTorch's names,
// shapes and element orders, for loading and for saving.
//
// Names and shapes come from the layers (ParamRef: the state_dict name, the PyTorch
// shape, the layout). Two layouts differ from PyTorch's:
//   convolution weights  diffuse HWIO [k][k][Cin][Cout]  <->  PyTorch OIHW [Cout][Cin][k][k]
//   activations          diffuse NHWC [N][H][W][C]       <->  PyTorch NCHW [N][C][H][W]
// (activations only for comparing with PyTorch; the network never stores them). Plain
// copies: conversions happen once per load or save, never in a training step.
//
// The file format itself (safetensors) is io/safetensors.hpp, which knows nothing of
// layers. Training checkpoints (weights + optimiser + EMA state) are train/checkpoint.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/io/safetensors.hpp"
#include "diffuse/nn/param.hpp"

namespace diffuse::nn {

/// dst[n][y][x][c] = src[n][c][y][x] (PyTorch activations -> diffuse).
template <class T>
void nchw_to_nhwc(const T* src /*[N][C][H][W]*/, T* dst /*[N][H][W][C]*/, std::size_t n, std::size_t c,
                  std::size_t h, std::size_t w) {
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t ch = 0; ch < c; ++ch)
      for (std::size_t p = 0; p < h * w; ++p) dst[(i * h * w + p) * c + ch] = src[(i * c + ch) * h * w + p];
}

/// dst[n][c][y][x] = src[n][y][x][c] (diffuse activations -> PyTorch).
template <class T>
void nhwc_to_nchw(const T* src /*[N][H][W][C]*/, T* dst /*[N][C][H][W]*/, std::size_t n, std::size_t c,
                  std::size_t h, std::size_t w) {
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t ch = 0; ch < c; ++ch)
      for (std::size_t p = 0; p < h * w; ++p) dst[(i * c + ch) * h * w + p] = src[(i * h * w + p) * c + ch];
}

/// dst[kh][kw][ci][co] = src[co][ci][kh][kw] (PyTorch Conv2d.weight -> diffuse).
template <class T>
void oihw_to_hwio(const T* src /*[Cout][Cin][k][k]*/, T* dst /*[k][k][Cin][Cout]*/, std::size_t cout,
                  std::size_t cin, std::size_t k) {
  for (std::size_t co = 0; co < cout; ++co)
    for (std::size_t ci = 0; ci < cin; ++ci)
      for (std::size_t t = 0; t < k * k; ++t) dst[(t * cin + ci) * cout + co] = src[(co * cin + ci) * k * k + t];
}

/// dst[co][ci][kh][kw] = src[kh][kw][ci][co] (diffuse -> PyTorch Conv2d.weight).
template <class T>
void hwio_to_oihw(const T* src /*[k][k][Cin][Cout]*/, T* dst /*[Cout][Cin][k][k]*/, std::size_t cout,
                  std::size_t cin, std::size_t k) {
  for (std::size_t co = 0; co < cout; ++co)
    for (std::size_t ci = 0; ci < cin; ++ci)
      for (std::size_t t = 0; t < k * k; ++t) dst[(co * cin + ci) * k * k + t] = src[(t * cin + ci) * cout + co];
}

/// PyTorch's shape of parameter `p`.
template <class T>
std::vector<std::size_t> torch_shape(const ParamRef<T>& p) {
  return {p.torch_shape.begin(), p.torch_shape.begin() + p.torch_rank};
}

/// `values` (diffuse's layout of `p`) in PyTorch's element order.
template <class T>
std::vector<T> to_torch_layout(const ParamRef<T>& p, std::span<const T> values) {
  std::vector<T> torch(values.begin(), values.end());
  if (p.layout == ParamLayout::conv_hwio)
    hwio_to_oihw(values.data(), torch.data(), p.torch_shape[0], p.torch_shape[1], p.torch_shape[2]);
  return torch;
}

/// Reads tensor `name` of `file` (by default the parameter's own name) into `out` in
/// diffuse's layout of `p`, checking PyTorch's shape and the dtype (F32, F64, F16, BF16
/// convert). Throws io::SafetensorsError naming the file and tensor.
template <class T>
void read_param(const io::SafetensorsFile& file, const ParamRef<T>& p, std::span<T> out, std::string_view name = {}) {
  if (name.empty()) name = p.name;
  const std::vector<std::size_t> shape = torch_shape(p);
  if (p.layout == ParamLayout::conv_hwio) {
    std::vector<T> torch(out.size());
    file.read<T>(name, shape, std::span<T>(torch));
    oihw_to_hwio(torch.data(), out.data(), p.torch_shape[0], p.torch_shape[1], p.torch_shape[2]);
  } else {
    file.read<T>(name, shape, out);
  }
}

/// Adds `values` (diffuse's layout of `p`) to `w` as tensor `name` (by default the
/// parameter's own name) in PyTorch's shape and order.
template <class T>
void write_param(io::SafetensorsWriter& w, const ParamRef<T>& p, std::span<const T> values, std::string name = {}) {
  if (name.empty()) name = std::string(p.name);
  const std::vector<T> torch = to_torch_layout(p, values);
  w.add<T>(std::move(name), torch_shape(p), std::span<const T>(torch));
}

/// Reads every parameter of `model` (a network with value_type and for_each_param_ref,
/// e.g. nn::UNet) from the tensors "<prefix><state_dict name>" of `file`: PyTorch names
/// and layouts, as a state_dict saved with safetensors.torch.save_file. Every parameter
/// must be present with its exact shape; other tensors are ignored. Reads them all
/// before changing the model: on an error (io::SafetensorsError naming the file and the
/// tensor) the model is untouched.
template <class Model>
void load_state_dict(Model& model, const io::SafetensorsFile& file, std::string_view prefix = {}) {
  using T = typename Model::value_type;
  std::vector<std::vector<T>> staged;
  std::string name;
  model.for_each_param_ref([&](const ParamRef<T>& p) {
    name.assign(prefix);
    name += p.name;
    staged.emplace_back(p.value.size());
    read_param(file, p, std::span<T>(staged.back()), name);
  });
  std::size_t k = 0;
  model.for_each_param_ref([&](const ParamRef<T>& p) {
    std::copy(staged[k].begin(), staged[k].end(), p.value.begin());
    update_device(p.value.data(), p.value.size());
    ++k;
  });
}

/// load_state_dict from the safetensors file at `path`.
template <class Model>
void load_state_dict(Model& model, const std::string& path, std::string_view prefix = {}) {
  load_state_dict(model, io::SafetensorsFile(path), prefix);
}

/// Adds every parameter of `model` (or its gradient, with grads = true) to `w` as
/// "<prefix><state_dict name>" in PyTorch's shapes and layouts.
template <class Model>
void write_state_dict(io::SafetensorsWriter& w, Model& model, std::string_view prefix = {}, bool grads = false) {
  using T = typename Model::value_type;
  model.for_each_param_ref([&](const ParamRef<T>& p) {
    const std::span<T> v = grads ? p.grad : p.value;
    update_host(v.data(), v.size());  // the GPU's copy, while that is the device
    write_param(w, p, std::span<const T>(v), std::string(prefix) + std::string(p.name));
  });
}

/// Writes the parameters of `model` (or their gradients, with grads = true) to `path`: a
/// file that loads into the PyTorch model with load_state_dict(strict=True). Not atomic
/// (train::export_weights is); throws io::SafetensorsError when the file cannot be written.
template <class Model>
void save_state_dict(Model& model, const std::string& path, bool grads = false) {
  io::SafetensorsWriter w;
  write_state_dict(w, model, {}, grads);
  w.write(path);
}

}  // namespace diffuse::nn

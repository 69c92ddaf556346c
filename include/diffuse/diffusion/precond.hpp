// Preconditionings (EDM Table 1) and the wrapper that turns a raw network F into a
// denoiser D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),
// with its backward pass and the denoising score-matching loss.
//
// A preconditioning (Edm, Vp, Ve) is a value type with the coefficients of each noise
// level:
//
//             c_skip             c_out                 c_in              c_noise
//   Edm  sd^2/(s^2+sd^2)   s sd/sqrt(s^2+sd^2)   1/sqrt(s^2+sd^2)   ln(s)/4
//   Vp   1                 -s                    1/sqrt(s^2+1)      (M-1) t(s)
//   Ve   1                 s                     1                  ln(s/2)
//
// The training loss (how sigma is drawn, how each level weighs) is a type of its own,
// loss.hpp (EDMLoss, VPLoss, VELoss), as in EDM; default_loss(policy) is the one EDM pairs
// with each preconditioning.
//
// Precond<Policy, Net> owns the network and keeps every buffer it needs as a member, so
// after the first call for a given batch size it allocates nothing. It is itself a
// denoiser for the samplers (operator() with one sigma for the batch) and forwards
// for_each_param / zero_grad to the network for the optimiser.
//
// The loss (EDM's convention): per image, lambda(sigma_i) * sum over pixels of
// (D(y_i + sigma_i n_i; sigma_i) - y_i)^2, then the mean over the images of the batch.
// Summing over pixels (not averaging) is what EDM's training loop does (loss.sum() /
// batch); it makes the loss and its gradient scale with the image size.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/error.hpp"
#include "diffuse/core/ops.hpp"
#include "diffuse/core/random.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/diffusion/loss.hpp"
#include "diffuse/diffusion/noise.hpp"
#include "diffuse/diffusion/schedule.hpp"
#include "diffuse/kernels/offload.hpp"
#include "diffuse/nn/labels.hpp"

/// Diffusion in EDM's formulation (Karras et al. 2022): preconditionings, training
/// losses, sigma schedules, noise, classifier-free guidance and the samplers.
namespace diffuse::diffusion {

/// The four coefficients of a preconditioning at one noise level (EDM Table 1).
struct Coefficients {
  ///@{
  /// D(x; sigma) = c_skip x + c_out F(c_in x, c_noise).
  double c_skip, c_out, c_in, c_noise;
  ///@}
};

/// EDM's preconditioning (Karras et al. 2022, Table 1, "ours").
struct Edm {
  double sigma_data = 0.5;  ///< standard deviation of the data (EDM's sigma_data)

  /// c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2),
  /// c_noise = ln(s)/4.
  Coefficients coefficients(double sigma) const {
    const double sd2 = sigma_data * sigma_data, r = std::sqrt(sigma * sigma + sd2);
    return {sd2 / (sigma * sigma + sd2), sigma * sigma_data / r, 1.0 / r, 0.25 * std::log(sigma)};
  }
};

/// The VP preconditioning (Song et al. 2021, DDPM++; EDM Table 1 "VP").
struct Vp {
  double beta_d = 19.9;  ///< slope of the linear beta(t) = beta_min + beta_d t
  double beta_min = 0.1;  ///< beta(0)
  double M = 1000;  ///< DDPM timesteps: c_noise = (M - 1) t(sigma) (EDM's M)

  ///@{
  /// sigma(t) and its inverse t(sigma) of the VP SDE (vp_sigma, vp_t).
  double sigma(double t) const { return vp_sigma(beta_d, beta_min, t); }
  double t(double sigma) const { return vp_t(beta_d, beta_min, sigma); }
  ///@}
  /// c_skip = 1, c_out = -s, c_in = 1/sqrt(s^2+1), c_noise = (M-1) t(s).
  Coefficients coefficients(double s) const { return {1.0, -s, 1.0 / std::sqrt(s * s + 1.0), (M - 1.0) * t(s)}; }
};

/// The VE preconditioning (Song et al. 2021, NCSN++; EDM Table 1 "VE").
struct Ve {
  /// c_skip = 1, c_out = s, c_in = 1, c_noise = ln(s/2).
  Coefficients coefficients(double s) const { return {1.0, s, 1.0, std::log(0.5 * s)}; }
};

///@{
/// The loss EDM trains each preconditioning with, sharing its parameters.
inline EDMLoss default_loss(const Edm& p) { return {.sigma_data = p.sigma_data}; }
inline VPLoss default_loss(const Vp& p) { return {.beta_d = p.beta_d, .beta_min = p.beta_min}; }
inline VELoss default_loss(const Ve&) { return {}; }
///@}

namespace detail {
template <class Net>
struct net_value {
  using type = float;
};
template <class Net>
  requires requires { typename Net::value_type; }
struct net_value<Net> {
  using type = typename Net::value_type;
};
}  // namespace detail

/// The element type of a network: Net::value_type, float when it does not say.
template <class Net>
using net_value_t = typename detail::net_value<Net>::type;

/// What Precond needs of a network (the UNet's interface; see the file-top comment of
/// nn/unet.hpp): images in and out of the same shape, one c_noise per image, a backward
/// that accumulates parameter gradients. A class-conditional one (Net::classes > 0) also
/// has forward(x, c_noise, labels, out).
template <class Net>
concept Network = requires(Net& net, TensorView<const net_value_t<Net>, typename Net::Batch> x,
                           std::span<const net_value_t<Net>> c, TensorView<net_value_t<Net>, typename Net::Batch> out) {
  net.forward(x, c, out);
  net.backward(x);
  net.zero_grad();
};

/// D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) around a network F, per image.
template <class Policy, class Net>
class Precond {
  static_assert(Network<Net>, "diffuse::diffusion::Precond: Net lacks the network interface "
                              "(Batch, forward(x, c_noise, out), backward(dout), zero_grad())");

 public:
  using Batch = typename Net::Batch;  ///< (N, H, W, C)
  using Image = drop_axes<Batch, 0>;  ///< (H, W, C)
  using T = net_value_t<Net>;         ///< float; double for gradient checks
  using policy_type = Policy;  ///< The preconditioning (Edm, Vp or Ve).
  static constexpr std::size_t item_size = Batch::item_size;  ///< Elements per image.
  /// Classes of a class-conditional network, 0 for an unconditional one.
  static constexpr std::size_t classes = nn::classes_v<Net>;

  Precond() = default;
  /// Constructs the network in place from `net_args`.
  template <class... Args>
  explicit Precond(Policy policy, Args&&... net_args) : policy_(policy), net_(std::forward<Args>(net_args)...) {}

  Net& net() noexcept { return net_; }  ///< The network F.
  const Net& net() const noexcept { return net_; }  ///< The network F.
  const Policy& policy() const noexcept { return policy_; }  ///< The preconditioning.

  /// out = D(x; sigma_i) for each image i.
  /// x, out: (N, H, W, C); sigma: [N]. out may be x.
  void forward(TensorView<const T, Batch> x, std::span<const T> sigma, TensorView<T, Batch> out) {
    forward(x, sigma, {}, out);
  }
  /// out = D(x; sigma_i, label_i) for a class-conditional network: labels holds one class
  /// per image (-1: no label), or is empty for no labels at all.
  void forward(TensorView<const T, Batch> x, std::span<const T> sigma, std::span<const int> labels,
               TensorView<T, Batch> out) {
    const std::size_t n = x.batch();
    if (sigma.size() != n || out.batch() != n || (!labels.empty() && labels.size() != n))
      throw ShapeError("diffuse::diffusion::Precond::forward: " + std::to_string(n) + " images, " +
                       std::to_string(sigma.size()) + " sigmas, " + std::to_string(labels.size()) +
                       " labels, output batch " + std::to_string(out.batch()));
    prepare(n);
    loss_batch_ = 0;  // a loss() in progress sets it again after this forward
    for (std::size_t i = 0; i < n; ++i) {
      const Coefficients c = policy_.coefficients(sigma[i]);
      c_skip_[i] = static_cast<T>(c.c_skip);
      c_out_[i] = static_cast<T>(c.c_out);
      c_in_[i] = static_cast<T>(c.c_in);
      c_noise_[i] = static_cast<T>(c.c_noise);
    }
    x_in_ = per_item<Batch>(c_in_) * x;
    const TensorView<const T, Batch> in_view(x_in_.view());
    if constexpr (requires { net_.forward(in_view, std::span<const T>(c_noise_), labels, f_.view()); }) {
      net_.forward(in_view, std::span<const T>(c_noise_), labels, f_.view());  // checks the labels
    } else {
      nn::check_labels(labels, 0, "diffuse::diffusion::Precond::forward");  // a network without classes
      net_.forward(in_view, std::span<const T>(c_noise_), f_.view());
    }
    out = per_item<Batch>(c_skip_) * x + per_item<Batch>(c_out_) * f_;
    forward_batch_ = n;
  }

  /// Backward of the last forward(): given dL/dD (N, H, W, C), feeds dL/dF = c_out dL/dD into
  /// the network's backward (which accumulates its parameter gradients).
  void backward(TensorView<const T, Batch> dout) {
    check_backward(dout.batch());
    grad_f_ = per_item<Batch>(std::span<const T>(c_out_.data(), forward_batch_)) * dout;
    net_.backward(TensorView<const T, Batch>(grad_f_.view()));
  }

  /// The denoiser the samplers call: out = D(x; sigma) with one sigma for every image.
  void operator()(TensorView<const T, Batch> x, T sigma, TensorView<T, Batch> out) {
    sigma_all_.assign(x.batch(), sigma);
    forward(x, std::span<const T>(sigma_all_), out);
  }
  /// The denoiser with one sigma per image (samplers whose images step apart: DpmAdaptive):
  /// x, out (N, H, W, C), sigma [N]; ShapeError when the sizes differ.
  void operator()(TensorView<const T, Batch> x, std::span<const T> sigma, TensorView<T, Batch> out) {
    forward(x, sigma, out);
  }

  /// The training loss of a batch: mean over images i of
  /// lambda(sigma_i) * sum_pixels (D(y_i + sigma_i n_i; sigma_i) - y_i)^2, lambda the
  /// weight of `loss_fn` (EDMLoss, VPLoss, VELoss). y: clean images (N, H, W, C); sigma:
  /// [N]; noise: unit normal (N, H, W, C), scaled by sigma_i here; labels: a class per
  /// image (-1: none) for a class-conditional network, or empty. Runs the forward pass;
  /// loss_backward() then gives the gradients. Throws ShapeError on mismatched sizes.
  template <TrainingLoss L>
  T loss(const L& loss_fn, TensorView<const T, Batch> y, std::span<const T> sigma, TensorView<const T, Batch> noise,
         std::span<const int> labels = {}) {
    const std::size_t n = y.batch();
    if (noise.batch() != n || sigma.size() != n)
      throw ShapeError("diffuse::diffusion::Precond::loss: " + std::to_string(n) + " images, " +
                       std::to_string(sigma.size()) + " sigmas, " + std::to_string(noise.batch()) + " noise images");
    prepare(n);
    x_noisy_ = y + per_item<Batch>(sigma) * noise;
    forward(TensorView<const T, Batch>(x_noisy_.view()), sigma, labels, denoised_.view());
    const T* yp = y.data();
    T* r = denoised_.data();  // becomes the residual D - y
    if (diffuse::detail::on_device()) {  // the residual stays there; the n sums come back
      using diffuse::detail::device_address;
      kernels::device::residual_squares<T>(device_address(r), device_address(yp), device_address(sums_.data()), n,
                                           item_size);
      update_host(sums_.data(), n);
      for (std::size_t i = 0; i < n; ++i) {
        weight_[i] = static_cast<T>(loss_fn.weight(sigma[i]));
        loss_image_[i] = static_cast<T>(weight_[i] * sums_.data()[i]);
      }
    } else {
      parallel_for_items(n, item_size, [&](std::size_t i) {
        double ss = 0.0;  // per image, in a fixed order: same bits for any thread count
        for (std::size_t k = i * item_size; k < (i + 1) * item_size; ++k) {
          r[k] -= yp[k];
          ss += static_cast<double>(r[k]) * r[k];
        }
        weight_[i] = static_cast<T>(loss_fn.weight(sigma[i]));
        loss_image_[i] = static_cast<T>(weight_[i] * ss);
      });
    }
    double total = 0.0;
    for (std::size_t i = 0; i < n; ++i) total += loss_image_[i];
    loss_batch_ = n;
    return static_cast<T>(total / static_cast<double>(n));
  }

  /// The loss with default_loss(policy()), the weighting EDM pairs with the preconditioning.
  T loss(TensorView<const T, Batch> y, std::span<const T> sigma, TensorView<const T, Batch> noise,
         std::span<const int> labels = {}) {
    return loss(default_loss(policy_), y, sigma, noise, labels);
  }

  /// Per-image losses lambda_i ||D_i - y_i||^2 of the last loss() call.
  std::span<const T> loss_per_image() const { return {loss_image_.data(), loss_batch_}; }

  /// Backward of the last loss(), times `scale` (dL/dloss; e.g. 1/k to average k micro-
  /// batches): dL/dF_i = scale * 2 lambda_i c_out_i (D_i - y_i) / N into the network.
  void loss_backward(T scale = 1.f) {
    if (loss_batch_ == 0 || loss_batch_ != forward_batch_)
      throw std::logic_error("diffuse::diffusion::Precond::loss_backward: call loss() first");
    const std::size_t n = loss_batch_;
    for (std::size_t i = 0; i < n; ++i)
      grad_scale_[i] = static_cast<T>(2.0 * scale * weight_[i] * c_out_[i] / static_cast<double>(n));
    grad_f_ = per_item<Batch>(grad_scale_) * denoised_;
    net_.backward(TensorView<const T, Batch>(grad_f_.view()));
  }

  /// The optimiser's and checkpoints' view of the parameters: the network's.
  template <class F>
  void for_each_param(F&& f) {
    net_.for_each_param(std::forward<F>(f));
  }
  void zero_grad() { net_.zero_grad(); }  ///< Sets the network's parameter gradients to zero.

 private:
  // Sizes every buffer for n images; allocates only when n changes.
  void prepare(std::size_t n) {
    if (x_in_.batch() == n && c_skip_.size() == n) return;
    x_in_.resize(n);
    f_.resize(n);
    grad_f_.resize(n);
    x_noisy_.resize(n);
    denoised_.resize(n);
    for (auto* v : {&c_skip_, &c_out_, &c_in_, &c_noise_, &weight_, &loss_image_, &grad_scale_}) v->resize(n);
    sums_ = diffuse::detail::AlignedBuffer<double>(n);
    sigma_all_.reserve(n);
    loss_batch_ = 0;
  }

  void check_backward(std::size_t n) const {
    if (forward_batch_ == 0 || n != forward_batch_)
      throw ShapeError("diffuse::diffusion::Precond::backward: gradient batch " + std::to_string(n) +
                       " differs from the last forward's " + std::to_string(forward_batch_));
  }

  Policy policy_{};
  Net net_{};
  Tensor<T, Batch> x_in_, f_, grad_f_;   // c_in x; F(c_in x, c_noise); dL/dF
  Tensor<T, Batch> x_noisy_, denoised_;  // loss: y + sigma n; D, then D - y
  std::vector<T> c_skip_, c_out_, c_in_, c_noise_, weight_, loss_image_, grad_scale_;  // [N]
  std::vector<T> sigma_all_;
  diffuse::detail::AlignedBuffer<double> sums_;  // the loss's per-image sums on the GPU
  std::size_t forward_batch_ = 0, loss_batch_ = 0;
};

///@{
/// EDM's names for the preconditioned denoisers (training/networks.py).
template <class Net>
using EDMPrecond = Precond<Edm, Net>;
template <class Net>
using VPPrecond = Precond<Vp, Net>;
template <class Net>
using VEPrecond = Precond<Ve, Net>;
///@}

/// The loss a preconditioned model trains with unless told otherwise: default_loss of its
/// preconditioning.
template <class Model>
using default_loss_t = decltype(default_loss(std::declval<const typename Model::policy_type&>()));

}  // namespace diffuse::diffusion

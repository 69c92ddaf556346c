// diffuse's network layer in one include: the tensor core, the kernels, the layers of
// diffuse::nn, the UNet type with its configurations and PyTorch state dicts.
//
//   #include <diffuse/unet.hpp>
//   diffuse::nn::UNet<diffuse::nn::edm_mnist_small> net(/*seed=*/0);
//   net.forward(x, c_noise, out);   // x, out: (N, 28, 28, 1) NHWC
//   net.backward(dout);             // accumulates parameter gradients
//
// See docs/unet.md.
#pragma once

#include "diffuse/kernels/conv2d.hpp"
#include "diffuse/kernels/gemm.hpp"
#include "diffuse/kernels/group_norm.hpp"
#include "diffuse/kernels/resample.hpp"
#include "diffuse/kernels/softmax.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/concat.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/embedding.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/init.hpp"
#include "diffuse/nn/label_embedding.hpp"
#include "diffuse/nn/labels.hpp"
#include "diffuse/nn/layer.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/param.hpp"
#include "diffuse/nn/res_block.hpp"
#include "diffuse/nn/silu.hpp"
#include "diffuse/nn/state_dict.hpp"
#include "diffuse/nn/unet.hpp"
#include "diffuse/nn/unet_config.hpp"
#include "diffuse/nn/upsample.hpp"
#include "diffuse/tensor.hpp"


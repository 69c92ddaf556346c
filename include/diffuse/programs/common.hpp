// What the programs diffuse-train and diffuse-sample share besides parsing their command
// lines: the line that heads every log (version, instruction set, threads, device), the
// named model configurations, the Ctrl-C / SIGTERM flag, number formatting and the limits
// of the options. Light: the programs' main units and the configurations' runs include it.
// Reading data sets is data.hpp, the runs train_run.hpp and sample_run.hpp, the commands
// train_command.hpp and sample_command.hpp.
//
// The command-line parser (CLI11) is cli.hpp's, so that a unit that does not parse command
// lines need not compile it (diffuse-train's configuration units). The programs' headers
// need CLI11 (Debian: libcli11-dev) besides diffuse::io; the installed package's component
// `programs` (target diffuse::programs) links both.
#pragma once

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/core/device.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/kernels/precision.hpp"
#include "diffuse/nn/unet_config.hpp"
#include "diffuse/version.hpp"

namespace diffuse::programs {

/// "diffuse 0.1.0 | instruction set avx512bw | 2 OpenMP threads | matmul fp32 | device
/// cpu" (or "device gpu 0 (NVIDIA H200, 143771 MiB)"): heads every log.
inline std::string info_line() {
  return std::string("diffuse ") + version + " | instruction set " + instruction_set() + " | " +
         std::to_string(available_threads()) + " OpenMP threads | matmul " +
         kernels::to_string(kernels::matmul_precision()) + " | device " +
         device_description();
}

/// --info's second line: whether --precision bf16 can run here, and if not why.
inline std::string bf16_line() {
  const std::string why = kernels::bf16_unavailable_reason();
  return why.empty() ? "bf16 available (AVX512-BF16)" : "bf16 not available: " + why;
}

/// Selects the device (before any tensor is made). Returns false after printing an error
/// (an unknown DIFFUSE_DEVICE, or gpu where none can be used).
inline bool apply_device(const std::string& value, const char* program) {
  if (value != "auto" && value != "cpu" && value != "gpu") {
    std::fprintf(stderr, "%s: error: DIFFUSE_DEVICE=%s: expected auto, cpu or gpu\n", program, value.c_str());
    return false;
  }
  try {
    select_device(value);
  } catch (const DeviceError& e) {
    std::fprintf(stderr, "%s: error: --device %s: %s\n", program, value.c_str(), e.what());
    return false;
  }
  return true;
}

/// Selects --precision; bf16 where it cannot run warns on stderr and stays in fp32.
inline void apply_precision(const std::string& value, const char* program, bool quiet = false) {
  const auto p = kernels::parse_matmul_precision(value).value_or(kernels::MatmulPrecision::fp32);
  try {
    kernels::set_matmul_precision(p);
  } catch (const std::runtime_error& e) {
    if (!quiet)
      std::fprintf(stderr, "%s: warning: --precision %s: %s; running in fp32\n", program, value.c_str(), e.what());
  }
}

/// The named configurations diffuse-train and diffuse-sample may be built with (CMake's
/// DIFFUSE_PROGRAM_MODELS chooses which a build has), the smallest first.
inline const std::vector<std::string> model_names = {"edm-tiny", "edm-mnist-small", "edm-cifar-small", "edm-64-small"};

/// Classes of the programs' class-conditional models built from an unconditional
/// configuration: labels 0-9, as in MNIST and Fashion-MNIST, or up to ten class folders.
/// (The library takes any number: nn::UNetConfig::classes.)
inline constexpr std::size_t label_classes = 10;

/// The configuration of a run with labels: `c` itself when class-conditional, else `c`
/// with label_classes classes.
constexpr nn::UNetConfig labelled(nn::UNetConfig c) { return c.classes ? c : nn::with_classes(c, label_classes); }

/// The names, comma-separated.
inline std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

/// The program's file name (argv[0] without its folder), or `fallback` without one: the
/// name its messages start with.
inline std::string program_name(int argc, char** argv, const char* fallback) {
  if (argc < 1 || !argv[0] || !*argv[0]) return fallback;
  const std::string name = std::filesystem::path(argv[0]).filename().string();
  return name.empty() ? fallback : name;
}

/// A command line that parses but makes no sense: exit status 2, like a parse error.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Runs `body` (returning the exit status) and reports what it throws as one line on
/// stderr, "<program>: error: <what>": a UsageError with exit status 2, any other
/// exception with 1.
template <class F>
int run_reporting_errors(const char* program, F&& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "%s: error: an unknown exception\n", program);
    return 1;
  }
}

/// What both programs do once their command line is parsed: threads, --precision,
/// --device, the info line on stderr (not when `quiet`: a
/// data-parallel run's processes but the first) and, with --info, the BF16 line. Returns
/// -1 to go on, else the exit status to return now.
inline int start_program(const char* program, int threads, const std::string& precision, const std::string& device,
                         bool info, bool quiet = false) {
  if (threads > 0) set_num_threads(threads);
  apply_precision(precision, program, quiet);
  if (!apply_device(device, program)) return 1;
  if (quiet) return info ? 0 : -1;
  std::fprintf(stderr, "%s\n", info_line().c_str());
  if (!info) return -1;
  std::fprintf(stderr, "%s\n", bf16_line().c_str());
  return 0;
}

/// The guidance scale the programs use unless told otherwise (diffusion::Guided).
inline constexpr double default_guidance = 3.0;

/// Set when SIGINT (Ctrl-C) or SIGTERM arrives; the programs finish the current step,
/// save what they have and stop.
inline std::atomic<bool> stop_requested{false};

inline void install_stop_handler() {
  struct sigaction sa {};
  sa.sa_handler = [](int) { stop_requested.store(true); };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

/// "1h02m", "3m05s", "12s".
inline std::string duration_text(double seconds) {
  const long s = seconds < 0 ? 0 : static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

/// A number as "%g" writes it ("0.5", "1e+05"): options' bounds and values in messages.
inline std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

/// v with the digits that read back as the same double ("0.002", "1e-07").
inline std::string exact_text(double v) {
  char buf[32];
  for (int digits = 6; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

/// Limits shared by both programs' options: far beyond any sensible value, well inside what
/// the types the values end in can hold.
inline constexpr long long max_threads = 1024;
inline constexpr long long max_steps = 100'000'000;
inline constexpr long long max_batch = 65'536;
inline constexpr double max_sigma = 1e5;  // EDM's largest is 80, VE's 100

}  // namespace diffuse::programs

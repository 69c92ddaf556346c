// The programs' command-line pieces on CLI11 (Debian: libcli11-dev): the --precision and
// --device options, range checks that name the option and the range, and parsing with
// one-line errors. For the units that parse command lines (see common.hpp).
#pragma once

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>

#include "diffuse/core/device.hpp"
#include "diffuse/programs/common.hpp"

namespace diffuse::programs {

/// The --precision option of both programs.
inline CLI::Option* add_precision_option(CLI::App& app, std::string& value) {
  return app
      .add_option("--precision", value,
                  "operands of the convolutions and matrix products: fp32, or bf16 (BF16 operands, FP32 "
                  "accumulation and weights; needs AVX512-BF16, else fp32 with a warning)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
}

/// The --device option of both programs; its default comes from DIFFUSE_DEVICE.
inline CLI::Option* add_device_option(CLI::App& app, std::string& value) {
  value = device_from_environment();
  return app
      .add_option("--device", value,
                  "where to run: auto (a GPU when this build has GPU code and finds one, else the CPU), cpu or "
                  "gpu (an error where there is none); default: the environment variable DIFFUSE_DEVICE, else auto")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
}

/// A CLI11 check for a real-valued option: a finite number in [lo, hi], or (lo, hi] when
/// lo_open. Run on the text before conversion, so inf, nan, 1e39 (inf once stored as a
/// float) and trailing junk are refused with the option's name and range, e.g.
/// "--lr: must be a finite number in (0, 10] (got inf)".
inline CLI::Validator real_in(double lo, double hi, bool lo_open = false) {
  const std::string range = (lo_open ? "(" : "[") + number_text(lo) + ", " + number_text(hi) + "]";
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        const std::string want = "must be a finite number in " + range + " (got " + text + ")";
        try {
          std::size_t used = 0;
          const double v = std::stod(text, &used);
          if (used != text.size() || !std::isfinite(v)) return want;
          return (lo_open ? v > lo : v >= lo) && v <= hi ? std::string() : want;
        } catch (const std::exception&) {
          return want;  // not a number, or beyond double's range
        }
      },
      "REAL in " + range);
}

/// A CLI11 check for an integer option in [lo, hi]: "--steps: must be an integer in
/// [1, 100000] (got 1e9)".
inline CLI::Validator integer_in(long long lo, long long hi) {
  const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        const std::string want = "must be an integer in " + range + " (got " + text + ")";
        try {
          std::size_t used = 0;
          const long long v = std::stoll(text, &used, 10);
          return used == text.size() && v >= lo && v <= hi ? std::string() : want;
        } catch (const std::exception&) {
          return want;
        }
      },
      "INT in " + range);
}

/// Parses the command line. Returns -1 to go on, otherwise the exit code to return now:
/// 0 after --help or --version (printed to stdout by CLI11), 2 after a parse error, which
/// is reported as one line "<program>: error: <what>" on stderr (no usage text).
inline int parse_command_line(CLI::App& app, int argc, char** argv, const char* program) {
  try {
    app.parse(argc, argv);
    return -1;
  } catch (const CLI::Success& e) {  // CallForHelp, CallForAllHelp, CallForVersion
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    for (char& c : what)
      if (c == '\n' || c == '\r') c = ' ';
    while (!what.empty() && what.back() == ' ') what.pop_back();
    std::fprintf(stderr, "%s: error: %s\n", program, what.c_str());
    return 2;
  }
}

}  // namespace diffuse::programs

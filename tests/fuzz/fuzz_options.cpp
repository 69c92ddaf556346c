// Fuzz target: the command lines of diffuse-sample and diffuse-train (the first byte
// chooses; the rest is split at zero bytes into the arguments). Each is parsed and checked
// as the program does before reading any file; what passes must then hold what the
// programs rely on: finite option values inside their ranges, and a sigma schedule of
// --steps finite, positive, non-increasing sigmas ending in 0. A usage error is fine; a
// crash, another exception or a broken promise is a finding.
#include <cmath>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include <diffuse/programs/sample_cli.hpp>
#include <diffuse/programs/train_cli.hpp>

namespace {

void broken(const char* what) {
  std::fprintf(stderr, "fuzz_options: accepted options that break a promise: %s\n", what);
  std::abort();
}

void sample_command_line(int argc, const char* const* argv) {
  using namespace diffuse::programs;
  SampleOptions o;
  SampleCommandLine c;
  CLI::App app;
  add_sample_options(app, o, c);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError&) {  // also --help and --version
    return;
  }
  std::vector<double> sigmas;
  try {
    sigmas = checked_schedule(o, app);
  } catch (const UsageError&) {
    return;
  }
  for (double v : {o.strength, o.sigma_min, o.sigma_max, o.eta, o.churn, o.guidance})
    if (!std::isfinite(v)) broken("a non-finite option value");
  if (o.steps < 1 || o.count < 1 || o.batch < 1) broken("a count below 1");
  if (sigmas.size() != static_cast<std::size_t>(o.steps) + 1) broken("a schedule of another length than --steps");
  if (sigmas.back() != 0.0) broken("a schedule that does not end in 0");
  for (std::size_t i = 0; i + 1 < sigmas.size(); ++i) {
    if (!std::isfinite(sigmas[i]) || !(sigmas[i] > 0)) broken("a sigma that is not finite and positive");
    if (sigmas[i + 1] > sigmas[i]) broken("a schedule that goes up");
  }
}

void train_command_line(int argc, const char* const* argv) {
  using namespace diffuse::programs;
  TrainOptions o;
  TrainCommandLine c;
  CLI::App app;
  add_train_options(app, o, c);
  try {
    app.parse(argc, argv);
    check_train_options(o, app);
  } catch (const CLI::ParseError&) {
    return;
  } catch (const UsageError&) {
    return;
  }
  for (double v : {o.lr, o.ema_half_life, o.label_dropout, o.minutes, o.epochs})
    if (!std::isfinite(v)) broken("a non-finite option value");
  if (!(o.lr > 0) || o.batch < 1) broken("a learning rate or batch out of range");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0 || size > 4096) return 0;
  std::vector<std::string> words;
  std::string w;
  for (std::size_t i = 1; i < size; ++i) {
    if (data[i] == 0) {
      words.push_back(w);
      w.clear();
    } else {
      w += static_cast<char>(data[i]);
    }
  }
  words.push_back(w);
  if (words.size() > 64) return 0;
  const bool sample = data[0] & 1;
  std::vector<const char*> argv = {sample ? "diffuse-sample" : "diffuse-train"};
  for (const auto& s : words) argv.push_back(s.c_str());
  if (sample) sample_command_line(static_cast<int>(argv.size()), argv.data());
  else train_command_line(static_cast<int>(argv.size()), argv.data());
  return 0;
}

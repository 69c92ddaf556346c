// Uses the installed `programs` component: diffuse-train's and diffuse-sample's command
// lines (the light headers; the runs of a configuration are train_main.hpp/sample_main.hpp).
#include <cstdio>

#include <diffuse/programs/sample_command.hpp>
#include <diffuse/programs/train_command.hpp>

int main() {
  using namespace diffuse::programs;
  char name[] = "consumer", version[] = "--version";
  char* argv[] = {name, version, nullptr};
  if (train_command(2, argv, {}) != 0 || sample_command(2, argv, {}) != 0) return 1;
  std::printf("consumer ok (programs)\n");
  return 0;
}

// What the fuzz targets share: a private scratch folder for the files they write, and a
// main() for builds without libFuzzer that runs the inputs named on the command line
// (files, or folders of files) once each: the committed seeds and crash regressions.
//
// A target calls the reader on the input and lets through only the errors the reader
// documents (io::DataError, io::SafetensorsError, ...). Anything else (another exception,
// an abort, an ASan or UBSan report, a hang) is a finding: libFuzzer stops and writes the
// input as crash-<sha1>, which goes into tests/fuzz/regressions/<target>/ once fixed.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

namespace diffuse::fuzz {

/// A folder of this process's own (removed at exit).
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    std::string t = (std::filesystem::temp_directory_path() / "diffuse-fuzz-XXXXXX").string();
    if (!mkdtemp(t.data())) std::abort();
    return std::filesystem::path(t);
  }();
  static const struct Cleanup {
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup;
  return dir;
}

/// Writes `bytes` to scratch()/name and returns the path.
inline std::string write_file(const std::string& name, std::span<const std::uint8_t> bytes) {
  const std::filesystem::path p = scratch() / name;
  std::filesystem::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) std::abort();
  return p.string();
}

}  // namespace diffuse::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

#if defined(DIFFUSE_FUZZ_STANDALONE)
// Runs each input file (or each file in each folder) given once.
int main(int argc, char** argv) {
  std::size_t runs = 0;
  auto run = [&](const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    ++runs;
  };
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p))
        if (e.is_regular_file()) run(e.path());
    } else {
      run(p);
    }
  }
  std::printf("%zu inputs ran without a finding\n", runs);
  return runs > 0 ? 0 : 1;
}
#endif

// Tests of io/safetensors.hpp: round trip, and that bad files (truncated, corrupt
// header, wrong shape or dtype, missing tensor) give errors naming the file, the tensor
// and what was expected.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <diffuse/io/safetensors.hpp>

namespace {

using diffuse::io::SafetensorsError;
using diffuse::io::SafetensorsFile;
using diffuse::io::SafetensorsWriter;

std::string temp_path(const char* name) { return ::testing::TempDir() + "diffuse_" + name + ".safetensors"; }

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string with_header(const std::string& header, std::size_t data_bytes) {
  std::string s(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + std::string(data_bytes, '\0');
}

// Expects f() to throw SafetensorsError whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const SafetensorsError& e) {
    const std::string m = e.what();
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' not in: " << m;
  }
}

TEST(Safetensors, RoundTrip) {
  const std::string path = temp_path("roundtrip");
  SafetensorsWriter w;
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<double> b = {0.5, -0.25};
  w.add<float>("layer.weight", {2, 3}, a);
  w.add<double>("layer.bias", {2}, b);
  w.set_metadata("format", "pt");
  w.write(path);
  const SafetensorsFile f(path);
  EXPECT_EQ(f.read_vector<float>("layer.weight", {2, 3}), a);
  EXPECT_EQ(f.read_vector<double>("layer.bias", {2}), b);
  EXPECT_EQ(f.read_vector<float>("layer.bias", {2}), (std::vector<float>{0.5f, -0.25f}));  // F64 -> float
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.names().size(), 2u);
  std::remove(path.c_str());
}

TEST(Safetensors, Errors) {
  const std::string path = temp_path("bad");
  const std::string good = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";

  write_bytes(path, "abc");
  expect_error([&] { SafetensorsFile f(path); }, {path, "truncated"});

  write_bytes(path, with_header(good, 8));  // 16 data bytes announced, 8 present
  expect_error([&] { SafetensorsFile f(path); }, {path, "truncated", "'w'"});

  write_bytes(path, with_header(good, 0).substr(0, 20));  // header cut short
  expect_error([&] { SafetensorsFile f(path); }, {path, "truncated", "header"});

  write_bytes(path, with_header(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})", 16));  // missing }
  expect_error([&] { SafetensorsFile f(path); }, {path, "corrupt header"});

  write_bytes(path, with_header(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 16));
  expect_error([&] { SafetensorsFile f(path); }, {path, "'w'", "needs 16"});

  write_bytes(path, with_header(good, 16));
  const SafetensorsFile f(path);
  expect_error([&] { f.read_vector<float>("w", {4}); }, {path, "'w'", "expected shape [4]", "found [2, 2]"});
  expect_error([&] { f.read_vector<float>("bias", {2}); }, {path, "missing tensor 'bias'"});

  write_bytes(path, with_header(R"({"w":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})", 16));
  const SafetensorsFile g(path);
  expect_error([&] { g.read_vector<float>("w", {2, 2}); }, {path, "'w'", "expected dtype F32 or F64, found I32"});
  std::remove(path.c_str());
}

TEST(Safetensors, MissingFile) {
  expect_error([] { SafetensorsFile f("/nonexistent/x.safetensors"); }, {"/nonexistent/x.safetensors"});
}

}  // namespace

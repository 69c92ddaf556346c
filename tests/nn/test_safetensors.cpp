// Tests of io/safetensors.hpp: round trip, and that bad files (truncated, corrupt
// header, wrong shape or dtype, missing tensor) give errors naming the file, the tensor
// and what was expected.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <diffuse/core/random.hpp>
#include <diffuse/io/safetensors.hpp>
#include <diffuse/nn/state_dict.hpp>
#include <nlohmann/json.hpp>

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
  expect_error([&] { g.read_vector<float>("w", {2, 2}); }, {path, "'w'", "expected dtype F32, F64, F16 or BF16, found I32"});
  std::remove(path.c_str());
}

// Element counts that wrap around 2^64 (2^62 + 1 elements x 4 = 4 (mod 2^64)) must not pass
// for the few bytes present: every size from a header is multiplied with overflow checks.
TEST(Safetensors, ShapesWhoseSizeOverflowsAreErrors) {
  const std::string path = temp_path("overflow.safetensors");
  write_bytes(path, with_header(R"({"w":{"dtype":"F32","shape":[4611686018427387905,4],"data_offsets":[0,16]}})", 16));
  expect_error([&] { SafetensorsFile f(path); }, {path, "'w'", "[4611686018427387905, 4]", "too many elements"});
  write_bytes(path, with_header(R"({"w":{"dtype":"F32","shape":[4,4611686018427387904],"data_offsets":[0,0]}})", 0));
  expect_error([&] { SafetensorsFile f(path); }, {path, "'w'", "too many elements"});
  write_bytes(path, with_header(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0));
  expect_error([&] { SafetensorsFile f(path); }, {path, "'w'", "too many elements"});
  // A zero dimension makes an empty tensor whatever the others are.
  write_bytes(path, with_header(R"({"w":{"dtype":"F32","shape":[0,4611686018427387905],"data_offsets":[0,0]}})", 0));
  EXPECT_NO_THROW(SafetensorsFile f(path));
}

// Metadata with control characters and bytes that are not UTF-8 (a Linux file name may hold
// any): the header must still be strict JSON, which other readers (Python's json, the
// safetensors package) require; control characters round-trip, invalid bytes become U+FFFD.
TEST(Safetensors, HeaderIsStrictJsonWhateverTheMetadata) {
  const std::string path = temp_path("control.safetensors");
  SafetensorsWriter w;
  const std::vector<float> v = {1, 2};
  w.add<float>("w", {2}, v);
  w.set_metadata("data", "runs/a\tb\n\x01\"q\"\\.idx");
  w.set_metadata("bad", "x\xff\xfey");
  w.write(path);
  std::ifstream f(path, std::ios::binary);
  std::uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), std::streamsize(n));
  EXPECT_TRUE(nlohmann::json::accept(header)) << header;
  const SafetensorsFile back(path);
  EXPECT_EQ(back.metadata().at("data"), "runs/a\tb\n\x01\"q\"\\.idx");
  EXPECT_EQ(back.metadata().at("bad"), "x\xEF\xBF\xBD\xEF\xBF\xBDy");
}

// Duplicate names, wrong types and unknown keys are format errors even where JSON allows them.
TEST(Safetensors, HeaderStructureIsChecked) {
  const std::string path = temp_path("structure.safetensors");
  const std::pair<std::string, std::string> cases[] = {
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
       "tensor 'w' appears twice"},
      {R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "shape must be an array of non-negative integers"},
      {R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "shape must be an array of non-negative integers"},
      {R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", "dtype must be a string"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", "data_offsets must be [begin, end]"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", "unknown key 'x'"},
      {R"({"w":{"dtype":"F32","shape":[1]}})", "needs dtype, shape and data_offsets"},
      {R"({"__metadata__":{"k":5},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "metadata 'k' is not a string"},
      {R"([1,2])", "not a JSON object"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", "not JSON"},
      {"{\"w\":{\"dtype\":\"F\t32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "not JSON"},  // raw TAB
  };
  for (const auto& [header, want] : cases) {
    write_bytes(path, with_header(header, 4));
    expect_error([&] { SafetensorsFile f(path); }, {path, "corrupt header", want});
  }
}

TEST(Safetensors, ReadsHalfAndBFloat16) {
  const std::string path = temp_path("half");
  // F16: 1.0 = 0x3c00, -2.0 = 0xc000, 65504 (max) = 0x7bff, 2^-24 (smallest subnormal) = 0x0001
  // BF16: 1.0 = 0x3f80, -0.5 = 0xbf00, 3.140625 = 0x4049, 0
  const std::uint16_t f16[] = {0x3c00, 0xc000, 0x7bff, 0x0001};
  const std::uint16_t bf16[] = {0x3f80, 0xbf00, 0x4049, 0x0000};
  std::string bytes = with_header(R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},)"
                                  R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[8,16]}})", 0);
  bytes.append(reinterpret_cast<const char*>(f16), 8);
  bytes.append(reinterpret_cast<const char*>(bf16), 8);
  write_bytes(path, bytes);
  const SafetensorsFile f(path);
  EXPECT_EQ(f.read_vector<float>("h", {4}), (std::vector<float>{1.f, -2.f, 65504.f, 0x1p-24f}));
  EXPECT_EQ(f.read_vector<float>("b", {4}), (std::vector<float>{1.f, -0.5f, 3.140625f, 0.f}));
  std::remove(path.c_str());
}

TEST(Safetensors, TrailingDataHolesAndOverlapsAreErrors) {
  const std::string path = temp_path("tiling");
  write_bytes(path, with_header(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 20));
  expect_error([&] { SafetensorsFile f(path); }, {path, "4 bytes of trailing data"});
  write_bytes(path, with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12));
  expect_error([&] { SafetensorsFile f(path); }, {path, "leaves a hole at byte 8"});
  write_bytes(path, with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8));
  expect_error([&] { SafetensorsFile f(path); }, {path, "overlaps at byte 4"});
  std::remove(path.c_str());
}

// Random damage to a valid file: every damaged copy either reads back in full or fails
// with SafetensorsError; nothing crashes (this test also runs under ASan and UBSan).
TEST(Safetensors, RandomlyDamagedFilesNeverCrash) {
  const std::string path = temp_path("fuzz");
  SafetensorsWriter w;
  const std::vector<float> a(24, 1.5f), b(7, -2.f);
  w.add<float>("enc.0.weight", {2, 3, 2, 2}, a);
  w.add<float>("enc.0.bias", {7}, b);
  w.set_metadata("diffuse.model", "edm-tiny");
  w.write(path);
  std::string good;
  {
    std::ifstream in(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  diffuse::Generator g(2024);
  int loaded = 0, rejected = 0;
  for (int trial = 0; trial < 600; ++trial) {
    std::string bytes = good;
    const auto w0 = g.block(g.take(4));
    switch (w0[0] % 4) {
      case 0: bytes.resize(w0[1] % bytes.size()); break;                         // truncate
      case 1: bytes[w0[1] % bytes.size()] = static_cast<char>(w0[2]); break;      // one byte
      case 2:                                                                     // a burst in the header
        for (int k = 0; k < 4; ++k) bytes[8 + (w0[1] + k) % 120] = static_cast<char>(w0[2] >> (8 * k));
        break;
      default: bytes += std::string(1 + w0[1] % 9, static_cast<char>(w0[2])); break;  // trailing garbage
    }
    write_bytes(path, bytes);
    try {
      const SafetensorsFile f(path);
      for (const auto& name : f.names()) {
        const auto& info = f.info(name);
        std::size_t count = 1;
        for (std::size_t d : info.shape) count *= d;
        std::vector<float> out(count);
        f.read<float>(name, info.shape, std::span<float>(out));
      }
      ++loaded;
    } catch (const SafetensorsError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 300);  // most damage is detected...
  EXPECT_GT(loaded, 0);      // ...and some (a flipped data byte) is not damage the format can see
  std::remove(path.c_str());
}

TEST(Safetensors, MissingFile) {
  expect_error([] { SafetensorsFile f("/nonexistent/x.safetensors"); }, {"/nonexistent/x.safetensors"});
}

// PyTorch layouts of nn/state_dict.hpp: round trips, and one element of each checked
// against the definition.
TEST(StateDict, LayoutsRoundTripAndMatchDefinition) {
  namespace nn = diffuse::nn;
  const std::size_t n = 2, c = 3, h = 4, w = 5, co = 6, ci = 3, kk = 3;
  std::vector<float> a(n * c * h * w), wt(co * ci * kk * kk);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.5f - 7.f;
  for (std::size_t i = 0; i < wt.size(); ++i) wt[i] = float(i) * 0.25f + 1.f;
  std::vector<float> nhwc(a.size()), back(a.size());
  nn::nchw_to_nhwc(a.data(), nhwc.data(), n, c, h, w);
  EXPECT_EQ(nhwc[((1 * h + 2) * w + 3) * c + 1], a[((1 * c + 1) * h + 2) * w + 3]);
  nn::nhwc_to_nchw(nhwc.data(), back.data(), n, c, h, w);
  EXPECT_EQ(back, a);
  std::vector<float> hwio(wt.size()), wback(wt.size());
  nn::oihw_to_hwio(wt.data(), hwio.data(), co, ci, kk);
  EXPECT_EQ(hwio[((2 * kk + 1) * ci + 2) * co + 4], wt[((4 * ci + 2) * kk + 2) * kk + 1]);
  nn::hwio_to_oihw(hwio.data(), wback.data(), co, ci, kk);
  EXPECT_EQ(wback, wt);
}

}  // namespace

// IDX reading: synthetic files (plain and gzip), every malformation, and the real
// Fashion-MNIST test set when the Debian package is installed.
#include <unistd.h>
#include <zlib.h>

#include <filesystem>

#include <diffuse/io/idx.hpp>
#include <diffuse/tensor.hpp>

#include "temp_dir.hpp"

namespace {

using namespace diffuse;
using diffuse::testing::TempDir;
using diffuse::testing::write_bytes;

std::vector<unsigned char> idx_bytes(std::vector<std::uint32_t> extents, std::vector<unsigned char> data,
                                     unsigned char type = 0x08) {
  std::vector<unsigned char> b = {0, 0, type, static_cast<unsigned char>(extents.size())};
  for (auto e : extents)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(e >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

void write_gz(const std::string& path, const std::vector<unsigned char>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
}

std::vector<unsigned char> ramp(std::size_t n) {
  std::vector<unsigned char> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>(i * 7 % 256);
  return v;
}

TEST(Idx, ReadsPlainAndGzipImagesScaledToUnitRange) {
  TempDir dir;
  auto pixels = ramp(3 * 4 * 5);
  pixels[0] = 0;
  pixels[1] = 255;
  const auto bytes = idx_bytes({3, 4, 5}, pixels);
  write_bytes(dir.file("plain"), bytes);
  write_gz(dir.file("packed.gz"), bytes);
  for (const char* name : {"plain", "packed.gz"}) {
    auto x = io::load_idx_images<4, 5>(dir.file(name));
    ASSERT_EQ(x.batch(), 3u);
    EXPECT_EQ(x(0, 0, 0, 0), -1.f);
    EXPECT_EQ(x(0, 0, 1, 0), 1.f);
    for (std::size_t i = 2; i < pixels.size(); ++i)
      ASSERT_FLOAT_EQ(x.data()[i], pixels[i] / 127.5f - 1.f) << name << " " << i;
  }
}

TEST(Idx, ReadsLabels) {
  TempDir dir;
  write_gz(dir.file("labels.gz"), idx_bytes({4}, {3, 1, 4, 1}));
  EXPECT_EQ(io::load_idx_labels(dir.file("labels.gz")), (std::vector<int>{3, 1, 4, 1}));
}

// Runs f and expects a DataError whose message contains both the path and `text`.
template <class F>
void expect_data_error(F&& f, const std::string& path, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "no error for " << path << " (expected: " << text << ")";
  } catch (const io::DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(text), std::string::npos) << msg;
  }
}

TEST(Idx, MalformedFilesGiveClearErrors) {
  TempDir dir;
  const auto good = idx_bytes({2, 3, 3}, ramp(18));
  struct Case {
    const char* name;
    std::vector<unsigned char> bytes;
    const char* message;
  };
  auto truncated = good;
  truncated.resize(good.size() - 5);
  auto trailing = good;
  trailing.push_back(9);
  auto bad_magic = good;
  bad_magic[0] = 0x1f;
  const std::vector<Case> cases = {
      {"empty", {}, "truncated: expected 4 bytes of header, found 0"},
      {"short_header", {0, 0, 8, 3, 0, 0}, "truncated"},
      {"bad_magic", bad_magic, "not an IDX file"},
      {"float_type", idx_bytes({2, 3, 3}, ramp(72), 0x0D), "element type 13 is not supported"},
      {"rank_zero", {0, 0, 8, 0}, "rank 0"},
      {"zero_extent", idx_bytes({0, 3, 3}, {}), "extent 0 is 0"},
      {"truncated_data", truncated, "truncated: expected 18 bytes of data, found 13"},
      {"trailing", trailing, "has data after the 18 elements"},
      // A header announcing 16 GiB in a file of a few bytes: refused once the data runs
      // out, without allocating what the header says (found by fuzz_idx).
      {"announces_16_GiB", idx_bytes({65536, 256, 1024}, {1, 2, 3, 4, 5}),
       "truncated: expected 17179869184 bytes of data, found 5"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir.file(c.name);
    write_bytes(path, c.bytes);
    expect_data_error([&] { io::load_idx_images<3, 3>(path); }, path, c.message);
  }
  // The same content, gzip-compressed and then cut short.
  write_gz(dir.file("cut.gz"), good);
  const auto size = std::filesystem::file_size(dir.file("cut.gz"));
  std::filesystem::resize_file(dir.file("cut.gz"), size - 12);
  expect_data_error([&] { io::load_idx_images<3, 3>(dir.file("cut.gz")); }, dir.file("cut.gz"), "");
}

TEST(Idx, WrongImageSizeOrKindIsRejected) {
  TempDir dir;
  write_bytes(dir.file("images"), idx_bytes({2, 3, 3}, ramp(18)));
  expect_data_error([&] { io::load_idx_images<28, 28>(dir.file("images")); }, dir.file("images"),
                    "images are 3x3 but the model expects 28x28");
  expect_data_error([&] { io::load_idx_labels(dir.file("images")); }, dir.file("images"), "expected labels");
  write_bytes(dir.file("labels"), idx_bytes({4}, {1, 2, 3, 4}));
  expect_data_error([&] { io::load_idx_images<3, 3>(dir.file("labels")); }, dir.file("labels"), "expected images");
  expect_data_error([&] { io::load_idx_images<3, 3>(dir.file("missing")); }, dir.file("missing"), "cannot open file");
}

TEST(Idx, ReadsFashionMnistWhenInstalled) {
  const std::string dir = DIFFUSE_FASHION_MNIST_DIR;
  const std::string images = dir + "/t10k-images-idx3-ubyte.gz", labels = dir + "/t10k-labels-idx1-ubyte.gz";
  if (!std::filesystem::exists(images)) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  auto x = io::load_idx_images<28, 28>(images);
  auto y = io::load_idx_labels(labels);
  ASSERT_EQ(x.batch(), 10000u);
  ASSERT_EQ(y.size(), 10000u);
  for (int label : y) ASSERT_TRUE(label >= 0 && label < 10);
  EXPECT_EQ(max(x), 1.f);  // some pixel is 255
  // Garments on a black background: the mean pixel is well below the middle grey.
  EXPECT_LT(mean(x), -0.2f);
  EXPECT_GT(mean(x), -0.6f);
}

}  // namespace

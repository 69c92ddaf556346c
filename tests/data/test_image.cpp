// Image files: PNG round trips, grids, size checks, unreadable files.
#include <unistd.h>

#include <filesystem>

#include <zlib.h>

#include <diffuse/io/image.hpp>
#include <diffuse/tensor.hpp>

#include "temp_dir.hpp"

namespace {

using namespace diffuse;
using diffuse::testing::TempDir;
using diffuse::testing::write_bytes;

TEST(Image, BytesAndUnitRangeConvertBothWays) {
  EXPECT_EQ(io::to_byte(-1.f), 0);
  EXPECT_EQ(io::to_byte(1.f), 255);
  EXPECT_EQ(io::to_byte(-7.f), 0);  // clamped
  EXPECT_EQ(io::to_byte(3.f), 255);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(io::to_byte(io::from_byte(static_cast<std::uint8_t>(b))), b);
}

TEST(Image, PngRoundTripIsExact) {
  TempDir dir;
  Tensor<float, Shape<dyn, 5, 7, 3>> x(1), y(1);
  Generator g(3);
  fill_uniform(x, g, -1, 1);
  x = x * 127.5f;  // snap to the byte grid so the round trip is exact
  for (float& v : x) v = std::round(v + 127.5f) / 127.5f - 1.f;
  const std::string path = dir.file("x.png");
  io::write_png(path, io::to_image8(TensorView<const float, Shape<5, 7, 3>>(x.item(0))));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  const io::Image8 back = io::read_image(path);
  EXPECT_EQ(back.height, 5u);
  EXPECT_EQ(back.width, 7u);
  EXPECT_EQ(back.channels, 3u);
  io::from_image8(back, y.item(0));
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y.data()[i], x.data()[i], 1e-6f) << i;
  // Converting to grey on reading.
  EXPECT_EQ(io::read_image(path, 1).channels, 1u);
}

TEST(Image, GridPlacesImagesRowByRow) {
  Tensor<float, Shape<dyn, 2, 3, 1>> x(5);
  for (std::size_t i = 0; i < 5; ++i) x.item(i) = -1.f + 0.5f * static_cast<float>(i);
  const io::Image8 grid = io::image_grid(TensorView<const float, Shape<dyn, 2, 3, 1>>(x.view()), 3, 1);
  EXPECT_EQ(grid.width, 3u * 3 + 2);
  EXPECT_EQ(grid.height, 2u * 2 + 1);
  auto at = [&](std::size_t r, std::size_t c) { return grid.pixels[r * grid.width + c]; };
  EXPECT_EQ(at(0, 0), io::to_byte(-1.f));   // image 0
  EXPECT_EQ(at(1, 4), io::to_byte(-0.5f));  // image 1 (columns 4..6)
  EXPECT_EQ(at(0, 3), 0);                   // gap
  EXPECT_EQ(at(3, 2), io::to_byte(0.5f));   // image 3, second row
  EXPECT_EQ(at(4, 5), io::to_byte(1.f));    // image 4
  EXPECT_EQ(at(3, 8), 0);                   // empty sixth cell
}

TEST(Image, WrongSizeAndBadFilesGiveClearErrors) {
  TempDir dir;
  Tensor<float, Shape<dyn, 4, 4, 1>> x(1);
  io::Image8 img{5, 4, 1, std::vector<std::uint8_t>(20)};
  try {
    io::from_image8(img, x.item(0), "cat.png");
    ADD_FAILURE() << "no error";
  } catch (const io::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("cat.png: is 4x5 with 1 channel(s), expected 4x4 with 1"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(io::read_image(dir.file("missing.png")), io::DataError);
  write_bytes(dir.file("garbage.png"), {0x89, 'P', 'N', 'G', 1, 2, 3});
  EXPECT_THROW(io::read_image(dir.file("garbage.png")), io::DataError);
  EXPECT_THROW(io::write_png(dir.file("no/such/folder/x.png"), img), io::DataError);
}

// A grey PNG built by hand: IHDR, one IDAT holding a zlib stream of stored (uncompressed)
// blocks, so that a pixel can be changed in place, and IEND; chunk CRCs from zlib.
// With change_a_pixel the zlib Adler-32 stays that of the unchanged pixels; fix_chunk_crc
// false leaves the IDAT CRC wrong too; declared_h (if not 0) is the height IHDR claims.
std::string grey_png(std::uint32_t w, std::uint32_t h, bool change_a_pixel, bool fix_chunk_crc = true,
                     std::uint32_t declared_h = 0) {
  auto be32 = [](std::uint32_t v) {
    return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  };
  auto chunk = [&](const std::string& type, const std::string& data, bool good_crc = true) {
    const std::string td = type + data;
    std::uint32_t crc = static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(td.data()), uInt(td.size())));
    if (!good_crc) crc ^= 1;
    return be32(std::uint32_t(data.size())) + td + be32(crc);
  };
  std::string raw;  // filter byte 0, then the row
  for (std::uint32_t y = 0; y < h; ++y) {
    raw += '\0';
    for (std::uint32_t x = 0; x < w; ++x) raw += char((x * 37 + y * 11) & 0xff);
  }
  const std::uint32_t adler = static_cast<std::uint32_t>(adler32(1, reinterpret_cast<const Bytef*>(raw.data()), uInt(raw.size())));
  if (change_a_pixel) raw[1 + w / 2] = char(raw[1 + w / 2] ^ 0x40);
  const auto n = static_cast<std::uint16_t>(raw.size());
  std::string z = {char(0x78), char(0x01), char(0x01), char(n & 0xff), char(n >> 8), char(~n & 0xff), char((~n >> 8) & 0xff)};
  z += raw + be32(adler);
  const std::string ihdr = be32(w) + be32(declared_h ? declared_h : h) + std::string{char(8), char(0), char(0), char(0), char(0)};
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", z, fix_chunk_crc) + chunk("IEND", "");
}

void write_png_bytes(const std::string& path, const std::string& bytes) {
  write_bytes(path, std::vector<unsigned char>(bytes.begin(), bytes.end()));
}

// PNG checksums are verified: a changed pixel is an error whether the chunk CRC was
// updated to match (then the zlib Adler-32 catches it) or not.
TEST(Image, DamagedPngIsAnErrorNamingTheFile) {
  TempDir dir;
  const std::string good = dir.file("good.png"), bad = dir.file("bad.png");
  write_png_bytes(good, grey_png(8, 3, false));
  const io::Image8 img = io::read_image(good);
  ASSERT_EQ(img.width, 8u);
  ASSERT_EQ(img.channels, 1u);
  EXPECT_EQ(img.pixels[5], 5 * 37);
  for (bool fixed_crc : {true, false}) {
    write_png_bytes(bad, grey_png(8, 3, true, fixed_crc));
    try {
      (void)io::read_image(bad);
      ADD_FAILURE() << "a changed pixel was read without complaint (chunk CRC " << (fixed_crc ? "updated" : "stale") << ")";
    } catch (const io::DataError& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("damaged PNG"), std::string::npos) << e.what();
    }
  }
}

// A header that declares 20000 x 20000 pixels is refused before the pixels are allocated.
TEST(Image, DeclaredSizeIsCheckedBeforeDecoding) {
  TempDir dir;
  const std::string path = dir.file("huge.png");
  write_png_bytes(path, grey_png(20000, 1, false, true, 20000));  // one row of data, 20000 declared
  try {
    (void)io::read_image(path);
    ADD_FAILURE() << "no error";
  } catch (const io::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("declares 20000x20000 pixels"), std::string::npos) << e.what();
  }
  // The limit is a parameter: a small image above a small limit is refused the same way.
  write_png_bytes(path, grey_png(8, 3, false));
  EXPECT_THROW((void)io::read_image(path, 0, 16), io::DataError);
}

TEST(Image, ResizeKeepsAConstantImageConstant) {
  io::Image8 img{10, 12, 3, std::vector<std::uint8_t>(10 * 12 * 3, 77)};
  const io::Image8 small = io::resize(img, 4, 5);
  EXPECT_EQ(small.height, 4u);
  EXPECT_EQ(small.width, 5u);
  for (auto b : small.pixels) EXPECT_NEAR(b, 77, 1);
}

}  // namespace

// Image files: PNG round trips, grids, size checks, unreadable files.
#include <unistd.h>

#include <filesystem>

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

TEST(Image, ResizeKeepsAConstantImageConstant) {
  io::Image8 img{10, 12, 3, std::vector<std::uint8_t>(10 * 12 * 3, 77)};
  const io::Image8 small = io::resize(img, 4, 5);
  EXPECT_EQ(small.height, 4u);
  EXPECT_EQ(small.width, 5u);
  for (auto b : small.pixels) EXPECT_NEAR(b, 77, 1);
}

}  // namespace

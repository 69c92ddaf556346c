// Image folders for training: channel conversion with transparency, centre crops,
// recursive listing, class folders; grids enlarged for viewing.
#include <gtest/gtest.h>

#include <filesystem>

#include <diffuse/io/image_folder.hpp>
#include <diffuse/tensor.hpp>
#include <diffuse/train/trainer.hpp>

#include "temp_dir.hpp"

using namespace diffuse;
using diffuse::testing::TempDir;

namespace {

io::Image8 rgba_pixel(std::uint8_t r, std::uint8_t g, std::uint8_t b, std::uint8_t a) { return {1, 1, 4, {r, g, b, a}}; }

void write_colour(const std::string& path, std::size_t h, std::size_t w, std::uint8_t r, std::uint8_t g,
                  std::uint8_t b) {
  io::Image8 img{h, w, 3, {}};
  for (std::size_t i = 0; i < h * w; ++i) img.pixels.insert(img.pixels.end(), {r, g, b});
  io::write_png(path, img);
}

}  // namespace

TEST(ImageFolder, TransparencyIsCompositedOrRefusedNeverDropped) {
  const io::Image8 half = rgba_pixel(200, 100, 0, 128);  // half-transparent orange
  io::ImageCounts n;
  const io::Image8 on_white = io::to_channels(half, 3, io::Alpha::white, "p.png", &n);
  const io::Image8 on_black = io::to_channels(half, 3, io::Alpha::black, "p.png", &n);
  // v * a + bg * (1 - a), a = 128/255
  EXPECT_EQ(on_white.pixels, (std::vector<std::uint8_t>{227, 177, 127}));
  EXPECT_EQ(on_black.pixels, (std::vector<std::uint8_t>{100, 50, 0}));
  EXPECT_EQ(n.transparent, 2u);
  try {
    io::to_channels(half, 3, io::Alpha::error, "sprite.png");
    ADD_FAILURE() << "no error";
  } catch (const io::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("sprite.png: has transparent pixels"), std::string::npos) << e.what();
  }
  // An alpha channel that is opaque everywhere passes even with Alpha::error.
  EXPECT_EQ(io::to_channels(rgba_pixel(1, 2, 3, 255), 3, io::Alpha::error, "p.png").pixels,
            (std::vector<std::uint8_t>{1, 2, 3}));
}

TEST(ImageFolder, GreyAndColourConvertBothWays) {
  io::ImageCounts n;
  EXPECT_EQ(io::to_channels({1, 1, 1, {77}}, 3, io::Alpha::white, "g.png", &n).pixels,
            (std::vector<std::uint8_t>{77, 77, 77}));
  EXPECT_EQ(io::to_channels({1, 1, 3, {255, 0, 0}}, 1, io::Alpha::white, "c.png", &n).pixels,
            (std::vector<std::uint8_t>{76}));  // stb's luma of pure red: 255 * 77 >> 8
  EXPECT_EQ(n.grey_to_rgb, 1u);
  EXPECT_EQ(n.rgb_to_grey, 1u);
}

TEST(ImageFolder, CentreSquareAndCropOption) {
  io::Image8 wide{2, 4, 1, {0, 1, 2, 3, 10, 11, 12, 13}};
  EXPECT_EQ(io::centre_square(wide).pixels, (std::vector<std::uint8_t>{1, 2, 11, 12}));
  TempDir dir;
  write_colour(dir.file("wide.png"), 4, 8, 10, 20, 30);
  Tensor<float, Shape<dyn, 4, 4, 3>> x(1);
  EXPECT_THROW(io::load_image(dir.file("wide.png"), x.item(0), io::ImageFit{}), io::DataError);
  io::ImageCounts n;
  io::load_image(dir.file("wide.png"), x.item(0), io::ImageFit{.crop = true}, &n);  // 4x8 -> 4x4, no resize
  EXPECT_EQ(n.cropped, 1u);
  EXPECT_EQ(n.resized, 0u);
  EXPECT_FLOAT_EQ(x.data()[2], io::from_byte(30));  // blue stays blue: RGB order kept
}

TEST(ImageFolder, RecursiveListingTakesEachFileOnce) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("a/b"));
  write_colour(dir.file("top.png"), 2, 2, 0, 0, 0);
  write_colour(dir.file("a/b/deep.png"), 2, 2, 0, 0, 0);
  std::filesystem::create_symlink(dir.file("top.png"), dir.file("a/link.png"));
  EXPECT_EQ(io::image_files(dir.file("")).size(), 1u);  // not recursive: top.png
  const auto all = io::image_files(dir.file(""), /*recursive=*/true);
  ASSERT_EQ(all.size(), 2u);  // the link leads to top.png, taken once
  EXPECT_NE(all[0].find("a/b/deep.png"), std::string::npos);
}

TEST(ImageFolder, ClassFoldersGiveLabelsInNameOrder) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("d/red"));
  std::filesystem::create_directories(dir.file("d/blue/more"));
  write_colour(dir.file("d/red/r.png"), 2, 2, 255, 0, 0);
  write_colour(dir.file("d/blue/b.png"), 2, 2, 0, 0, 255);
  write_colour(dir.file("d/blue/more/b2.png"), 2, 2, 0, 0, 255);
  const auto r = io::load_class_folders<2, 2, 3>(dir.file("d"), io::ImageFit{});
  EXPECT_EQ(r.classes, (std::vector<std::string>{"blue", "red"}));
  EXPECT_EQ(r.labels, (std::vector<int>{0, 0, 1}));
  EXPECT_FLOAT_EQ(r.images.data()[2], 1.f);       // image 0 (blue): B = 255
  EXPECT_FLOAT_EQ(r.images.data()[2 * 12], 1.f);  // image 2 (red): R = 255
  write_colour(dir.file("d/stray.png"), 2, 2, 0, 0, 0);
  EXPECT_THROW((io::load_class_folders<2, 2, 3>(dir.file("d"), io::ImageFit{})), io::DataError);
  std::filesystem::create_directories(dir.file("empty/none"));
  EXPECT_THROW((io::load_class_folders<2, 2, 3>(dir.file("empty"), io::ImageFit{})), io::DataError);
}

TEST(ImageFolder, GridsAreEnlargedByWholeFactors) {
  EXPECT_EQ(io::readable_scale(298), 2u);  // the 28x28 10-column grid: 596 px
  EXPECT_EQ(io::readable_scale(512), 1u);
  EXPECT_EQ(io::readable_scale(70), 8u);
  const io::Image8 up = io::upscale_nearest({1, 2, 1, {5, 9}}, 3);
  EXPECT_EQ(up.width, 6u);
  EXPECT_EQ(up.height, 3u);
  EXPECT_EQ(up.pixels, (std::vector<std::uint8_t>{5, 5, 5, 9, 9, 9, 5, 5, 5, 9, 9, 9, 5, 5, 5, 9, 9, 9}));
}

TEST(ImageFolder, FlipLeftRightMirrorsWholePixels) {
  Tensor<float, Shape<1, 3, 2>> x;
  for (std::size_t i = 0; i < 6; ++i) x.data()[i] = float(i);  // pixels (0,1) (2,3) (4,5)
  train::flip_left_right(x.view());
  EXPECT_EQ(std::vector<float>(x.data(), x.data() + 6), (std::vector<float>{4, 5, 2, 3, 0, 1}));
}

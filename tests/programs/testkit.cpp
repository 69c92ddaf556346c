// Small file tool for the tests of diffuse-train and diffuse-sample (run_case.sh):
//
//   testkit idx PATH N H W [bad-magic|truncated]   an IDX image file of N H x W images
//                                                   (blobs that differ per image)
//   testkit labels PATH N CLASSES                   an IDX label file: image i has label i % CLASSES
//   testkit png PATH H W [SEED]                     one grey H x W test image
//   testkit compare A.png B.png MAXDIFF             same size, every byte within MAXDIFF
//   testkit ssim A.png B.png                        prints the SSIM of two grey images
//   testkit shapes DIR N SIZE R G B [alpha]        N colour SIZE x SIZE images: a disc of half
//                                                   the colour on a background of (R, G, B);
//                                                   with alpha, transparent outside a circle
//   testkit mean-rgb A.png...                       prints the mean R, G and B (0-255) of images
//   testkit mask PATH H W                           a grey mask: left half white, right half black
//   testkit inpainted IN OUT MASK                   prints the largest difference of OUT from IN
//                                                   where MASK is black, the mean where white
//   testkit size A.png                              prints the width and height of an image
//   testkit json FILE                               FILE is JSON lines (every line parses
//                                                   with a strict JSON parser), or, for a
//                                                   .safetensors file, its header is JSON
//   testkit tensors-close A B TOL [KEY]             A and B (safetensors) hold the same
//                                                   tensors, each within TOL of A's largest
//                                                   magnitude, but the middle third of those
//                                                   whose name contains KEY (the attention's
//                                                   key bias in qkv.bias); prints the largest ratio
//
// Exit status 0 on success, 1 when a comparison fails, 2 on bad use.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <diffuse/io/image.hpp>
#include <diffuse/io/safetensors.hpp>
#include <diffuse/metrics/ssim.hpp>
#include <nlohmann/json.hpp>

namespace {

// A grey image with two soft blobs whose places depend on `seed`: structure for SSIM.
std::vector<std::uint8_t> pattern(std::size_t h, std::size_t w, unsigned seed) {
  std::vector<std::uint8_t> px(h * w);
  const double cx = 0.3 * double(w) + double(seed * 7 % 11) * double(w) / 30.0;
  const double cy = 0.4 * double(h) + double(seed * 5 % 7) * double(h) / 30.0;
  for (std::size_t y = 0; y < h; ++y)
    for (std::size_t x = 0; x < w; ++x) {
      const double d1 = std::hypot(double(x) - cx, double(y) - cy) / (0.18 * double(w));
      const double d2 = std::hypot(double(x) - double(w) + cx, double(y) - double(h) * 0.7) / (0.12 * double(w));
      const double v = 255.0 * (std::exp(-d1 * d1) + 0.8 * std::exp(-d2 * d2));
      px[y * w + x] = static_cast<std::uint8_t>(std::min(255.0, v));
    }
  return px;
}

void be32(std::ofstream& f, std::uint32_t v) {
  const char b[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  f.write(b, 4);
}

int idx(const std::string& path, std::size_t n, std::size_t h, std::size_t w, const std::string& flaw) {
  std::ofstream f(path, std::ios::binary);
  const bool bad = flaw == "bad-magic";  // an IDX magic starts with two zero bytes
  const char magic[4] = {char(bad ? 0x12 : 0), char(bad ? 0x34 : 0), 0x08, 3};
  f.write(magic, 4);
  be32(f, std::uint32_t(n));
  be32(f, std::uint32_t(h));
  be32(f, std::uint32_t(w));
  std::vector<std::uint8_t> all;
  for (std::size_t i = 0; i < n; ++i) {
    const auto p = pattern(h, w, unsigned(i));
    all.insert(all.end(), p.begin(), p.end());
  }
  if (flaw == "truncated") all.resize(all.size() / 2);
  f.write(reinterpret_cast<const char*>(all.data()), std::streamsize(all.size()));
  return f ? 0 : 2;
}

int labels(const std::string& path, std::size_t n, std::size_t classes) {
  std::ofstream f(path, std::ios::binary);
  const char magic[4] = {0, 0, 0x08, 1};
  f.write(magic, 4);
  be32(f, std::uint32_t(n));
  for (std::size_t i = 0; i < n; ++i) f.put(char(i % classes));
  return f ? 0 : 2;
}

diffuse::io::Image8 grey(const std::string& path) {
  diffuse::io::Image8 img = diffuse::io::read_image(path, 1);
  return img;
}

int compare(const std::string& a, const std::string& b, int maxdiff) {
  const auto x = grey(a), y = grey(b);
  if (x.height != y.height || x.width != y.width) {
    std::printf("%s and %s differ in size\n", a.c_str(), b.c_str());
    return 1;
  }
  int worst = 0;
  for (std::size_t i = 0; i < x.pixels.size(); ++i) worst = std::max(worst, std::abs(int(x.pixels[i]) - int(y.pixels[i])));
  std::printf("largest difference %d\n", worst);
  return worst <= maxdiff ? 0 : 1;
}

int ssim(const std::string& a, const std::string& b) {
  const auto x = grey(a), y = grey(b);
  if (x.height != y.height || x.width != y.width) return 1;
  std::vector<float> fx(x.pixels.size()), fy(y.pixels.size());
  for (std::size_t i = 0; i < fx.size(); ++i) {
    fx[i] = diffuse::io::from_byte(x.pixels[i]);
    fy[i] = diffuse::io::from_byte(y.pixels[i]);
  }
  // The images' size is known only at run time.
  std::printf("%.6f\n", diffuse::metrics::ssim(std::span<const float>(fx), std::span<const float>(fy), x.height, x.width, 1));
  return 0;
}

// Strict JSON (nlohmann::json follows RFC 8259: no raw control characters in strings, no
// NaN): what Python's json module and the safetensors package accept.
int json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  if (path.size() > 12 && path.ends_with(".safetensors")) {
    std::uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    std::string header(n, '\0');
    f.read(header.data(), std::streamsize(n));
    if (!nlohmann::json::accept(header)) {
      std::printf("%s: the header is not JSON\n", path.c_str());
      return 1;
    }
    return 0;
  }
  std::string line;
  for (int i = 1; std::getline(f, line); ++i)
    if (!nlohmann::json::accept(line)) {
      std::printf("%s:%d: not JSON: %s\n", path.c_str(), i, line.c_str());
      return 1;
    }
  return 0;
}

// N colour images: a disc of half the colour, its place depending on the image, on a
// background of (r, g, b); with `alpha`, pixels outside the inscribed circle transparent.
int shapes(const std::string& dir, std::size_t n, std::size_t size, int r, int g, int b, bool alpha) {
  const std::size_t c = alpha ? 4 : 3;
  for (std::size_t i = 0; i < n; ++i) {
    diffuse::io::Image8 img{size, size, c, std::vector<std::uint8_t>(size * size * c)};
    const double cx = double(size) * (0.3 + 0.4 * double(i * 7 % 11) / 10.0);
    const double cy = double(size) * (0.3 + 0.4 * double(i * 3 % 7) / 6.0);
    const double rad = double(size) * (0.12 + 0.1 * double(i % 3) / 2.0);
    for (std::size_t y = 0; y < size; ++y)
      for (std::size_t x = 0; x < size; ++x) {
        const bool disc = std::hypot(double(x) - cx, double(y) - cy) < rad;
        std::uint8_t* p = img.pixels.data() + (y * size + x) * c;
        p[0] = std::uint8_t(disc ? r / 2 : r), p[1] = std::uint8_t(disc ? g / 2 : g), p[2] = std::uint8_t(disc ? b / 2 : b);
        if (alpha) {
          const double half = double(size) / 2.0;
          p[3] = std::hypot(double(x) + 0.5 - half, double(y) + 0.5 - half) < half ? 255 : 0;
        }
      }
    char name[32];
    std::snprintf(name, sizeof name, "/shape-%04zu.png", i);
    diffuse::io::write_png(dir + name, img);
  }
  return 0;
}

int inpainted(const std::string& in, const std::string& out, const std::string& mask) {
  const auto a = diffuse::io::read_image(in, 1), b = diffuse::io::read_image(out, 1), m = diffuse::io::read_image(mask, 1);
  if (a.pixels.size() != b.pixels.size() || a.pixels.size() != m.pixels.size()) return 2;
  int kept_max = 0;
  double changed = 0, count = 0;
  for (std::size_t i = 0; i < a.pixels.size(); ++i) {
    const int d = std::abs(int(a.pixels[i]) - int(b.pixels[i]));
    if (m.pixels[i] == 0) kept_max = std::max(kept_max, d);
    if (m.pixels[i] == 255) changed += d, count += 1;
  }
  std::printf("%d %.2f\n", kept_max, count ? changed / count : 0.0);
  return 0;
}

int mean_rgb(const std::vector<std::string>& files) {
  double sum[3] = {0, 0, 0}, count = 0;
  for (const auto& f : files) {
    const diffuse::io::Image8 img = diffuse::io::read_image(f, 3);
    for (std::size_t i = 0; i < img.height * img.width; ++i)
      for (int k = 0; k < 3; ++k) sum[k] += img.pixels[i * 3 + k];
    count += double(img.height * img.width);
  }
  std::printf("%.1f %.1f %.1f\n", sum[0] / count, sum[1] / count, sum[2] / count);
  return 0;
}

int tensors_close(const std::string& a_path, const std::string& b_path, double tol, const std::string& skip) {
  const diffuse::io::SafetensorsFile a(a_path), b(b_path);
  if (a.names() != b.names()) {
    std::fprintf(stderr, "testkit: %s and %s hold different tensors\n", a_path.c_str(), b_path.c_str());
    return 1;
  }
  double worst = 0;
  std::string where;
  for (const auto& name : a.names()) {
    const auto& shape = a.info(name).shape;
    const auto x = a.read_vector(name, shape), y = b.read_vector(name, shape);
    const bool thirds = !skip.empty() && name.find(skip) != std::string::npos;
    double scale = 1e-30, diff = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (thirds && i >= x.size() / 3 && i < 2 * x.size() / 3) continue;
      scale = std::max(scale, double(std::abs(x[i])));
      diff = std::max(diff, double(std::abs(x[i] - y[i])));
    }
    if (!(diff / scale <= worst)) worst = diff / scale, where = name;  // (NaN counts as the worst)
  }
  std::printf("largest difference %.3g of the tensor's largest magnitude (%s)\n", worst, where.c_str());
  return worst <= tol ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> a(argv + 1, argv + argc);
  try {
    if (a.size() >= 5 && a[0] == "idx")
      return idx(a[1], std::stoul(a[2]), std::stoul(a[3]), std::stoul(a[4]), a.size() > 5 ? a[5] : "");
    if (a.size() == 4 && a[0] == "labels") return labels(a[1], std::stoul(a[2]), std::stoul(a[3]));
    if (a.size() >= 4 && a[0] == "png") {
      const std::size_t h = std::stoul(a[2]), w = std::stoul(a[3]);
      diffuse::io::write_png(a[1], {h, w, 1, pattern(h, w, a.size() > 4 ? unsigned(std::stoul(a[4])) : 0u)});
      return 0;
    }
    if (a.size() == 4 && a[0] == "compare") return compare(a[1], a[2], std::stoi(a[3]));
    if (a.size() == 3 && a[0] == "ssim") return ssim(a[1], a[2]);
    if (a.size() == 2 && a[0] == "json") return json(a[1]);
    if ((a.size() == 4 || a.size() == 5) && a[0] == "tensors-close")
      return tensors_close(a[1], a[2], std::stod(a[3]), a.size() == 5 ? a[4] : "");
    if (a.size() >= 7 && a[0] == "shapes")
      return shapes(a[1], std::stoul(a[2]), std::stoul(a[3]), std::stoi(a[4]), std::stoi(a[5]), std::stoi(a[6]),
                    a.size() > 7 && a[7] == "alpha");
    if (a.size() == 4 && a[0] == "mask") {
      const std::size_t h = std::stoul(a[2]), w = std::stoul(a[3]);
      diffuse::io::Image8 m{h, w, 1, std::vector<std::uint8_t>(h * w, 0)};
      for (std::size_t y = 0; y < h; ++y)
        for (std::size_t x = 0; x < w / 2; ++x) m.pixels[y * w + x] = 255;
      diffuse::io::write_png(a[1], m);
      return 0;
    }
    if (a.size() == 4 && a[0] == "inpainted") return inpainted(a[1], a[2], a[3]);
    if (a.size() == 2 && a[0] == "size") {
      const diffuse::io::Image8 img = diffuse::io::read_image(a[1]);
      std::printf("%zu %zu\n", img.width, img.height);
      return 0;
    }
    if (a.size() >= 2 && a[0] == "mean-rgb") return mean_rgb({a.begin() + 1, a.end()});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "testkit: %s\n", e.what());
    return 2;
  }
  std::fprintf(stderr, "usage: testkit idx|labels|png|compare|ssim|json|tensors-close|shapes|mean-rgb|size|mask|inpainted ...\n");
  return 2;
}

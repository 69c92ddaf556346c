// Tests of the BF16 operand path (kernels/precision.hpp, detail/gemm_bf16.hpp): the
// rounding, and the GEMMs and convolutions against the naive twins run on operands rounded
// to BF16 (the products are then exact on both sides, so only the summation order differs);
// the fallback when BF16 is not available.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "diffuse/core/parallel.hpp"
#include "diffuse/kernels/conv2d.hpp"
#include "diffuse/kernels/gemm.hpp"
#include "diffuse/kernels/precision.hpp"
#include "diffuse/kernels/reference/conv2d.hpp"
#include "diffuse/kernels/reference/gemm.hpp"
#include "test_util.hpp"

namespace k = diffuse::kernels;
namespace ref = diffuse::kernels::reference;
using diffuse_test::all_near;
using diffuse_test::random_vector;
using diffuse_test::tolerance;
using k::Conv2dShape;
using k::index_t;
using k::MatmulPrecision;

namespace {

std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = k::round_to_bf16(x);
  return v;
}

#define SKIP_WITHOUT_BF16()                                                       \
  if (!k::bf16_available()) GTEST_SKIP() << k::bf16_unavailable_reason()

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(k::to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(k::to_bf16(-2.0f), 0xc000);
  const float ulp = std::ldexp(1.0f, -7);  // BF16 spacing at 1
  // Halfway cases go to the even neighbour; anything above half rounds up.
  EXPECT_EQ(k::round_to_bf16(1.0f + ulp / 2), 1.0f);
  EXPECT_EQ(k::round_to_bf16(1.0f + 3 * ulp / 2), 1.0f + 2 * ulp);
  EXPECT_EQ(k::round_to_bf16(1.0f + ulp / 2 + std::ldexp(1.0f, -20)), 1.0f + ulp);
  EXPECT_EQ(k::round_to_bf16(std::numeric_limits<float>::infinity()),
            std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(k::round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  // The largest finite float rounds up to infinity, as the instruction does.
  EXPECT_TRUE(std::isinf(k::round_to_bf16(std::numeric_limits<float>::max())));
}

TEST(Bf16, ParsesTheNamesItPrints) {
  for (auto p : {MatmulPrecision::fp32, MatmulPrecision::bf16})
    EXPECT_EQ(k::parse_matmul_precision(k::to_string(p)), p);
  EXPECT_FALSE(k::parse_matmul_precision("BF16x").has_value());
  EXPECT_FALSE(k::parse_matmul_precision("").has_value());
}

TEST(Bf16, UnavailableIsAnErrorThatChangesNothing) {
  ASSERT_EQ(k::matmul_precision(), MatmulPrecision::fp32);
  ::setenv("DIFFUSE_DISABLE_BF16", "1", 1);
  EXPECT_FALSE(k::bf16_available());
  try {
    k::set_matmul_precision(MatmulPrecision::bf16);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    // The reason: the variable, or (a build without the kernels) the build itself.
    const std::string why = DIFFUSE_BF16_KERNELS ? "DIFFUSE_DISABLE_BF16 is set" : "this build has no BF16 kernels";
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    EXPECT_EQ(k::bf16_unavailable_reason().rfind(why, 0), 0u) << k::bf16_unavailable_reason();
  }
  EXPECT_EQ(k::matmul_precision(), MatmulPrecision::fp32);
  ::unsetenv("DIFFUSE_DISABLE_BF16");
}

TEST(Bf16, ScopeRestoresThePreviousPrecision) {
  SKIP_WITHOUT_BF16();
  {
    k::MatmulPrecisionScope bf16(MatmulPrecision::bf16);
    EXPECT_EQ(k::matmul_precision(), MatmulPrecision::bf16);
  }
  EXPECT_EQ(k::matmul_precision(), MatmulPrecision::fp32);
}

struct Mnk {
  index_t m, n, k;
};

// Odd and even K (pairs padded), edges of MR, NR, the K blocks (KS = 384 pairs) and the
// wide-GEMM path.
const Mnk gemm_shapes[] = {{1, 1, 1},     {2, 3, 5},     {7, 13, 17},  {14, 32, 768},
                           {15, 33, 769}, {13, 31, 29},  {29, 65, 1537}, {1, 97, 130},
                           {97, 1, 130},  {701, 40, 21}, {3, 1000, 5}, {150, 256, 30},
                           {131, 67, 211}, {16, 16, 0}};

TEST(Bf16, GemmMatchesReferenceOnRoundedOperands) {
  SKIP_WITHOUT_BF16();
  k::MatmulPrecisionScope bf16(MatmulPrecision::bf16);
  unsigned seed = 7;
  // 1 and 2 threads with this CPU's blocking, then 2 threads with other CPUs' blocking.
  for (int run = 0; run < 2 + int(std::size(diffuse_test::other_caches)); ++run) {
    const int nt = run == 0 ? 1 : 2;
    diffuse::set_num_threads(nt);
    std::optional<diffuse_test::BlockFor> blocking;
    if (run >= 2) blocking.emplace(diffuse_test::other_caches[run - 2]);
    for (const auto& s : gemm_shapes)
      for (int t = 0; t < 4; ++t)
        for (auto act : {k::Activation::none, k::Activation::silu}) {
          const bool ta = t & 1, tb = t & 2;
          const index_t lda = (ta ? s.m : s.k) + 3, ldb = (tb ? s.k : s.n) + 2, ldc = s.n + 5;
          auto a = random_vector<float>(std::size_t((ta ? s.k : s.m) * lda + 1), seed++);
          auto b = random_vector<float>(std::size_t((tb ? s.n : s.k) * ldb + 1), seed++);
          auto c = random_vector<float>(std::size_t(s.m * ldc + 1), seed++);
          auto bias = random_vector<float>(std::size_t(s.n), seed++);
          const float alpha = 0.75f, beta = act == k::Activation::none ? -0.5f : 0.0f;
          const k::Epilogue<float> epi{bias.data(), act};
          auto want = c;
          const auto ar = rounded(a), br = rounded(b);
          k::gemm(ta, tb, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc,
                  epi);
          ref::gemm(ta, tb, s.m, s.n, s.k, alpha, ar.data(), lda, br.data(), ldb, beta,
                    want.data(), ldc, epi);
          EXPECT_TRUE(all_near(c, want, tolerance<float>(double(s.k), 2.0)))
              << "m=" << s.m << " n=" << s.n << " k=" << s.k << " ta=" << ta << " tb=" << tb
              << " threads " << nt;
        }
  }
}

//                n   h   w  cin cout k  s  p
const Conv2dShape conv_shapes[] = {
    {1, 5, 5, 1, 1, 3, 1, 1},    {2, 7, 6, 3, 5, 3, 1, 1},    {2, 8, 8, 4, 8, 3, 2, 1},
    {3, 6, 6, 8, 1, 1, 1, 0},    {1, 11, 11, 3, 4, 5, 1, 2},  {2, 14, 14, 32, 32, 3, 1, 1},
    {1, 7, 7, 64, 64, 3, 1, 1},  {2, 28, 28, 1, 32, 3, 1, 1}, {1, 7, 7, 96, 64, 1, 1, 0},
    {1, 13, 13, 17, 19, 3, 1, 1}, {1, 14, 14, 32, 32, 3, 2, 1}, {1, 4, 4, 400, 32, 3, 1, 1},
    {2, 9, 9, 48, 24, 3, 2, 1},  {1, 6, 6, 16, 40, 3, 1, 1},  {2, 28, 28, 32, 1, 3, 1, 1},
    {1, 9, 9, 20, 3, 3, 2, 1},   {2, 5, 5, 35, 2, 1, 1, 0},
};

TEST(Bf16, ConvolutionsMatchReferenceOnRoundedOperands) {
  SKIP_WITHOUT_BF16();
  k::MatmulPrecisionScope bf16(MatmulPrecision::bf16);
  unsigned seed = 500;
  // 1 and 2 threads with this CPU's blocking, then 2 threads with other CPUs' blocking.
  for (int run = 0; run < 2 + int(std::size(diffuse_test::other_caches)); ++run) {
    const int nt = run == 0 ? 1 : 2;
    diffuse::set_num_threads(nt);
    std::optional<diffuse_test::BlockFor> blocking;
    if (run >= 2) blocking.emplace(diffuse_test::other_caches[run - 2]);
    for (const auto& s : conv_shapes) {
      auto x = random_vector<float>(std::size_t(s.n * s.h * s.w * s.cin), seed++);
      auto w = random_vector<float>(std::size_t(s.kk() * s.cout), seed++);
      auto bias = random_vector<float>(std::size_t(s.cout), seed++);
      auto y = random_vector<float>(std::size_t(s.pixels() * s.cout), seed++);
      const auto xr = rounded(x), wr = rounded(w);
      auto want = y;
      k::conv2d_forward(s, x.data(), w.data(), bias.data(), y.data(), 1.0f);
      ref::conv2d_forward(s, xr.data(), wr.data(), bias.data(), want.data(), 1.0f);
      EXPECT_TRUE(all_near(y, want, tolerance<float>(double(s.kk()), 2.0)))
          << "forward n" << s.n << " h" << s.h << " cin" << s.cin << " cout" << s.cout << " k"
          << s.k << " s" << s.stride << " threads " << nt;

      auto dy = random_vector<float>(std::size_t(s.pixels() * s.cout), seed++);
      auto dx = random_vector<float>(std::size_t(s.n * s.h * s.w * s.cin), seed++);
      const auto dyr = rounded(dy);
      auto dx_want = dx;
      k::conv2d_backward_input(s, dy.data(), w.data(), dx.data(), 1.0f);
      ref::conv2d_backward_input(s, dyr.data(), wr.data(), dx_want.data(), 1.0f);
      EXPECT_TRUE(all_near(dx, dx_want, tolerance<float>(double(s.k * s.k * s.cout), 2.0)))
          << "backward input n" << s.n << " h" << s.h << " cin" << s.cin << " cout" << s.cout
          << " k" << s.k << " s" << s.stride << " threads " << nt;

      auto dw = random_vector<float>(std::size_t(s.kk() * s.cout), seed++);
      auto db = random_vector<float>(std::size_t(s.cout), seed++);
      auto dw_want = dw, db_want = db;
      k::conv2d_backward_weight(s, x.data(), dy.data(), dw.data(), db.data(), 1.0f);
      // The bias gradient sums dy itself (no product): it stays FP32.
      ref::conv2d_backward_weight(s, xr.data(), dyr.data(), dw_want.data(), static_cast<float*>(nullptr), 1.0f);
      auto scratch = dw_want;
      ref::conv2d_backward_weight(s, x.data(), dy.data(), scratch.data(), db_want.data(), 1.0f);
      EXPECT_TRUE(all_near(dw, dw_want, tolerance<float>(double(s.pixels()), 2.0)))
          << "backward weight n" << s.n << " h" << s.h << " cin" << s.cin << " cout" << s.cout
          << " k" << s.k << " s" << s.stride << " threads " << nt;
      EXPECT_TRUE(all_near(db, db_want, tolerance<float>(double(s.pixels()), 2.0)));
    }
  }
}

// The setting is what selects the path: FP32 operands that BF16 cannot hold give a
// different product in bf16 and the exact one in fp32.
TEST(Bf16, PrecisionSelectsThePath) {
  SKIP_WITHOUT_BF16();
  const float a[2] = {1.0f + std::ldexp(1.0f, -12), 1.0f}, b[2] = {1.0f, 1.0f};
  float c = 0;
  k::gemm(false, false, 1, 1, 2, 1.0f, a, 2, b, 1, 0.0f, &c, 1);
  EXPECT_EQ(c, 2.0f + std::ldexp(1.0f, -12));
  k::MatmulPrecisionScope bf16(MatmulPrecision::bf16);
  k::gemm(false, false, 1, 1, 2, 1.0f, a, 2, b, 1, 0.0f, &c, 1);
  EXPECT_EQ(c, 2.0f);
}

}  // namespace

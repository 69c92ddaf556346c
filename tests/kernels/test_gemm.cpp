// Tests of kernels/gemm.hpp (plain, transposed, strided, epilogue, batched) and
// resample.hpp against their naive twins in kernels/reference/.
#include <gtest/gtest.h>

#include <tuple>
#include <vector>

#include "diffuse/core/parallel.hpp"
#include "diffuse/kernels/gemm.hpp"
#include "diffuse/kernels/reference/gemm.hpp"
#include "diffuse/kernels/reference/resample.hpp"
#include "diffuse/kernels/resample.hpp"
#include "test_util.hpp"

namespace k = diffuse::kernels;
namespace ref = diffuse::kernels::reference;
using diffuse_test::all_near;
using diffuse_test::random_vector;
using diffuse_test::tolerance;
using k::index_t;

namespace {

template <class T>
class Gemm : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Gemm, Types);

struct Mnk {
  index_t m, n, k;
};

// Tiny, odd, prime, tall/skinny, crossing MR/NR/KC/MC/NC block edges.
const Mnk shapes[] = {{1, 1, 1},    {1, 1, 0},     {0, 5, 3},     {4, 0, 3},    {2, 3, 5},
                      {7, 13, 17},  {14, 32, 384}, {15, 33, 385}, {13, 31, 29}, {29, 65, 769},
                      {1, 97, 130}, {97, 1, 130},  {1000, 3, 7},  {3, 1000, 5}, {701, 40, 21},
                      {3, 8300, 5}, {131, 67, 211}, {150, 256, 30}, {5, 700, 40},
                      {2, 300, 200}};

// One GEMM vs the reference with padded leading dimensions.
template <class T>
void check_gemm(bool ta, bool tb, Mnk s, T alpha, T beta, const k::Epilogue<T>& epi,
                unsigned seed) {
  const index_t lda = (ta ? s.m : s.k) + 3, ldb = (tb ? s.k : s.n) + 2, ldc = s.n + 5;
  const index_t arows = ta ? s.k : s.m, brows = tb ? s.n : s.k;
  auto a = random_vector<T>(std::size_t(std::max<index_t>(arows * lda, 1)), seed);
  auto b = random_vector<T>(std::size_t(std::max<index_t>(brows * ldb, 1)), seed + 1);
  auto c = random_vector<T>(std::size_t(std::max<index_t>(s.m * ldc, 1)), seed + 2);
  auto want = c;
  k::gemm(ta, tb, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc, epi);
  ref::gemm(ta, tb, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, want.data(), ldc,
            epi);
  EXPECT_TRUE(all_near(c, want, tolerance<T>(double(s.k), 4.0)))
      << "m=" << s.m << " n=" << s.n << " k=" << s.k << " ta=" << ta << " tb=" << tb
      << " alpha=" << alpha << " beta=" << beta;
}

TYPED_TEST(Gemm, MatchesReferenceAllTransposesAndShapes) {
  using T = TypeParam;
  const std::tuple<T, T> scalars[] = {{T(1), T(0)}, {T(0.5), T(-1.5)}, {T(0), T(2)}};
  for (int nt : diffuse_test::thread_counts) {
    diffuse::set_num_threads(nt);
    unsigned seed = 1;
    for (const auto& s : shapes)
      for (int t = 0; t < 4; ++t)
        for (const auto& [alpha, beta] : scalars)
          check_gemm<T>(t & 1, t & 2, s, alpha, beta, {}, seed += 3);
  }
}

// The K and M blocks come from the CPU's caches: the results must not depend on them.
TYPED_TEST(Gemm, MatchesReferenceWithOtherCpusBlocking) {
  using T = TypeParam;
  diffuse::set_num_threads(2);
  unsigned seed = 500;
  for (const auto& caches : diffuse_test::other_caches) {
    const diffuse_test::BlockFor scope(caches);
    for (const auto& s : shapes)
      for (int t = 0; t < 4; ++t) check_gemm<T>(t & 1, t & 2, s, T(0.5), T(-1.5), {}, seed += 3);
  }
}

TEST(Blocking, FromTheCaches) {
  using diffuse::kernels::detail::blocking_for;
  // A 48 KiB L1 and 1 MiB L2 give the constants measured best on such CPUs (Zen 5 here).
  const auto zen5 = blocking_for({48 * 1024, 1024 * 1024}, 14, 32, 4, 384);
  EXPECT_EQ(zen5.kc, 256);
  EXPECT_EQ(zen5.k_thin, 384);
  EXPECT_EQ(zen5.mc_panels, 24);
  EXPECT_EQ(zen5.wgrad_bytes, 16384);
  // Zen 4's 32 KiB L1: smaller K blocks, so more panels per M block.
  const auto zen4 = blocking_for({32 * 1024, 1024 * 1024}, 14, 32, 4, 384);
  EXPECT_EQ(zen4.kc, 160);
  EXPECT_EQ(zen4.k_thin, 256);
  EXPECT_EQ(zen4.mc_panels, 39);
  // Sapphire Rapids' 2 MiB L2: twice the M block.
  EXPECT_EQ(blocking_for({48 * 1024, 2048 * 1024}, 14, 32, 4, 384).mc_panels, 48);
  // Every size: the B micro-panel fits in L1, the A block in L2, K blocks within the
  // row stride and multiples of 16; tiny caches still give usable blocks.
  for (const auto& c : diffuse_test::other_caches)
    for (int mr : {6, 8, 14}) {
      const auto b = blocking_for(c, mr, 32, 4, 384);
      EXPECT_LE(b.kc * 32 * 4, index_t(c.l1d));
      EXPECT_LE(b.k_thin * mr * 4, index_t(c.l1d));
      EXPECT_LE(b.mc_panels * mr * b.kc * 4, index_t(c.l2));
      EXPECT_EQ(b.kc % 16, 0);
      EXPECT_EQ(b.k_thin % 16, 0);
      EXPECT_LE(b.k_thin, 384);
    }
  const auto tiny = blocking_for({1024, 1024}, 14, 32, 4, 384);
  EXPECT_EQ(tiny.kc, 16);
  EXPECT_EQ(tiny.k_thin, 16);
  EXPECT_EQ(tiny.mc_panels, 2);
}

TEST(Blocking, DetectedSizesAreInBounds) {
  const auto c = diffuse::kernels::detail::detect_cache_sizes();
  EXPECT_GE(c.l1d, 16u * 1024);
  EXPECT_LE(c.l1d, 256u * 1024);
  EXPECT_GE(c.l2, 128u * 1024);
  EXPECT_LE(c.l2, 64u * 1024 * 1024);
}

TYPED_TEST(Gemm, FusedBiasAndActivation) {
  using T = TypeParam;
  const Mnk fused[] = {{5, 7, 3}, {30, 70, 500}, {14, 32, 0}, {33, 129, 45}};
  for (int nt : diffuse_test::thread_counts) {
    diffuse::set_num_threads(nt);
    unsigned seed = 100;
    for (const auto& s : fused)
      for (auto act : {k::Activation::none, k::Activation::relu, k::Activation::silu}) {
        auto bias = random_vector<T>(std::size_t(s.n), seed++);
        check_gemm<T>(false, false, s, T(1), T(0), {bias.data(), act}, seed += 3);
        check_gemm<T>(true, true, s, T(0.7), T(1), {bias.data(), act}, seed += 3);
        check_gemm<T>(false, true, s, T(1), T(0.5), {nullptr, act}, seed += 3);
      }
  }
}

TYPED_TEST(Gemm, BatchedWithStrides) {
  using T = TypeParam;
  for (int nt : diffuse_test::thread_counts) {
    diffuse::set_num_threads(nt);
    for (index_t batch : {1, 3, 4}) {
      // Attention-like: scores = q^T k per item, B shared when stride_b == 0.
      const index_t m = 49, n = 49, kk = 64;
      for (index_t sb : {index_t(0), n * kk + 7}) {
        const index_t sa = m * kk + 5, sc = m * n + 11;
        auto a = random_vector<T>(std::size_t(batch * sa), 7);
        auto b = random_vector<T>(std::size_t(std::max<index_t>(batch * sb, n * kk)), 8);
        auto c = random_vector<T>(std::size_t(batch * sc), 9);
        auto want = c;
        auto bias = random_vector<T>(std::size_t(n), 10);
        const k::Epilogue<T> epi{bias.data(), k::Activation::silu};
        k::gemm_batched(false, true, m, n, kk, T(0.125), a.data(), kk, sa, b.data(), kk, sb,
                        T(0.5), c.data(), n, sc, batch, epi);
        for (index_t i = 0; i < batch; ++i)
          ref::gemm(false, true, m, n, kk, T(0.125), a.data() + i * sa, kk, b.data() + i * sb,
                    kk, T(0.5), want.data() + i * sc, n, epi);
        EXPECT_TRUE(all_near(c, want, tolerance<T>(double(kk), 2.0))) << "batch " << batch;
      }
    }
  }
}

TYPED_TEST(Gemm, InsideParallelRegionRunsSingleThreaded) {
  using T = TypeParam;
  diffuse::set_num_threads(2);
  const index_t m = 37, n = 45, kk = 23;
  auto a = random_vector<T>(std::size_t(2 * m * kk), 1);
  auto b = random_vector<T>(std::size_t(kk * n), 2);
  std::vector<T> c(std::size_t(2 * m * n)), want(std::size_t(2 * m * n));
  DIFFUSE_OMP(parallel for num_threads(2))
  for (int i = 0; i < 2; ++i)
    k::gemm(false, false, m, n, kk, T(1), a.data() + i * m * kk, kk, b.data(), n, T(0),
            c.data() + i * m * n, n);
  for (int i = 0; i < 2; ++i)
    ref::gemm(false, false, m, n, kk, T(1), a.data() + i * m * kk, kk, b.data(), n, T(0),
              want.data() + i * m * n, n);
  EXPECT_TRUE(all_near(c, want, tolerance<T>(double(kk))));
}

TYPED_TEST(Gemm, UpsampleNearestForwardBackward) {
  using T = TypeParam;
  struct S {
    index_t n, h, w, c;
  };
  for (int nt : diffuse_test::thread_counts) {
    diffuse::set_num_threads(nt);
    for (S s : {S{1, 1, 1, 1}, S{2, 3, 5, 7}, S{3, 7, 7, 64}, S{2, 14, 14, 32}}) {
      auto x = random_vector<T>(std::size_t(s.n * s.h * s.w * s.c), 3);
      std::vector<T> y(x.size() * 4), want(x.size() * 4);
      k::upsample2x_nearest_forward(x.data(), y.data(), s.n, s.h, s.w, s.c);
      ref::upsample2x_nearest_forward(x.data(), want.data(), s.n, s.h, s.w, s.c);
      EXPECT_TRUE(all_near(y, want, 0.0));
      auto dy = random_vector<T>(y.size(), 4);
      for (T beta : {T(0), T(1)}) {
        auto dx = random_vector<T>(x.size(), 5);
        auto dx_want = dx;
        k::upsample2x_nearest_backward(dy.data(), dx.data(), s.n, s.h, s.w, s.c, beta);
        ref::upsample2x_nearest_backward(dy.data(), dx_want.data(), s.n, s.h, s.w, s.c, beta);
        EXPECT_TRUE(all_near(dx, dx_want, tolerance<T>(5.0)));
      }
    }
  }
}

}  // namespace

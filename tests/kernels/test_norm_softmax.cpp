// Tests of kernels/group_norm.hpp and kernels/softmax.hpp: forward and backward against
// the naive twins in kernels/reference/ over odd pixel counts and channel counts, one and
// several groups, with and without (scale | shift) and SiLU, overwrite and accumulate, 1
// and 2 threads; the same bits on 1 and 2 threads; central finite differences of the
// backward kernels in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/core/parallel.hpp"
#include "diffuse/kernels/group_norm.hpp"
#include "diffuse/kernels/reference/group_norm.hpp"
#include "diffuse/kernels/reference/softmax.hpp"
#include "diffuse/kernels/softmax.hpp"
#include "support/finite_difference.hpp"
#include "support/threads.hpp"
#include "test_util.hpp"

namespace k = diffuse::kernels;
namespace ref = diffuse::kernels::reference;
using namespace diffuse_test;  // random_vector, tolerance, all_near, thread_counts
using diffuse::testing::with_threads;
using k::index_t;

namespace {

template <class T>
class GroupNorm : public ::testing::Test {};
template <class T>
class Softmax : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(GroupNorm, Types);
TYPED_TEST_SUITE(Softmax, Types);

constexpr double eps = 1e-5;

// The operands of one GroupNorm problem: C channels in G groups, n images of hw pixels.
template <class T, std::size_t C, std::size_t G>
struct GnProblem {
  std::size_t n, hw;
  std::vector<T> x, gamma, beta, ss, dy;
  GnProblem(std::size_t n_, std::size_t hw_, unsigned seed)
      : n(n_),
        hw(hw_),
        x(random_vector<T>(n * hw * C, seed, T(-1), T(3))),
        gamma(random_vector<T>(C, seed + 1)),
        beta(random_vector<T>(C, seed + 2)),
        ss(random_vector<T>(n * 2 * C, seed + 3, T(-0.5), T(0.5))),
        dy(random_vector<T>(n * hw * C, seed + 4)) {}
  std::size_t size() const { return n * hw * C; }
  const T* mod(bool adaptive) const { return adaptive ? ss.data() : nullptr; }
};

std::string describe(std::size_t c, std::size_t g, std::size_t n, std::size_t hw, bool silu, bool adaptive) {
  std::ostringstream o;
  o << "C" << c << " G" << g << " n" << n << " hw" << hw << (silu ? " silu" : "") << (adaptive ? " scale-shift" : "");
  return o.str();
}

// Fast against reference, forward then backward (beta_dx 0, 1, 0.5), on every combination
// of SiLU and (scale | shift), at 1 and 2 threads.
template <class T, std::size_t C, std::size_t G>
void check_group_norm(std::size_t n, std::size_t hw, unsigned seed) {
  const GnProblem<T, C, G> p(n, hw, seed);
  const double terms = double(hw * C / G);
  for (int nt : thread_counts) {
    diffuse::set_num_threads(nt);
    for (bool silu : {false, true})
      for (bool adaptive : {false, true}) {
        const std::string what = describe(C, G, n, hw, silu, adaptive) + " threads " + std::to_string(nt);
        const T* ss = p.mod(adaptive);
        std::vector<T> y(p.size()), y_want(p.size()), st(n * G * 2), st_want(n * G * 2);
        k::group_norm_forward<T, C, G>(p.x.data(), y.data(), st.data(), p.gamma.data(), p.beta.data(), ss, silu,
                                       n, hw, eps);
        ref::group_norm_forward<T, C, G>(p.x.data(), y_want.data(), st_want.data(), p.gamma.data(),
                                         p.beta.data(), ss, silu, n, hw, eps);
        EXPECT_TRUE(all_near(st, st_want, tolerance<T>(terms))) << "stats " << what;
        EXPECT_TRUE(all_near(y, y_want, tolerance<T>(terms, 4.0))) << "y " << what;
        for (T beta_dx : {T(0), T(1), T(0.5)}) {
          auto dx = random_vector<T>(p.size(), seed + 5);
          auto dgamma = random_vector<T>(C, seed + 6), dbeta = random_vector<T>(C, seed + 7);
          std::vector<T> dss(n * 2 * C), ws(p.size());
          auto dx_want = dx, dgamma_want = dgamma, dbeta_want = dbeta, dss_want = dss;
          T* ds = adaptive ? dss.data() : nullptr;
          T* ds_want = adaptive ? dss_want.data() : nullptr;
          // Both from the reference statistics, so that only the backward passes differ.
          k::group_norm_backward<T, C, G>(p.x.data(), st_want.data(), p.gamma.data(), p.beta.data(), ss, silu,
                                          p.dy.data(), dx.data(), beta_dx, dgamma.data(), dbeta.data(), ds,
                                          ws.data(), n, hw);
          ref::group_norm_backward<T, C, G>(p.x.data(), st_want.data(), p.gamma.data(), p.beta.data(), ss, silu,
                                            p.dy.data(), dx_want.data(), beta_dx, dgamma_want.data(),
                                            dbeta_want.data(), ds_want, n, hw);
          const std::string b = what + " beta_dx " + std::to_string(double(beta_dx));
          EXPECT_TRUE(all_near(dx, dx_want, tolerance<T>(terms, 8.0))) << "dx " << b;
          EXPECT_TRUE(all_near(dgamma, dgamma_want, tolerance<T>(double(n * hw), 8.0))) << "dgamma " << b;
          EXPECT_TRUE(all_near(dbeta, dbeta_want, tolerance<T>(double(n * hw), 8.0))) << "dbeta " << b;
          EXPECT_TRUE(all_near(dss, dss_want, tolerance<T>(double(hw), 8.0))) << "dss " << b;
        }
      }
  }
}

TYPED_TEST(GroupNorm, MatchesReference) {
  using T = TypeParam;
  check_group_norm<T, 6, 1>(3, 5, 1);      // one group
  check_group_norm<T, 8, 4>(2, 7, 10);     // 2 channels per group
  check_group_norm<T, 3, 3>(2, 11, 20);    // 1 channel per group
  check_group_norm<T, 20, 5>(1, 9, 30);    // channels not a multiple of the simd width
  check_group_norm<T, 32, 8>(3, 25, 40);   // edm-mnist-small-like, 5x5
  check_group_norm<T, 64, 1>(2, 13, 50);   // one group of several vectors
  check_group_norm<T, 32, 8>(8, 196, 60);  // 14x14, large enough to run on 2 threads
}

// Every output of forward and backward has the same bits on 1 and 2 threads.
TYPED_TEST(GroupNorm, SameBitsOnOneAndTwoThreads) {
  using T = TypeParam;
  constexpr std::size_t C = 32, G = 8;
  const std::size_t n = 8, hw = 196;
  const GnProblem<T, C, G> p(n, hw, 70);
  for (bool silu : {false, true})
    for (bool adaptive : {false, true}) {
      std::vector<T> out[2];
      for (int nt : {1, 2})
        with_threads(nt, [&] {
          std::vector<T> y(p.size()), st(n * G * 2), dx(p.size(), T(0.25)), dg(C), db(C), dss(n * 2 * C),
              ws(p.size());
          k::group_norm_forward<T, C, G>(p.x.data(), y.data(), st.data(), p.gamma.data(), p.beta.data(),
                                         p.mod(adaptive), silu, n, hw, eps);
          k::group_norm_backward<T, C, G>(p.x.data(), st.data(), p.gamma.data(), p.beta.data(), p.mod(adaptive),
                                          silu, p.dy.data(), dx.data(), T(1), dg.data(), db.data(), dss.data(),
                                          ws.data(), n, hw);
          for (const auto* v : {&y, &st, &dx, &dg, &db, &dss}) out[nt - 1].insert(out[nt - 1].end(), v->begin(), v->end());
        });
      EXPECT_EQ(out[0], out[1]) << describe(C, G, n, hw, silu, adaptive);
    }
}

// loss = sum(y * w): the gradients of backward against central differences of forward.
TEST(GroupNormGradCheck, CentralDifferences) {
  constexpr std::size_t C = 6, G = 2;
  const std::size_t n = 2, hw = 5;
  GnProblem<double, C, G> p(n, hw, 80);
  const auto w = random_vector<double>(p.size(), 85);
  for (bool silu : {false, true})
    for (bool adaptive : {false, true}) {
      std::vector<double> y(p.size()), st(n * G * 2);
      auto loss = [&] {
        k::group_norm_forward<double, C, G>(p.x.data(), y.data(), st.data(), p.gamma.data(),
                                            p.beta.data(), p.mod(adaptive), silu, n, hw, eps);
        double l = 0;
        for (std::size_t i = 0; i < y.size(); ++i) l += y[i] * w[i];
        return l;
      };
      loss();
      std::vector<double> dx(p.size()), dg(C), db(C), dss(n * 2 * C), ws(p.size());
      k::group_norm_backward<double, C, G>(p.x.data(), st.data(), p.gamma.data(), p.beta.data(), p.mod(adaptive),
                                           silu, w.data(), dx.data(), 0.0, dg.data(), db.data(), dss.data(),
                                           ws.data(), n, hw);
      const std::string what = describe(C, G, n, hw, silu, adaptive);
      auto check = [&](std::vector<double>& v, const std::vector<double>& grad, const char* name) {
        for (std::size_t i = 0; i < v.size(); ++i) {
          const double fd = diffuse::testing::central_difference(v[i], loss, 1e-6);
          EXPECT_NEAR(grad[i], fd, 1e-6 * std::max(1.0, std::abs(fd))) << name << "[" << i << "] " << what;
        }
      };
      check(p.x, dx, "dx");
      check(p.gamma, dg, "dgamma");
      check(p.beta, db, "dbeta");
      if (adaptive) check(p.ss, dss, "dss");
    }
}

struct SoftmaxShape {
  index_t rows, len, ld;
};
//                               rows len  ld
const SoftmaxShape softmax_shapes[] = {{1, 1, 1},     {7, 5, 5},     {3, 13, 16},  {5, 33, 40},
                                       {64, 49, 49},  {2, 17, 17},   {400, 196, 196}};

std::string describe(const SoftmaxShape& s) {
  return "rows " + std::to_string(s.rows) + " len " + std::to_string(s.len) + " ld " + std::to_string(s.ld);
}

TYPED_TEST(Softmax, MatchesReference) {
  using T = TypeParam;
  for (int nt : thread_counts) {
    diffuse::set_num_threads(nt);
    unsigned seed = 100;
    for (const auto& s : softmax_shapes)
      for (T range : {T(4), T(60)}) {  // 60: exp would overflow float without the max
        const std::size_t size = std::size_t(s.rows * s.ld);
        const auto x = random_vector<T>(size, seed++, -range, range);
        auto y = random_vector<T>(size, seed++), y_want = y;  // the padding must stay
        k::softmax_rows(x.data(), y.data(), s.rows, s.len, s.ld);
        ref::softmax_rows(x.data(), y_want.data(), s.rows, s.len, s.ld);
        EXPECT_TRUE(all_near(y, y_want, tolerance<T>(double(s.len)))) << describe(s) << " threads " << nt;
        auto in_place = x;
        k::softmax_rows(in_place.data(), in_place.data(), s.rows, s.len, s.ld);
        for (index_t r = 0; r < s.rows; ++r)
          for (index_t j = 0; j < s.len; ++j) ASSERT_EQ(in_place[r * s.ld + j], y[r * s.ld + j]) << describe(s);

        const auto dy = random_vector<T>(size, seed++);
        auto dx = random_vector<T>(size, seed++), dx_want = dx;
        k::softmax_rows_backward(y.data(), dy.data(), dx.data(), s.rows, s.len, s.ld);
        ref::softmax_rows_backward(y.data(), dy.data(), dx_want.data(), s.rows, s.len, s.ld);
        EXPECT_TRUE(all_near(dx, dx_want, tolerance<T>(double(s.len), 2.0))) << describe(s) << " threads " << nt;
        auto d_in_place = dy;
        k::softmax_rows_backward(y.data(), d_in_place.data(), d_in_place.data(), s.rows, s.len, s.ld);
        for (index_t r = 0; r < s.rows; ++r)
          for (index_t j = 0; j < s.len; ++j) ASSERT_EQ(d_in_place[r * s.ld + j], dx[r * s.ld + j]) << describe(s);
      }
  }
}

TYPED_TEST(Softmax, SameBitsOnOneAndTwoThreads) {
  using T = TypeParam;
  const index_t rows = 400, len = 196;
  const auto x = random_vector<T>(std::size_t(rows * len), 200, T(-4), T(4));
  const auto dy = random_vector<T>(x.size(), 201);
  std::vector<T> out[2];
  for (int nt : {1, 2})
    with_threads(nt, [&] {
      std::vector<T> y(x.size()), dx(x.size());
      k::softmax_rows(x.data(), y.data(), rows, len, len);
      k::softmax_rows_backward(y.data(), dy.data(), dx.data(), rows, len, len);
      out[nt - 1] = y;
      out[nt - 1].insert(out[nt - 1].end(), dx.begin(), dx.end());
    });
  EXPECT_EQ(out[0], out[1]);
}

// loss = sum(softmax(x) * w): backward against central differences of forward.
TEST(SoftmaxGradCheck, CentralDifferences) {
  const index_t rows = 3, len = 7, ld = 9;
  auto x = random_vector<double>(std::size_t(rows * ld), 300, -3.0, 3.0);
  const auto w = random_vector<double>(x.size(), 301);
  std::vector<double> y(x.size()), dx(x.size());
  auto loss = [&] {
    k::softmax_rows(x.data(), y.data(), rows, len, ld);
    double l = 0;
    for (index_t r = 0; r < rows; ++r)
      for (index_t j = 0; j < len; ++j) l += y[r * ld + j] * w[r * ld + j];
    return l;
  };
  loss();
  k::softmax_rows_backward(y.data(), w.data(), dx.data(), rows, len, ld);
  for (index_t r = 0; r < rows; ++r)
    for (index_t j = 0; j < len; ++j) {
      const double fd = diffuse::testing::central_difference(x[r * ld + j], loss, 1e-6);
      EXPECT_NEAR(dx[r * ld + j], fd, 1e-8) << "dx[" << r << "][" << j << "]";
    }
}

}  // namespace

// The run-time-sized kernels reject a group count that does not divide the channels (the
// <T, C, G> overloads reject it at compile time), naming both counts, and backward rejects
// images of one pixel (its per-image scratch holds 2C sums).
TEST(GroupNorm, GroupsMustDivideChannels) {
  std::vector<float> x(2 * 6, 1.0f), y(x.size()), st(2 * 4 * 2), gamma(6, 1.0f), beta(6, 0.0f);
  for (std::size_t groups : {std::size_t{0}, std::size_t{4}}) {
    try {
      k::group_norm_forward<float>(x.data(), y.data(), st.data(), gamma.data(), beta.data(), nullptr, false, 1, 2, 6,
                                   groups, 1e-5);
      ADD_FAILURE() << "no error for " << groups << " groups";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("6 channels"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::to_string(groups) + " groups"), std::string::npos) << e.what();
    }
    std::vector<float> dx(x.size()), dg(6), db(6), ws(x.size());
    EXPECT_THROW(k::group_norm_backward<float>(x.data(), st.data(), gamma.data(), beta.data(), nullptr, false,
                                               x.data(), dx.data(), 0.0f, dg.data(), db.data(), nullptr, ws.data(), 1,
                                               2, 6, groups),
                 std::invalid_argument);
  }
  std::vector<float> dx(x.size()), dg(6), db(6), ws(x.size());
  EXPECT_THROW(k::group_norm_backward<float>(x.data(), st.data(), gamma.data(), beta.data(), nullptr, false, x.data(),
                                             dx.data(), 0.0f, dg.data(), db.data(), nullptr, ws.data(), 2, 1, 6, 3),
               std::invalid_argument);
}

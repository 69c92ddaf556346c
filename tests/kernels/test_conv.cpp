// Tests of kernels/conv2d.hpp: forward, backward-input and backward-weight against the
// naive twins in kernels/reference/conv2d.hpp over many shapes, strides, paddings and
// kernel sizes, overwrite and accumulate, 1 and 2 threads; and central finite
// differences of the backward kernels in double.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "diffuse/core/parallel.hpp"
#include "diffuse/kernels/conv2d.hpp"
#include "diffuse/kernels/reference/conv2d.hpp"
#include "support/finite_difference.hpp"
#include "test_util.hpp"

namespace k = diffuse::kernels;
namespace ref = diffuse::kernels::reference;
using diffuse_test::all_near;
using diffuse_test::random_vector;
using diffuse_test::tolerance;
using k::Conv2dShape;
using k::index_t;

namespace {

template <class T>
class Conv : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Conv, Types);

//                n   h   w  cin cout k  s  p
const Conv2dShape shapes[] = {
    {1, 1, 1, 1, 1, 1, 1, 0},     {1, 5, 5, 1, 1, 3, 1, 1},    {2, 7, 6, 3, 5, 3, 1, 1},
    {1, 6, 5, 3, 4, 3, 1, 0},     {2, 8, 8, 4, 8, 3, 2, 1},    {1, 9, 7, 5, 3, 3, 2, 0},
    {3, 6, 6, 8, 1, 1, 1, 0},     {2, 5, 5, 6, 7, 1, 2, 0},    {1, 4, 4, 3, 2, 1, 1, 1},
    {1, 11, 11, 3, 4, 5, 1, 2},   {1, 9, 8, 2, 3, 5, 2, 2},    {2, 14, 14, 32, 32, 3, 1, 1},
    {1, 7, 7, 64, 64, 3, 1, 1},   {2, 8, 8, 16, 32, 3, 2, 1},  {2, 28, 28, 1, 32, 3, 1, 1},
    {1, 28, 28, 32, 1, 3, 1, 1},  {1, 7, 7, 96, 64, 1, 1, 0},  {1, 13, 13, 17, 19, 3, 1, 1},
    {1, 14, 14, 32, 32, 3, 2, 1},  {5, 16, 16, 3, 4, 3, 2, 1},  {1, 5, 5, 160, 32, 3, 1, 1},
    {1, 4, 4, 400, 32, 3, 1, 1},  {1, 9, 9, 20, 3, 3, 2, 1},  {2, 6, 6, 35, 2, 3, 1, 1},
};

std::string describe(const Conv2dShape& s) {
  std::ostringstream o;
  o << "n" << s.n << " h" << s.h << " w" << s.w << " cin" << s.cin << " cout" << s.cout << " k"
    << s.k << " s" << s.stride << " p" << s.pad;
  return o.str();
}

template <class T>
void check_forward(int nt) {
  diffuse::set_num_threads(nt);
  unsigned seed = 1;
  for (const auto& s : shapes) {
    auto x = random_vector<T>(std::size_t(s.n * s.h * s.w * s.cin), seed++);
    auto w = random_vector<T>(std::size_t(s.kk() * s.cout), seed++);
    auto bias = random_vector<T>(std::size_t(s.cout), seed++);
    for (T beta : {T(0), T(1)})
      for (bool with_bias : {false, true}) {
        auto y = random_vector<T>(std::size_t(s.pixels() * s.cout), seed++);
        auto want = y;
        const T* b = with_bias ? bias.data() : nullptr;
        k::conv2d_forward(s, x.data(), w.data(), b, y.data(), beta);
        ref::conv2d_forward(s, x.data(), w.data(), b, want.data(), beta);
        EXPECT_TRUE(all_near(y, want, tolerance<T>(double(s.kk()), 2.0)))
            << describe(s) << " beta " << beta << " threads " << nt;
      }
  }
}

template <class T>
void check_backward_input(int nt) {
  diffuse::set_num_threads(nt);
  unsigned seed = 1000;
  for (const auto& s : shapes) {
    auto dy = random_vector<T>(std::size_t(s.pixels() * s.cout), seed++);
    auto w = random_vector<T>(std::size_t(s.kk() * s.cout), seed++);
    for (T beta : {T(0), T(1)}) {
      auto dx = random_vector<T>(std::size_t(s.n * s.h * s.w * s.cin), seed++);
      auto want = dx;
      k::conv2d_backward_input(s, dy.data(), w.data(), dx.data(), beta);
      ref::conv2d_backward_input(s, dy.data(), w.data(), want.data(), beta);
      EXPECT_TRUE(all_near(dx, want, tolerance<T>(double(s.k * s.k * s.cout), 2.0)))
          << describe(s) << " beta " << beta << " threads " << nt;
    }
  }
}

template <class T>
void check_backward_weight(int nt) {
  diffuse::set_num_threads(nt);
  unsigned seed = 2000;
  for (const auto& s : shapes) {
    auto x = random_vector<T>(std::size_t(s.n * s.h * s.w * s.cin), seed++);
    auto dy = random_vector<T>(std::size_t(s.pixels() * s.cout), seed++);
    for (T beta : {T(0), T(1)})
      for (bool with_bias : {false, true}) {
        auto dw = random_vector<T>(std::size_t(s.kk() * s.cout), seed++);
        auto db = random_vector<T>(std::size_t(s.cout), seed++);
        auto dw_want = dw;
        auto db_want = db;
        k::conv2d_backward_weight(s, x.data(), dy.data(), dw.data(),
                                  with_bias ? db.data() : nullptr, beta);
        ref::conv2d_backward_weight(s, x.data(), dy.data(), dw_want.data(),
                                    with_bias ? db_want.data() : nullptr, beta);
        const double terms = double(s.pixels());
        EXPECT_TRUE(all_near(dw, dw_want, tolerance<T>(terms, 2.0)))
            << describe(s) << " beta " << beta << " threads " << nt;
        EXPECT_TRUE(all_near(db, db_want, tolerance<T>(terms, 2.0)))
            << describe(s) << " beta " << beta << " threads " << nt;
      }
  }
}

TYPED_TEST(Conv, ForwardMatchesReference) {
  for (int nt : diffuse_test::thread_counts) check_forward<TypeParam>(nt);
}

TYPED_TEST(Conv, BackwardInputMatchesReference) {
  for (int nt : diffuse_test::thread_counts) check_backward_input<TypeParam>(nt);
}

TYPED_TEST(Conv, BackwardWeightMatchesReference) {
  for (int nt : diffuse_test::thread_counts) check_backward_weight<TypeParam>(nt);
}

// The K and M blocks come from the CPU's caches: the results must not depend on them.
TYPED_TEST(Conv, MatchesReferenceWithOtherCpusBlocking) {
  for (const auto& caches : diffuse_test::other_caches) {
    const diffuse_test::BlockFor scope(caches);
    check_forward<TypeParam>(2);
    check_backward_input<TypeParam>(2);
    check_backward_weight<TypeParam>(2);
  }
}

// loss = sum(y * g) with y = conv(x, w) + b: the gradients are backward_input(g),
// backward_weight(x, g); compare with central differences in double.
TEST(ConvGradCheck, CentralDifferences) {
  const Conv2dShape cases[] = {{2, 5, 6, 3, 4, 3, 1, 1},
                               {1, 7, 7, 2, 3, 3, 2, 1},
                               {2, 4, 4, 3, 2, 1, 1, 0},
                               {1, 6, 6, 2, 2, 5, 2, 2}};
  for (int nt : diffuse_test::thread_counts) {
    diffuse::set_num_threads(nt);
    for (const auto& s : cases) {
      auto x = random_vector<double>(std::size_t(s.n * s.h * s.w * s.cin), 11);
      auto w = random_vector<double>(std::size_t(s.kk() * s.cout), 12);
      auto b = random_vector<double>(std::size_t(s.cout), 13);
      auto g = random_vector<double>(std::size_t(s.pixels() * s.cout), 14);
      std::vector<double> y(g.size());
      auto loss = [&] {
        k::conv2d_forward(s, x.data(), w.data(), b.data(), y.data());
        double l = 0;
        for (std::size_t i = 0; i < y.size(); ++i) l += y[i] * g[i];
        return l;
      };
      std::vector<double> dx(x.size()), dw(w.size()), db(b.size());
      k::conv2d_backward_input(s, g.data(), w.data(), dx.data());
      k::conv2d_backward_weight(s, x.data(), g.data(), dw.data(), db.data());
      const double h = 1e-6;
      auto check = [&](std::vector<double>& v, const std::vector<double>& grad, const char* what) {
        for (std::size_t i = 0; i < v.size(); i += 1 + v.size() / 23) {
          const double fd = diffuse::testing::central_difference(v[i], loss, h);
          EXPECT_NEAR(grad[i], fd, 1e-6 * std::max(1.0, std::abs(fd)))
              << what << "[" << i << "] " << describe(s);
        }
      };
      check(x, dx, "dx");
      check(w, dw, "dw");
      check(b, db, "db");
    }
  }
}

}  // namespace

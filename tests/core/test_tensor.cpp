// Tensors and views: storage, indexing, views, reshapes, batch checks.
#include <cstdint>
#include <cstring>

#include "test_support.hpp"

namespace {

using namespace diffuse;

TEST(Tensor, StorageIsAlignedAndZeroed) {
  Tensor<float, Shape<dyn, 5, 7, 3>> x(3);
  EXPECT_EQ(x.size(), 3u * 5 * 7 * 3);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(x.data()) % 64, 0u);
  for (float v : x) EXPECT_EQ(v, 0.f);
  Tensor<double, Shape<2, 3>> y;
  EXPECT_EQ(y.size(), 6u);
  EXPECT_EQ(y.batch(), 2u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(y.data()) % 64, 0u);
}

TEST(Tensor, IndexIsRowMajor) {
  Tensor<float, Shape<dyn, 2, 3, 4>> x(2);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i);
  EXPECT_EQ(x(0, 0, 0, 0), 0.f);
  EXPECT_EQ(x(0, 0, 0, 3), 3.f);
  EXPECT_EQ(x(0, 0, 2, 0), 8.f);
  EXPECT_EQ(x(0, 1, 0, 0), 12.f);
  EXPECT_EQ(x(1, 1, 2, 3), 47.f);
  x(1, 0, 1, 2) = -1.f;
  EXPECT_EQ(x.data()[24 + 4 + 2], -1.f);
}

#if DIFFUSE_DEBUG_CHECKS
TEST(Tensor, IndexOutOfRangeThrowsInDebug) {
  Tensor<float, Shape<dyn, 2, 3>> x(2);
  EXPECT_THROW(x(2, 0, 0), std::out_of_range);
  EXPECT_THROW(x(0, 0, 3), std::out_of_range);
}
#endif

TEST(Tensor, CopyIsDeepMoveSteals) {
  Tensor<float, Shape<dyn, 4>> a(3);
  a = 2.f;
  Tensor<float, Shape<dyn, 4>> b = a;
  b(0, 0) = 5.f;
  EXPECT_EQ(a(0, 0), 2.f);
  const float* p = b.data();
  Tensor<float, Shape<dyn, 4>> c = std::move(b);
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(c(0, 0), 5.f);
}

TEST(Tensor, AssignResizesDynamicBatch) {
  Tensor<float, Shape<dyn, 4>> a(3), b;
  a = 1.f;
  EXPECT_EQ(b.batch(), 0u);
  b = a * 2.f;
  EXPECT_EQ(b.batch(), 3u);
  EXPECT_EQ(b(2, 3), 2.f);
  Tensor<float, Shape<dyn, 4>> c(a + a);
  EXPECT_EQ(c.batch(), 3u);
  EXPECT_EQ(c(1, 1), 2.f);
}

TEST(Tensor, BatchMismatchThrows) {
  Tensor<float, Shape<dyn, 4>> a(3), b(2);
  EXPECT_THROW((void)(a + b), ShapeError);
  auto v = b.view();
  EXPECT_THROW(v = a, ShapeError);
  Tensor<float, Shape<3, 4>> s;
  EXPECT_NO_THROW(s = a);
  EXPECT_THROW(s = b, ShapeError);
}

TEST(TensorView, ItemsIsASubrangeOfTheBatch) {
  Tensor<float, Shape<dyn, 2, 2>> x(5);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i);
  auto v = x.items(1, 3);
  static_assert(std::is_same_v<decltype(v), TensorView<float, Shape<dyn, 2, 2>>>);
  EXPECT_EQ(v.batch(), 3u);
  EXPECT_EQ(v.data(), x.data() + 4);
  EXPECT_EQ(v(0, 0, 0), 4.f);
  v = 0.f;  // writes through
  EXPECT_EQ(x(0, 1, 1), 3.f);
  EXPECT_EQ(x(1, 0, 0), 0.f);
  EXPECT_EQ(x(3, 1, 1), 0.f);
  EXPECT_EQ(x(4, 0, 0), 16.f);
  EXPECT_THROW((void)x.items(4, 2), std::out_of_range);
}

TEST(TensorView, ItemDropsTheLeadingAxis) {
  Tensor<float, Shape<dyn, 2, 3>> x(2);
  x(1, 1, 2) = 7.f;
  auto one = x.item(1);
  static_assert(std::is_same_v<decltype(one), TensorView<float, Shape<2, 3>>>);
  EXPECT_EQ(one(1, 2), 7.f);
  const auto& cx = x;
  auto cone = cx.item(1);
  static_assert(std::is_same_v<decltype(cone), TensorView<const float, Shape<2, 3>>>);
  EXPECT_EQ(cone(1, 2), 7.f);
}

TEST(TensorView, ReshapeSharesStorage) {
  Tensor<float, Shape<dyn, 7, 7, 64>> h(2);
  auto groups = h.reshape<Shape<dyn, 49, 16, 4>>();
  EXPECT_EQ(groups.data(), h.data());
  EXPECT_EQ(groups.batch(), 2u);
  groups(1, 48, 15, 3) = 1.f;
  EXPECT_EQ(h(1, 6, 6, 63), 1.f);
  Tensor<float, Shape<4, 6>> s;
  auto t = s.reshape<Shape<2, 3, 4>>();
  t(1, 2, 3) = 3.f;
  EXPECT_EQ(s(3, 5), 3.f);
}

TEST(TensorView, StaticBatchViewConvertsToDynamic) {
  Tensor<float, Shape<3, 4>> s;
  s = 1.f;
  TensorView<const float, Shape<dyn, 4>> v = s.view();
  EXPECT_EQ(v.batch(), 3u);
  EXPECT_EQ(sum(v), 12.f);
}

TEST(Version, ReportsInstructionSet) {
  EXPECT_FALSE(instruction_set().empty());
  EXPECT_STREQ(version, "0.1.0");
}

}  // namespace

namespace {

using namespace diffuse;

TEST(Tensor, AssignmentThatResizesMayReadItsOwnStorage) {
  Tensor<float, Shape<dyn, 4>> x(4);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i);
  x = x.items(1, 2) * 2.f;  // the new batch (2) is computed from the old storage
  ASSERT_EQ(x.batch(), 2u);
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x.data()[i], 2.f * static_cast<float>(i + 4));
}

TEST(Tensor, MovedFromTensorsStayUsable) {
  Tensor<float, Shape<dyn, 4>> a(4);
  Tensor<float, Shape<dyn, 4>> b = std::move(a);
  EXPECT_EQ(a.batch(), 0u);  // NOLINT(bugprone-use-after-move): the state is specified
  EXPECT_EQ(a.size(), 0u);
  a = 1.f;  // nothing to write
  a = b + 1.f;
  EXPECT_EQ(a.batch(), 4u);
  Tensor<float, Shape<2, 3>> s;
  s = 5.f;
  Tensor<float, Shape<2, 3>> t = std::move(s);
  EXPECT_EQ(t(1, 2), 5.f);
  s = 2.f;  // a static shape keeps (zeroed) storage
  EXPECT_EQ(s(1, 2), 2.f);
}

TEST(TensorView, SwapRebindsInsteadOfCopying) {
  Tensor<float, Shape<3>> a, b;
  a = 1.f;
  b = 2.f;
  auto va = a.view(), vb = b.view();
  using std::swap;
  swap(va, vb);
  EXPECT_EQ(va.data(), b.data());
  EXPECT_EQ(a(0), 1.f);
  EXPECT_EQ(b(0), 2.f);
}

TEST(ExprLazy, PerChannelVectorsAreReadAtAssignment) {
  Tensor<float, Shape<dyn, 2, 4>> x(3);
  Tensor<float, Shape<4>> b4;
  Tensor<float, Shape<3>> b3;
  Tensor<float, Shape<dyn, 2, 3>> y(3);
  auto e4 = x + per_channel(b4);  // C divides the vector width
  auto e3 = y + per_channel(b3);  // it does not
  b4 = 1.f;
  b3 = 1.f;
  Tensor<float, Shape<dyn, 2, 4>> r4(e4);
  Tensor<float, Shape<dyn, 2, 3>> r3(e3);
  EXPECT_EQ(sum(r4), static_cast<float>(r4.size()));
  EXPECT_EQ(sum(r3), static_cast<float>(r3.size()));
}

}  // namespace

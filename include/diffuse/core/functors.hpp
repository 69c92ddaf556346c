// The element-wise operations of expressions, as small function objects.
//
// Each has a scalar operator() (used for the tail of a loop and in reference code)
// and a simd() member for xsimd batches. Both must compute the same function; they
// may differ in the last bits only where xsimd's math differs from <cmath>.
#pragma once

#include <cmath>

#include "diffuse/core/simd.hpp"

/// The element-wise functions of expressions: function objects with a scalar
/// operator() and an xsimd simd() member that compute the same function.
namespace diffuse::fn {

// ---- unary ---------------------------------------------------------------------
/// -x.
struct Neg {
  template <class T> T operator()(T x) const { return -x; }  ///< One value.
  template <class B> B simd(const B& x) const { return -x; }  ///< SIMD lanes.
};
/// e^x.
struct Exp {
  template <class T> T operator()(T x) const { return std::exp(x); }  ///< One value.
  template <class B> B simd(const B& x) const { return xsimd::exp(x); }  ///< SIMD lanes.
};
/// Natural logarithm.
struct Log {
  template <class T> T operator()(T x) const { return std::log(x); }  ///< One value.
  template <class B> B simd(const B& x) const { return xsimd::log(x); }  ///< SIMD lanes.
};
/// Square root.
struct Sqrt {
  template <class T> T operator()(T x) const { return std::sqrt(x); }  ///< One value.
  template <class B> B simd(const B& x) const { return xsimd::sqrt(x); }  ///< SIMD lanes.
};
/// 1 / sqrt(x), exact (not the hardware approximation).
struct Rsqrt {
  template <class T> T operator()(T x) const { return T(1) / std::sqrt(x); }  ///< One value.
  template <class B> B simd(const B& x) const { return B(1) / xsimd::sqrt(x); }  ///< SIMD lanes.
};
/// Hyperbolic tangent.
struct Tanh {
  template <class T> T operator()(T x) const { return std::tanh(x); }  ///< One value.
  template <class B> B simd(const B& x) const { return xsimd::tanh(x); }  ///< SIMD lanes.
};
/// 1 / (1 + e^-x).
struct Sigmoid {
  template <class T> T operator()(T x) const { return T(1) / (T(1) + std::exp(-x)); }  ///< One value.
  template <class B> B simd(const B& x) const { return B(1) / (B(1) + xsimd::exp(-x)); }  ///< SIMD lanes.
};
/// x sigmoid(x) (SiLU, swish).
struct Silu {
  template <class T> T operator()(T x) const { return x / (T(1) + std::exp(-x)); }  ///< One value.
  template <class B> B simd(const B& x) const { return x / (B(1) + xsimd::exp(-x)); }  ///< SIMD lanes.
};

/// g * silu'(x), the gradient through SiLU at x (binary: x, then the incoming gradient g).
struct SiluBackward {
  /// One value.
  template <class T> T operator()(T x, T g) const {
    const T s = T(1) / (T(1) + std::exp(-x));
    return g * s * (T(1) + x * (T(1) - s));
  }
  /// SIMD lanes.
  template <class B> B simd(const B& x, const B& g) const {
    const B s = B(1) / (B(1) + xsimd::exp(-x));
    return g * s * (B(1) + x * (B(1) - s));
  }
};

/// max(x, 0).
struct Relu {
  template <class T> T operator()(T x) const { return x > T(0) ? x : T(0); }  ///< One value.
  template <class B> B simd(const B& x) const { return xsimd::max(x, B(0)); }  ///< SIMD lanes.
};
/// x * x.
struct Square {
  template <class T> T operator()(T x) const { return x * x; }  ///< One value.
  template <class B> B simd(const B& x) const { return x * x; }  ///< SIMD lanes.
};
/// |x|.
struct Abs {
  template <class T> T operator()(T x) const { return std::abs(x); }  ///< One value.
  template <class B> B simd(const B& x) const { return xsimd::abs(x); }  ///< SIMD lanes.
};

// ---- binary --------------------------------------------------------------------
/// a + b.
struct Add {
  template <class T> T operator()(T a, T b) const { return a + b; }  ///< One value.
  template <class B> B simd(const B& a, const B& b) const { return a + b; }  ///< SIMD lanes.
};
/// a - b.
struct Sub {
  template <class T> T operator()(T a, T b) const { return a - b; }  ///< One value.
  template <class B> B simd(const B& a, const B& b) const { return a - b; }  ///< SIMD lanes.
};
/// a * b.
struct Mul {
  template <class T> T operator()(T a, T b) const { return a * b; }  ///< One value.
  template <class B> B simd(const B& a, const B& b) const { return a * b; }  ///< SIMD lanes.
};
/// a / b.
struct Div {
  template <class T> T operator()(T a, T b) const { return a / b; }  ///< One value.
  template <class B> B simd(const B& a, const B& b) const { return a / b; }  ///< SIMD lanes.
};
/// The smaller of a and b (a when equal).
struct Minimum {
  template <class T> T operator()(T a, T b) const { return b < a ? b : a; }  ///< One value.
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(b < a, b, a); }  ///< SIMD lanes.
};
/// The larger of a and b (a when equal).
struct Maximum {
  template <class T> T operator()(T a, T b) const { return a < b ? b : a; }  ///< One value.
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(a < b, b, a); }  ///< SIMD lanes.
};

// Comparisons give 1 where true and 0 where false, in the operands' element type, so
// that they compose with arithmetic and with where().
/// 1 where a < b, else 0.
struct Less {
  template <class T> T operator()(T a, T b) const { return a < b ? T(1) : T(0); }  ///< One value.
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(a < b, B(1), B(0)); }  ///< SIMD lanes.
};
/// 1 where a <= b, else 0.
struct LessEqual {
  template <class T> T operator()(T a, T b) const { return a <= b ? T(1) : T(0); }  ///< One value.
  /// SIMD lanes.
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(a <= b, B(1), B(0)); }
};
/// 1 where a > b, else 0.
struct Greater {
  template <class T> T operator()(T a, T b) const { return a > b ? T(1) : T(0); }  ///< One value.
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(a > b, B(1), B(0)); }  ///< SIMD lanes.
};
/// 1 where a >= b, else 0.
struct GreaterEqual {
  template <class T> T operator()(T a, T b) const { return a >= b ? T(1) : T(0); }  ///< One value.
  /// SIMD lanes.
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(a >= b, B(1), B(0)); }
};

// ---- ternary -------------------------------------------------------------------
/// a where c is non-zero, b elsewhere.
struct Where {
  template <class T> T operator()(T c, T a, T b) const { return c != T(0) ? a : b; }  ///< One value.
  /// SIMD lanes.
  template <class B> B simd(const B& c, const B& a, const B& b) const {
    return xsimd::select(c != B(0), a, b);
  }
};
/// x limited to [lo, hi]: min(max(x, lo), hi).
struct Clamp {
  /// One value.
  template <class T> T operator()(T x, T lo, T hi) const {
    T y = x < lo ? lo : x;
    return hi < y ? hi : y;
  }
  /// SIMD lanes.
  template <class B> B simd(const B& x, const B& lo, const B& hi) const {
    B y = xsimd::select(x < lo, lo, x);
    return xsimd::select(hi < y, hi, y);
  }
};

}  // namespace diffuse::fn

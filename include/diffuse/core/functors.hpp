// The element-wise operations of expressions, as small function objects.
//
// Each has a scalar operator() (used for the tail of a loop and in reference code)
// and a simd() member for xsimd batches. Both must compute the same function; they
// may differ in the last bits only where xsimd's math differs from <cmath>.
#pragma once

#include <cmath>

#include "diffuse/core/simd.hpp"

namespace diffuse::fn {

// ---- unary ---------------------------------------------------------------------
struct Neg {
  template <class T> T operator()(T x) const { return -x; }
  template <class B> B simd(const B& x) const { return -x; }
};
struct Exp {
  template <class T> T operator()(T x) const { return std::exp(x); }
  template <class B> B simd(const B& x) const { return xsimd::exp(x); }
};
struct Log {
  template <class T> T operator()(T x) const { return std::log(x); }
  template <class B> B simd(const B& x) const { return xsimd::log(x); }
};
struct Sqrt {
  template <class T> T operator()(T x) const { return std::sqrt(x); }
  template <class B> B simd(const B& x) const { return xsimd::sqrt(x); }
};
struct Rsqrt {  // exact 1/sqrt, not the hardware approximation
  template <class T> T operator()(T x) const { return T(1) / std::sqrt(x); }
  template <class B> B simd(const B& x) const { return B(1) / xsimd::sqrt(x); }
};
struct Tanh {
  template <class T> T operator()(T x) const { return std::tanh(x); }
  template <class B> B simd(const B& x) const { return xsimd::tanh(x); }
};
struct Sigmoid {
  template <class T> T operator()(T x) const { return T(1) / (T(1) + std::exp(-x)); }
  template <class B> B simd(const B& x) const { return B(1) / (B(1) + xsimd::exp(-x)); }
};
struct Silu {  // x * sigmoid(x)
  template <class T> T operator()(T x) const { return x / (T(1) + std::exp(-x)); }
  template <class B> B simd(const B& x) const { return x / (B(1) + xsimd::exp(-x)); }
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
struct Relu {
  template <class T> T operator()(T x) const { return x > T(0) ? x : T(0); }
  template <class B> B simd(const B& x) const { return xsimd::max(x, B(0)); }
};
struct Square {
  template <class T> T operator()(T x) const { return x * x; }
  template <class B> B simd(const B& x) const { return x * x; }
};
struct Abs {
  template <class T> T operator()(T x) const { return std::abs(x); }
  template <class B> B simd(const B& x) const { return xsimd::abs(x); }
};

// ---- binary --------------------------------------------------------------------
struct Add {
  template <class T> T operator()(T a, T b) const { return a + b; }
  template <class B> B simd(const B& a, const B& b) const { return a + b; }
};
struct Sub {
  template <class T> T operator()(T a, T b) const { return a - b; }
  template <class B> B simd(const B& a, const B& b) const { return a - b; }
};
struct Mul {
  template <class T> T operator()(T a, T b) const { return a * b; }
  template <class B> B simd(const B& a, const B& b) const { return a * b; }
};
struct Div {
  template <class T> T operator()(T a, T b) const { return a / b; }
  template <class B> B simd(const B& a, const B& b) const { return a / b; }
};
struct Minimum {
  template <class T> T operator()(T a, T b) const { return b < a ? b : a; }
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(b < a, b, a); }
};
struct Maximum {
  template <class T> T operator()(T a, T b) const { return a < b ? b : a; }
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(a < b, b, a); }
};

// Comparisons give 1 where true and 0 where false, in the operands' element type, so
// that they compose with arithmetic and with where().
struct Less {
  template <class T> T operator()(T a, T b) const { return a < b ? T(1) : T(0); }
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(a < b, B(1), B(0)); }
};
struct LessEqual {
  template <class T> T operator()(T a, T b) const { return a <= b ? T(1) : T(0); }
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(a <= b, B(1), B(0)); }
};
struct Greater {
  template <class T> T operator()(T a, T b) const { return a > b ? T(1) : T(0); }
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(a > b, B(1), B(0)); }
};
struct GreaterEqual {
  template <class T> T operator()(T a, T b) const { return a >= b ? T(1) : T(0); }
  template <class B> B simd(const B& a, const B& b) const { return xsimd::select(a >= b, B(1), B(0)); }
};

// ---- ternary -------------------------------------------------------------------
struct Where {  // cond != 0 ? a : b
  template <class T> T operator()(T c, T a, T b) const { return c != T(0) ? a : b; }
  template <class B> B simd(const B& c, const B& a, const B& b) const {
    return xsimd::select(c != B(0), a, b);
  }
};
struct Clamp {  // min(max(x, lo), hi)
  template <class T> T operator()(T x, T lo, T hi) const {
    T y = x < lo ? lo : x;
    return hi < y ? hi : y;
  }
  template <class B> B simd(const B& x, const B& lo, const B& hi) const {
    B y = xsimd::select(x < lo, lo, x);
    return xsimd::select(hi < y, hi, y);
  }
};

}  // namespace diffuse::fn

// The engine under every GEMM-shaped kernel of the library: register-tiled xsimd
// micro-kernel, BLIS-style cache blocking (NC / KC / MC loops around packed panels),
// the OpenMP work split, and the thread_local packing workspaces.
//
// It does not know where the operands come from: the caller passes two packing
// functors. pack_a(dst, i0, mr, k0, kc) writes one MR-row micro-panel of op(A) and
// pack_b(dst, j0, nr, k0, kc) one NR-column micro-panel of op(B), zero padded. That is how
// gemm (strided matrices), conv2d (implicit im2col) and the backward kernels share one
// engine. Two A panel layouts exist because each is a plain copy for some sources:
//   row panel   dst[i * KS + k]  (rows of A contiguous in memory: A row-major, im2col rows)
//   k-major     dst[k * MR + i]  (columns of A contiguous: A transposed, dY^T)
// KS is a compile-time row stride, so the micro-kernel addresses all MR rows from one
// pointer with immediate offsets and needs no extra registers.
//
// Not here: the public entry points (gemm.hpp, conv2d.hpp) and any argument checking.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <new>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/kernels/detail/blocking.hpp"
#include "diffuse/kernels/index.hpp"

namespace diffuse::kernels {

/// Element-wise activation a fused epilogue applies after the bias.
enum class Activation { none, relu, silu };

/// Fused GEMM epilogue: C = act(alpha * op(A) op(B) + beta * C + bias[col]).
template <class T>
struct Epilogue {
  const T* bias = nullptr;  ///< [N] per-column bias, or nullptr
  Activation act = Activation::none;  ///< applied after the bias
};

}  // namespace diffuse::kernels

namespace diffuse::kernels::detail {

/// Register and cache blocking for element type T on the compiled architecture.
template <class T>
struct Tiling {
  static constexpr int W = static_cast<int>(simd_width<T>);
  // 64-byte vectors means AVX-512 and 32 vector registers: a 14 x 2W tile uses 28
  // accumulators + 2 B vectors, the A values are broadcast from memory inside the FMA.
  // With 16 registers (SSE2, AVX2) 6 x 2W uses 12 accumulators.
  static constexpr bool many_registers = W * sizeof(T) == 64;
  static constexpr int NR = 2 * W;
  static constexpr int MR = many_registers ? 14 : 6;
  // Smaller tile for small M (Cout rows in the weight gradient): 8 divides 32 and 64.
  static constexpr int MR_SMALL = many_registers ? 8 : 4;
  // KS: the packed A row-panel stride (compile time, so that the micro-kernel addresses
  // all MR rows from one pointer with immediate offsets) and so the largest K block. The K
  // and M blocks themselves come from the running CPU's caches (blocking.hpp).
  static constexpr index_t KS = 384 * 4 / static_cast<index_t>(sizeof(T));
  // N block of wide GEMMs. Not from the L3 size: virtual machines report the host's whole
  // L3 (508 MiB on one), and no GEMM of a UNet is this wide.
  static constexpr index_t NC_MAX = 4096;
};

/// Growable 64-byte aligned scratch buffer, one per thread and slot; never shrinks, so
/// the steady state does not allocate.
template <class T>
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(p_); }
  T* get(std::size_t n) {
    if (n > cap_) {
      std::free(p_);
      const std::size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
      p_ = static_cast<T*>(std::aligned_alloc(64, bytes));
      if (!p_) {
        cap_ = 0;
        throw std::bad_alloc();
      }
      cap_ = n;
    }
    return p_;
  }

 private:
  T* p_ = nullptr;
  std::size_t cap_ = 0;
};

/// Workspace slots: 0 packed A, 1 packed B (shared by the team of the calling thread),
/// 2 to 4 for the conv kernels' own scratch (4: the direct pass for few outputs, which runs
/// inside the input gradient that holds 2).
template <class T, int Slot>
inline T* thread_scratch(std::size_t n) {
  thread_local Scratch<T> s;
  return s.get(n);
}

/// Threads of the current team (1 outside a parallel region or without OpenMP).
inline int team_size() noexcept {
#if defined(_OPENMP)
  return omp_get_num_threads();
#else
  return 1;
#endif
}

template <class T>
inline T activate(T v, Activation act) noexcept {
  switch (act) {
    case Activation::relu: return v > T(0) ? v : T(0);
    case Activation::silu: return v / (T(1) + std::exp(-v));
    default: return v;
  }
}

template <class T>
inline simd<T> activate(const simd<T>& v, Activation act) noexcept {
  switch (act) {
    case Activation::relu: return xsimd::max(v, simd<T>(T(0)));
    case Activation::silu: return v / (simd<T>(T(1)) + xsimd::exp(-v));
    default: return v;
  }
}

/// C[mr x nr] (row stride ldc) = act(alpha * A_panel B_panel + beta * C + bias); beta == 0
/// never reads C. The full MR x NR product is always computed on zero-padded panels.
template <class T, int MR, bool ARow>
inline void micro_kernel(index_t kc, const T* __restrict a, const T* __restrict b, T* c,
                         index_t ldc, int mr, int nr, T alpha, T beta, const T* bias,
                         Activation act) noexcept {
  using V = simd<T>;
  constexpr int W = Tiling<T>::W;
  constexpr int NR = Tiling<T>::NR;
  constexpr index_t KS = Tiling<T>::KS;
  V acc0[MR], acc1[MR];
  // The C tile is touched only at the end: start bringing it in now.
  for (int i = 0; i < mr; ++i) {
    __builtin_prefetch(c + i * ldc, 1);
    __builtin_prefetch(c + i * ldc + NR - 1, 1);
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    acc0[i] = V(T(0));
    acc1[i] = V(T(0));
  }
  for (index_t p = 0; p < kc; ++p) {
    const V b0 = V::load_aligned(b + p * NR);
    const V b1 = V::load_aligned(b + p * NR + W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      // Broadcast from memory: folded into the FMA as an embedded broadcast on AVX-512.
      const V ai(ARow ? a[i * KS + p] : a[p * MR + i]);
      acc0[i] = xsimd::fma(ai, b0, acc0[i]);
      acc1[i] = xsimd::fma(ai, b1, acc1[i]);
    }
  }
  const V va(alpha), vb(beta);
  if (nr == NR) {  // full width (also the bottom edge of M): vector epilogue row by row
    V bias0(T(0)), bias1(T(0));
    if (bias) {
      bias0 = V::load_unaligned(bias);
      bias1 = V::load_unaligned(bias + W);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      if (i >= mr) break;
      T* ci = c + i * ldc;
      V r0 = acc0[i] * va, r1 = acc1[i] * va;
      if (beta != T(0)) {
        r0 = xsimd::fma(vb, V::load_unaligned(ci), r0);
        r1 = xsimd::fma(vb, V::load_unaligned(ci + W), r1);
      }
      if (bias) {
        r0 += bias0;
        r1 += bias1;
      }
      if (act != Activation::none) {
        r0 = activate(r0, act);
        r1 = activate(r1, act);
      }
      r0.store_unaligned(ci);
      r1.store_unaligned(ci + W);
    }
    return;
  }
  // Edge tile: spill the accumulators, finish the valid part in scalar code.
  alignas(64) T tmp[MR * NR];
  for (int i = 0; i < MR; ++i) {
    acc0[i].store_aligned(tmp + i * NR);
    acc1[i].store_aligned(tmp + i * NR + W);
  }
  for (int i = 0; i < mr; ++i) {
    T* ci = c + i * ldc;
    for (int j = 0; j < nr; ++j) {
      T r = alpha * tmp[i * NR + j];
      if (beta != T(0)) r += beta * ci[j];
      if (bias) r += bias[j];
      ci[j] = activate(r, act);
    }
  }
}

/// The micro-kernel a GEMM runs, as a type: `packed` is the element of the packed panels
/// (one K step each) and run<MR, ARow>(kc, a, b, c, ...) multiplies kc of them. FmaKernel
/// multiplies T by T with FMAs; detail/gemm_bf16.hpp has the BF16 one.
template <class T>
struct FmaKernel {
  using packed = T;
  template <int MR, bool ARow>
  static void run(index_t kc, const T* a, const T* b, T* c, index_t ldc, int mr, int nr,
                  T alpha, T beta, const T* bias, Activation act) noexcept {
    micro_kernel<T, MR, ARow>(kc, a, b, c, ldc, mr, nr, alpha, beta, bias, act);
  }
};

/// d[0, n) = s[0, n), whole vectors first (packing is on the critical path of thin GEMMs).
template <class T>
inline void copy_run(T* __restrict d, const T* __restrict s, index_t n) noexcept {
  using V = simd<T>;
  constexpr index_t W = Tiling<T>::W;
  index_t i = 0;
  for (; i + W <= n; i += W) {
    V v = V::load_unaligned(s + i);
#if defined(__GNUC__) && defined(__x86_64__)
    // Opaque to the optimiser: otherwise GCC turns this loop into a memmove call, whose
    // overhead dominates the short channel runs of im2col packing.
    __asm__("" : "+v"(v.data));
#endif
    v.store_unaligned(d + i);
  }
  for (; i < n; ++i) d[i] = s[i];
}

/// d[0, n) += s[0, n).
template <class T>
inline void add_run(T* __restrict d, const T* __restrict s, index_t n) noexcept {
  using V = simd<T>;
  constexpr index_t W = Tiling<T>::W;
  index_t i = 0;
  for (; i + W <= n; i += W) (V::load_unaligned(d + i) + V::load_unaligned(s + i)).store_unaligned(d + i);
  for (; i < n; ++i) d[i] += s[i];
}

/// d[0, n) = 0.
template <class T>
inline void zero_run(T* d, index_t n) noexcept {
  using V = simd<T>;
  constexpr index_t W = Tiling<T>::W;
  index_t i = 0;
  for (; i + W <= n; i += W) V(T(0)).store_unaligned(d + i);
  for (; i < n; ++i) d[i] = T(0);
}

inline index_t ceil_div(index_t a, index_t b) noexcept { return (a + b - 1) / b; }
inline index_t round_up(index_t a, index_t b) noexcept { return ceil_div(a, b) * b; }

/// One thread's share: C rows [ib, ie) x columns [jb, je), all of K, BLIS loop nest
/// (NC, KC, MC blocks around packed panels) with thread_local buffers.
template <class T, int MR, bool ARow, class Mk = FmaKernel<T>, class PackA, class PackB>
void gemm_serial(index_t ib, index_t ie, index_t jb, index_t je, index_t k, T alpha, T beta,
                 T* c, index_t ldc, const Epilogue<T>& epi, const PackA& pack_a,
                 const PackB& pack_b, index_t k_align = 1) {
  using Tl = Tiling<T>;
  using P = typename Mk::packed;  // k runs over packed elements
  constexpr int NR = Tl::NR;
  constexpr index_t KS = Tl::KS;
  const index_t m = ie - ib, n = je - jb;
  if (m <= 0 || n <= 0) return;
  // Balanced blocks: equal-sized K blocks (no short remainder block), N blocks, M blocks of
  // whole MR panels.
  const Blocking blk = blocking_for(blocking_cache_sizes(), MR, NR, sizeof(P), KS);
  const index_t kmax = ceil_div(n, NR) <= 4 ? blk.k_thin : blk.kc;
  const index_t nkb = k > 0 ? ceil_div(k, kmax) : 1;
  index_t kcb = k > 0 ? ceil_div(k, nkb) : 0;
  // K blocks on multiples of k_align (a convolution tap: whole channel runs) when possible.
  if (k_align > 1 && kcb % k_align != 0) {
    if (round_up(kcb, k_align) <= kmax)
      kcb = round_up(kcb, k_align);
    else if (kmax >= k_align)
      kcb = kmax / k_align * k_align;
  }
  if (ceil_div(n, NR) <= 4) {
    // Thin GEMM (the convolutions): B is small, so pack all of it once; then for each A
    // micro-panel run every K block back to back, packing the A panel just before use (it
    // is still in L1) and keeping the C tile in cache across K blocks.
    const index_t npanels = ceil_div(n, NR);
    const index_t nkb_used = k > 0 ? ceil_div(k, kcb) : 1;
    P* bbuf = thread_scratch<P, 1>(static_cast<std::size_t>(nkb_used * npanels * KS * NR));
    P* abuf = thread_scratch<P, 0>(static_cast<std::size_t>(MR * KS));
    for (index_t b = 0; b < nkb_used; ++b) {
      const index_t pc = b * kcb, kc = std::min(kcb, k - pc);
      for (index_t jp = 0; jp < npanels; ++jp)
        pack_b(bbuf + (b * npanels + jp) * KS * NR, jb + jp * NR,
               static_cast<int>(std::min<index_t>(NR, n - jp * NR)), pc, kc);
    }
    for (index_t i0 = ib; i0 < ie; i0 += MR) {
      const int mr = static_cast<int>(std::min<index_t>(MR, ie - i0));
      for (index_t b = 0; b < nkb_used; ++b) {
        const index_t pc = b * kcb, kc = std::min(kcb, k - pc);
        const bool last = b + 1 == nkb_used;
        pack_a(abuf, i0, mr, pc, kc);
        for (index_t jp = 0; jp < npanels; ++jp) {
          const index_t j0 = jb + jp * NR;
          Mk::template run<MR, ARow>(kc, abuf, bbuf + (b * npanels + jp) * KS * NR,
                                    c + i0 * ldc + j0, ldc, mr,
                                    static_cast<int>(std::min<index_t>(NR, je - j0)), alpha,
                                    b == 0 ? beta : T(1),
                                    (last && epi.bias) ? epi.bias + j0 : nullptr,
                                    last ? epi.act : Activation::none);
        }
      }
    }
    return;
  }
  const index_t ncb = round_up(ceil_div(n, ceil_div(n, Tl::NC_MAX)), NR);
  const index_t m_panels = ceil_div(m, MR);
  const index_t n_ic = ceil_div(m_panels, blk.mc_panels);
  const index_t mc = ceil_div(m_panels, n_ic) * MR;
  P* bbuf = thread_scratch<P, 1>(static_cast<std::size_t>(KS * ncb));
  P* abuf = thread_scratch<P, 0>(static_cast<std::size_t>(mc * KS));
  for (index_t jc = jb; jc < je; jc += ncb) {
    const index_t nb = std::min(ncb, je - jc);
    const index_t npanels = ceil_div(nb, NR);
    for (index_t pc = 0; pc < std::max<index_t>(k, 1); pc += std::max<index_t>(kcb, 1)) {
      const index_t kc = std::min(kcb, k - pc);
      const bool first = pc == 0, last = pc + kcb >= k;
      const T beta_blk = first ? beta : T(1);
      const Activation act = last ? epi.act : Activation::none;
      for (index_t jp = 0; jp < npanels; ++jp)
        pack_b(bbuf + jp * KS * NR, jc + jp * NR,
               static_cast<int>(std::min<index_t>(NR, nb - jp * NR)), pc, kc);
      for (index_t ic = 0; ic < n_ic; ++ic) {
        const index_t i0 = ib + (m_panels * ic / n_ic) * MR;
        const index_t mb = std::min(ib + (m_panels * (ic + 1) / n_ic) * MR, ie) - i0;
        const index_t mpanels = ceil_div(mb, MR);
        auto tile = [&](const P* ap, index_t ip, index_t jp) {
          const index_t j0 = jc + jp * NR;
          Mk::template run<MR, ARow>(kc, ap, bbuf + jp * KS * NR, c + (i0 + ip * MR) * ldc + j0,
                                    ldc, static_cast<int>(std::min<index_t>(MR, mb - ip * MR)),
                                    static_cast<int>(std::min<index_t>(NR, nb - jp * NR)),
                                    alpha, beta_blk,
                                    (last && epi.bias) ? epi.bias + j0 : nullptr, act);
        };
        if (npanels <= 4) {
          // Few column panels (thin GEMMs, convolutions): pack each A micro-panel right
          // before its use so that it is still in L1; B (<= 4 panels) stays in L2.
          for (index_t ip = 0; ip < mpanels; ++ip) {
            pack_a(abuf, i0 + ip * MR, static_cast<int>(std::min<index_t>(MR, mb - ip * MR)),
                   pc, kc);
            for (index_t jp = 0; jp < npanels; ++jp) tile(abuf, ip, jp);
          }
        } else {
          // BLIS order: the packed A block stays in L2, one B micro-panel in L1 at a time.
          for (index_t ip = 0; ip < mpanels; ++ip)
            pack_a(abuf + ip * MR * KS, i0 + ip * MR,
                   static_cast<int>(std::min<index_t>(MR, mb - ip * MR)), pc, kc);
          for (index_t jp = 0; jp < npanels; ++jp)
            for (index_t ip = 0; ip < mpanels; ++ip) tile(abuf + ip * MR * KS, ip, jp);
        }
      }
    }
  }
}

/// C (m x n, row stride ldc) = act(alpha * op(A) op(B) + beta * C + bias) with op(A) and
/// op(B) delivered by the packing functors (see the file comment). Uses up to nthreads
/// threads; nthreads <= 1 runs on the calling thread only.
///
/// Threads split C into disjoint blocks of whole panels (rows when there are enough,
/// else columns) and run independent loop nests with private packed buffers: no barrier
/// until the end. B is packed once per thread instead of once per team, which costs
/// K x N copies against M x N x K / threads multiply-adds; in exchange a thread that the
/// OS descheduled (this machine is shared) never stalls the other at a barrier.
template <class T, int MR, bool ARow, class Mk = FmaKernel<T>, class PackA, class PackB>
void gemm_driver(index_t m, index_t n, index_t k, T alpha, T beta, T* c, index_t ldc,
                 const Epilogue<T>& epi, const PackA& pack_a, const PackB& pack_b,
                 int nthreads, index_t k_align = 1) {
  constexpr int NR = Tiling<T>::NR;
  if (m <= 0 || n <= 0) return;
  const index_t m_panels = ceil_div(m, MR), n_panels = ceil_div(n, NR);
  // Small problems are not worth waking a team.
  const double work = double(m) * double(n) * double(std::max<index_t>(k, 1));
  if (work < 48.0 * 48.0 * 48.0) nthreads = 1;
  // Split rows, unless the row panels do not divide evenly among the threads while wide
  // column panels do (a whole MR panel is computed even when it is partly outside C).
  const index_t nt_i = nthreads;
  const bool cols_even = n_panels % nt_i == 0 && n_panels >= 4 * nt_i && m_panels % nt_i != 0;
  const bool split_m = !cols_even && (m_panels >= 2 * nt_i || m_panels >= n_panels);
  const index_t parts = std::max<index_t>(
      1, std::min<index_t>(nthreads, split_m ? m_panels : n_panels));
  if (parts == 1) {
    gemm_serial<T, MR, ARow, Mk>(0, m, 0, n, k, alpha, beta, c, ldc, epi, pack_a, pack_b, k_align);
    return;
  }
  // The whole team even when fewer parts: a smaller team makes libgomp end the surplus
  // threads of its pool, and their thread_scratch with them (see parallel.hpp).
  const int nt = nthreads;
  DIFFUSE_OMP(parallel num_threads(nt))
  {
    for (index_t t = thread_index(); t < parts; t += team_size()) {
      if (split_m) {
        const index_t ib = m_panels * t / parts * MR;
        const index_t ie = std::min(m_panels * (t + 1) / parts * MR, m);
        gemm_serial<T, MR, ARow, Mk>(ib, ie, 0, n, k, alpha, beta, c, ldc, epi, pack_a, pack_b,
                                 k_align);
      } else {
        const index_t jb = n_panels * t / parts * NR;
        const index_t je = std::min(n_panels * (t + 1) / parts * NR, n);
        gemm_serial<T, MR, ARow, Mk>(0, m, jb, je, k, alpha, beta, c, ldc, epi, pack_a, pack_b,
                                 k_align);
      }
    }
  }
}

}  // namespace diffuse::kernels::detail

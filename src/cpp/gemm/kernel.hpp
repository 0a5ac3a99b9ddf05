// GEMM micro-kernels and packing, templated on the element type; the vector width and tile
// rows come from Simd<T> (simd.hpp), i.e. from the ISA this translation unit is compiled for.
//
// Shape legend: a micro-tile of C is R x NR (R <= MR rows, NR = 2L columns, L = lanes per
// vector); kc is the depth of one K block. A micro-panel holds R rows of op(A) over kc, a B
// micro-panel NR columns of op(B) over kc.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "gemm/simd.hpp"

namespace gd {
namespace GD_NS {
namespace gemm_detail {

template <class T>
constexpr int kNR = 2 * Simd<T>::L;

// k steps before the end of a micro-kernel at which its C tile is prefetched into L1 (early
// enough to hide an L2 miss, late enough that the streamed B panel does not evict it again).
constexpr int64_t kPrefetchC = 24;

// C[r, :n] = alpha * acc[r, :n] + beta * C[r, :n] for r < R, acc[r, j] = sum_k a(r, k) b(k, j).
//   a(r, k) = a[k * a_stride + r]  (kRowA false: a packed micro-panel, a_stride = MRP, or op(A) =
//                                   A^T read in place, a_stride = lda)
//   a(r, k) = a[r * a_stride + k]  (kRowA true: row-major A read in place, a_stride = lda)
//   b(k, :) = b + k * b_rs, NR contiguous values (a packed micro-panel, b_rs = NR, or op(B) = B
//             read in place, b_rs = ldb; kMaskB then reads only the n valid columns).
// beta == 0 never reads C. Every accumulator lane is one FMA chain over k in increasing order,
// so a C element's value does not depend on the tile it lies in, its row count R, the masks, or
// the thread that computes it: only the K blocking (fixed by K) shapes the arithmetic.
template <class T, int R, bool kRowA, bool kMaskB>
void micro_kernel(int64_t kc, const T* GD_RESTRICT a, int64_t a_stride, const T* GD_RESTRICT b,
                  int64_t b_rs, T* GD_RESTRICT c, int64_t ldc, int64_t n, T alpha, T beta) {
    using V = Simd<T>;
    using reg = typename V::reg;
    constexpr int L = V::L;
    reg acc0[R], acc1[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
        acc0[r] = V::zero();
        acc1[r] = V::zero();
        GD_PREFETCH(c + r * ldc, 2);  // the C tile towards L2 now, into L1 near the end
        GD_PREFETCH(c + r * ldc + 2 * L - 1, 2);
    }
    const typename V::mask m0 = V::first(n), m1 = V::first(n - L);
    const T* GD_RESTRICT ap = a;
    int64_t k = 0;
    for (int phase = 0; phase < 2; ++phase) {
        const int64_t k_end = phase == 0 ? std::max<int64_t>(0, kc - kPrefetchC) : kc;
#pragma GCC unroll 2
        for (; k < k_end; ++k) {
            reg b0, b1;
            if (kMaskB) {
                b0 = V::load(b, m0);
                b1 = V::load(b + L, m1);
            } else {
                b0 = V::load(b);
                b1 = V::load(b + L);
            }
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                const reg ar = V::set1(kRowA ? ap[r * a_stride] : ap[r]);
                acc0[r] = V::fma(ar, b0, acc0[r]);
                acc1[r] = V::fma(ar, b1, acc1[r]);
            }
            ap += kRowA ? 1 : a_stride;
            b += b_rs;
        }
        if (phase == 0) {
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                GD_PREFETCH(c + r * ldc, 3);
                GD_PREFETCH(c + r * ldc + 2 * L - 1, 3);
            }
        }
    }
    const reg va = V::set1(alpha), vb = V::set1(beta);
    if (n >= 2 * L) {
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            T* cr = c + r * ldc;
            const reg t0 = V::mul(va, acc0[r]), t1 = V::mul(va, acc1[r]);
            if (beta == T(0)) {
                V::store(cr, t0);
                V::store(cr + L, t1);
            } else {
                V::store(cr, V::fma(vb, V::load(cr), t0));
                V::store(cr + L, V::fma(vb, V::load(cr + L), t1));
            }
        }
    } else {
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            T* cr = c + r * ldc;
            const reg t0 = V::mul(va, acc0[r]), t1 = V::mul(va, acc1[r]);
            if (beta == T(0)) {
                V::store(cr, t0, m0);
                V::store(cr + L, t1, m1);
            } else {
                V::store(cr, V::fma(vb, V::load(cr, m0), t0), m0);
                V::store(cr + L, V::fma(vb, V::load(cr + L, m1), t1), m1);
            }
        }
    }
}

template <class T>
using KernelFn = void (*)(int64_t, const T*, int64_t, const T*, int64_t, T*, int64_t, int64_t, T,
                          T);

template <class T, bool kRowA, bool kMaskB, size_t... I>
constexpr std::array<KernelFn<T>, sizeof...(I) + 1> make_kernels(std::index_sequence<I...>) {
    return {{nullptr, &micro_kernel<T, static_cast<int>(I) + 1, kRowA, kMaskB>...}};
}

// The micro-kernel for a tile of `rows` (1..MR) rows.
template <class T>
KernelFn<T> kernel_for(int64_t rows, bool row_a, bool mask_b) {
    constexpr auto seq = std::make_index_sequence<Simd<T>::MR>{};
    static constexpr auto k00 = make_kernels<T, false, false>(seq);
    static constexpr auto k01 = make_kernels<T, false, true>(seq);
    static constexpr auto k10 = make_kernels<T, true, false>(seq);
    static constexpr auto k11 = make_kernels<T, true, true>(seq);
    const auto& t = row_a ? (mask_b ? k11 : k10) : (mask_b ? k01 : k00);
    return t[static_cast<size_t>(rows)];
}

// Packed A micro-panels are kMRP >= MR values wide per k (MR rounded up to whole vectors), so
// op(A) = A packs with L x L register transposes; the kernel reads the first MR of each row.
template <class T>
constexpr int kMRP = (Simd<T>::MR + Simd<T>::L - 1) / Simd<T>::L * Simd<T>::L;

// A micro-panels p0..p1 of op(A) over k0..k0+kc: panel p holds
// dst[p * kc * MRP + k * MRP + r] = op(A)(p * MR + r, k0 + k) for r < min(MR, M - p * MR).
template <class T>
void pack_a(T* GD_RESTRICT dst, bool ta, const T* GD_RESTRICT A, int64_t lda, int64_t M,
            int64_t k0, int64_t kc, int64_t p0, int64_t p1) {
    using V = Simd<T>;
    constexpr int L = V::L, MR = V::MR, MRP = kMRP<T>;
    if (ta) {
        // op(A) = A^T: row k of A holds op(A)(:, k); read it front to back and deal its MR-wide
        // pieces out to the panels.
        for (int64_t k = 0; k < kc; ++k) {
            const T* src = A + (k0 + k) * lda;
            for (int64_t p = p0; p < p1; ++p) {
                const int64_t i0 = p * MR, m = std::min<int64_t>(MR, M - i0);
                T* d = dst + p * kc * MRP + k * MRP;
                for (int64_t r = 0; r < MRP; r += L) V::store(d + r, V::load(src + i0 + r, V::first(m - r)));
            }
        }
        return;
    }
    // op(A) = A: L rows x L k-steps at a time through a register transpose (a block that would
    // read rows past M goes through a zero-padded copy); the k tail element by element.
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t i0 = p * MR, m = std::min<int64_t>(MR, M - i0);
        T* d = dst + p * kc * MRP;
        int64_t k = 0;
        for (; k + L <= kc; k += L) {
            for (int64_t r0 = 0; r0 < m; r0 += L) {
                const T* src = A + (i0 + r0) * lda + k0 + k;
                if (i0 + r0 + L <= M) {
                    V::transpose(src, lda, d + k * MRP + r0, MRP);
                } else {
                    alignas(64) T tile[L * L];
                    for (int64_t r = 0; r < L; ++r)
                        V::store(tile + r * L, i0 + r0 + r < M ? V::load(src + r * lda) : V::zero());
                    V::transpose(tile, L, d + k * MRP + r0, MRP);
                }
            }
        }
        for (; k < kc; ++k)
            for (int64_t r = 0; r < m; ++r) d[k * MRP + r] = A[(i0 + r) * lda + k0 + k];
    }
}

// B micro-panels p0..p1 of a block of nb columns starting at column j0: panel p holds
// dst[p * kc * NR + k * NR + j] = op(B)(k0 + k, j0 + p * NR + j), zero where j0 + p * NR + j is
// past the block.
template <class T>
void pack_b(T* GD_RESTRICT dst, bool tb, const T* GD_RESTRICT B, int64_t ldb, int64_t k0,
            int64_t kc, int64_t j0, int64_t nb, int64_t p0, int64_t p1) {
    using V = Simd<T>;
    constexpr int L = V::L, NR = kNR<T>;
    if (!tb) {
        // op(B) = B: walk B's rows in order (each read front to back, prefetcher-friendly) and
        // deal each row's NR-wide pieces out to the panels.
        for (int64_t k = 0; k < kc; ++k) {
            const T* src = B + (k0 + k) * ldb + j0;
            for (int64_t p = p0; p < p1; ++p) {
                T* d = dst + p * kc * NR + k * NR;
                const int64_t n = std::min<int64_t>(NR, nb - p * NR);
                if (n == NR) {
                    V::store(d, V::load(src + p * NR));
                    V::store(d + L, V::load(src + p * NR + L));
                } else {
                    V::store(d, V::load(src + p * NR, V::first(n)));
                    V::store(d + L, V::load(src + p * NR + L, V::first(n - L)));
                }
            }
        }
        return;
    }
    // op(B) = B^T: panel rows are columns of B; L x L blocks are transposed in registers.
    for (int64_t p = p0; p < p1; ++p) {
        T* d = dst + p * kc * NR;
        const int64_t jp = j0 + p * NR, n = std::min<int64_t>(NR, nb - p * NR);
        int64_t k = 0;
        if (n == NR) {
            for (; k + L <= kc; k += L) {
                V::transpose(B + jp * ldb + k0 + k, ldb, d + k * NR, NR);
                V::transpose(B + (jp + L) * ldb + k0 + k, ldb, d + k * NR + L, NR);
            }
        }
        for (; k < kc; ++k) {
            for (int64_t j = 0; j < n; ++j) d[k * NR + j] = B[(jp + j) * ldb + k0 + k];
            for (int64_t j = n; j < NR; ++j) d[k * NR + j] = T(0);
        }
    }
}

}  // namespace gemm_detail
}  // namespace GD_NS
}  // namespace gd

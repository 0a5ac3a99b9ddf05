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
// k steps ahead at which a B panel read in place to be packed on the fly is prefetched into L1
// and into L2.
constexpr int64_t kPrefetchB1 = 8, kPrefetchB2 = 32;

// Prefetches p + i (locality 3: into L1, 2: into L2), which may lie outside p's array: the
// address is formed as an integer, not by pointer arithmetic.
template <int kLocality, class T>
inline void prefetch(const T* p, int64_t i) {
    GD_PREFETCH(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) +
                                              static_cast<uintptr_t>(i) * sizeof(T)),
                kLocality);
}

// Packed A micro-panels are kMRP >= MR values wide per k (MR rounded up to whole vectors), so
// op(A) = A packs with L x L register transposes; the kernel reads the first MR of each row.
template <class T>
constexpr int kMRP = (Simd<T>::MR + Simd<T>::L - 1) / Simd<T>::L * Simd<T>::L;

// C[r, :n] = alpha * acc[r, :n] + beta * C[r, :n] for r < R, acc[r, j] = sum_k a(r, k) b(k, j).
//   a(r, k) = a[k * a_stride + r]  (kRowA false: a packed micro-panel, a_stride = MRP, or op(A) =
//                                   A^T read in place, a_stride = lda)
//   a(r, k) = a[r * a_stride + k]  (kRowA true: row-major A read in place, a_stride = lda)
//   b(k, :) = b + k * b_rs, NR contiguous values (a packed micro-panel, b_rs = NR, or op(B) = B
//             read in place, b_rs = ldb; kMaskB then reads only the n valid columns).
// Packing on the fly (the first use of a panel read in place also writes its packed copy, so the
// copy costs no pass of its own: the stores hide behind the FMAs):
//   kPackA (with kRowA false): apack[k * MRP + r] = a(r, k) for r < MRP (zero for r >= R), the
//     layout of pack_a;
//   kPackB: bpack[k * NR + j] = b(k, j) for j < NR (zero for j >= n), the layout of pack_b.
// kHalf: a panel of n <= L columns (the last one, e.g. N = 784 = 24 x 32 + 16) keeps only the
// first vector of accumulators, half the FMAs of a full tile; b(k, L..) is never read.
// beta == 0 never reads C. Every accumulator lane is one FMA chain over k in increasing order,
// so a C element's value does not depend on the tile it lies in, its row count R, the masks, the
// packing, or the thread that computes it: only the K blocking (fixed by K) shapes the arithmetic.
template <class T, int R, bool kRowA, bool kMaskB, bool kPackA, bool kPackB, bool kHalf = false>
void micro_kernel(int64_t kc, const T* GD_RESTRICT a, int64_t a_stride, const T* GD_RESTRICT b,
                  int64_t b_rs, T* GD_RESTRICT c, int64_t ldc, int64_t n, T alpha, T beta,
                  T* GD_RESTRICT apack, T* GD_RESTRICT bpack) {
    static_assert(!(kPackA && kRowA), "packing on the fly reads op(A) = A^T");
    static_assert(!(kHalf && (kPackA || kPackB)), "half tiles only read packed or in-place panels");
    using V = Simd<T>;
    using reg = typename V::reg;
    constexpr int L = V::L, NR = 2 * L, MRP = kMRP<T>;
    constexpr int W = kHalf ? L : NR;  // columns this tile computes
    reg acc0[R], acc1[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
        acc0[r] = V::zero();
        acc1[r] = V::zero();
        GD_PREFETCH(c + r * ldc, 2);  // the C tile towards L2 now, into L1 near the end
        GD_PREFETCH(c + r * ldc + W - 1, 2);
    }
    const typename V::mask m0 = V::first(n), m1 = V::first(n - L);
    const T* GD_RESTRICT ap = a;
    int64_t k = 0;
    for (int phase = 0; phase < 2; ++phase) {
        const int64_t k_end = phase == 0 ? std::max<int64_t>(0, kc - kPrefetchC) : kc;
#pragma GCC unroll 2
        for (; k < k_end; ++k) {
            reg b0, b1 = V::zero();
            if (kMaskB) {
                b0 = V::load(b, m0);
                if (!kHalf) b1 = V::load(b + L, m1);
            } else {
                b0 = V::load(b);
                if (!kHalf) b1 = V::load(b + L);
            }
            if (kPackB) {
                // b's rows lie ldb apart (often beyond the hardware prefetchers' stride reach):
                // this panel's rows a few steps ahead, and the same row of the next panel (read
                // by the next call) into L2 now, a whole call ahead of its use. (Addresses past
                // the matrix are harmless to prefetch.)
                prefetch<3>(b, kPrefetchB1 * b_rs);
                prefetch<3>(b, kPrefetchB1 * b_rs + NR - 1);
                prefetch<2>(b, kPrefetchB2 * b_rs);
                prefetch<2>(b, kPrefetchB2 * b_rs + NR - 1);
                prefetch<2>(b, NR);
                prefetch<2>(b, NR + L);
                prefetch<2>(b, 2 * NR - 1);
                V::store(bpack + k * NR, b0);
                V::store(bpack + k * NR + L, b1);
            }
            if (kPackA) {
#pragma GCC unroll 4
                for (int r0 = 0; r0 < MRP; r0 += L)
                    V::store(apack + k * MRP + r0, V::load(ap + r0, V::first(R - r0)));
            }
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                const reg ar = V::set1(kRowA ? ap[r * a_stride] : ap[r]);
                acc0[r] = V::fma(ar, b0, acc0[r]);
                if (!kHalf) acc1[r] = V::fma(ar, b1, acc1[r]);
            }
            ap += kRowA ? 1 : a_stride;
            b += b_rs;
        }
        if (phase == 0) {
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                GD_PREFETCH(c + r * ldc, 3);
                GD_PREFETCH(c + r * ldc + W - 1, 3);
            }
        }
    }
    const reg va = V::set1(alpha), vb = V::set1(beta);
    if (kHalf) {
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            T* cr = c + r * ldc;
            const reg t0 = V::mul(va, acc0[r]);
            V::store(cr, beta == T(0) ? t0 : V::fma(vb, V::load(cr, m0), t0), m0);
        }
    } else if (n >= 2 * L) {
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
                          T, T*, T*);

template <class T, bool kRowA, bool kMaskB, bool kPackA, bool kPackB, bool kHalf = false,
          size_t... I>
constexpr std::array<KernelFn<T>, sizeof...(I) + 1> make_kernels(std::index_sequence<I...>) {
    return {{nullptr, &micro_kernel<T, static_cast<int>(I) + 1, kRowA, kMaskB, kPackA, kPackB,
                                    kHalf>...}};
}

// The micro-kernel for a tile of `rows` (1..MR) rows: op(A) row-major in place (row_a), B read
// in place with a partial panel (mask_b), packing A or B on the fly (pack_a, pack_b; see above).
// A tile of n <= L columns that packs nothing gets the half-width kernel. Only the combinations
// gemm.cpp uses are compiled (each is 3 ISAs x 2 types x MR row counts): packing on the fly takes
// whole B panels and packs A or B, not both; op(A) = A read in place is never packed on the fly
// (null otherwise).
template <class T>
KernelFn<T> kernel_for(int64_t rows, bool row_a, bool mask_b, bool pack_a = false,
                       bool pack_b = false, int64_t n = kNR<T>) {
    constexpr auto seq = std::make_index_sequence<Simd<T>::MR>{};
    // [row_a] half-width tiles (masked: they serve packed and in-place panels alike)
    static constexpr std::array<KernelFn<T>, Simd<T>::MR + 1> half[2] = {
        make_kernels<T, false, true, false, false, true>(seq),
        make_kernels<T, true, true, false, false, true>(seq)};
    if (n <= Simd<T>::L && !pack_a && !pack_b) return half[row_a][static_cast<size_t>(rows)];
    // [pack_a][pack_b] for op(A) read as columns (packed or A^T in place), whole B panels
    static constexpr std::array<KernelFn<T>, Simd<T>::MR + 1> col[2][2] = {
        {make_kernels<T, false, false, false, false>(seq),
         make_kernels<T, false, false, false, true>(seq)},
        {make_kernels<T, false, false, true, false>(seq), {}}};
    // [pack_b] for row-major op(A) = A read in place, whole B panels
    static constexpr std::array<KernelFn<T>, Simd<T>::MR + 1> row[2] = {
        make_kernels<T, true, false, false, false>(seq),
        make_kernels<T, true, false, false, true>(seq)};
    // a partial B panel read in place (the unpacked path), packing nothing
    static constexpr std::array<KernelFn<T>, Simd<T>::MR + 1> masked[2] = {
        make_kernels<T, false, true, false, false>(seq),
        make_kernels<T, true, true, false, false>(seq)};
    const size_t r = static_cast<size_t>(rows);
    if (mask_b) return pack_a || pack_b ? nullptr : masked[row_a][r];
    return row_a ? (pack_a ? nullptr : row[pack_b][r]) : col[pack_a][pack_b][r];
}

// dst[k * ldd + j] = src[j * lds + k] for k < nk, j < L (nj, nk <= L): an L x L register
// transpose of the nj x nk block at src, zero for j >= nj. Full blocks are transposed in place;
// a partial one goes through zero-padded copies, so nothing outside the block is read and only
// nk rows of dst are written.
template <class T>
void transpose_block(const T* GD_RESTRICT src, int64_t lds, int64_t nj, int64_t nk,
                     T* GD_RESTRICT dst, int64_t ldd) {
    using V = Simd<T>;
    constexpr int L = V::L;
    if (nj == L && nk == L) {
        V::transpose(src, lds, dst, ldd);
        return;
    }
    alignas(64) T in[L * L];
    alignas(64) T out[L * L];
    for (int64_t j = 0; j < L; ++j)
        V::store(in + j * L, j < nj ? V::load(src + j * lds, V::first(nk)) : V::zero());
    V::transpose(in, L, out, L);
    for (int64_t k = 0; k < nk; ++k) V::store(dst + k * ldd, V::load(out + k * L));
}

// A micro-panels p0..p1 of op(A) over k0..k0+kc: panel p holds
// dst[p * kc * MRP + k * MRP + r] = op(A)(p * MR + r, k0 + k) for r < min(MR, M - p * MR).
template <class T>
void pack_a(T* GD_RESTRICT dst, bool ta, const T* GD_RESTRICT A, int64_t lda, int64_t M,
            int64_t k0, int64_t kc, int64_t p0, int64_t p1) {
    using V = Simd<T>;
    constexpr int L = V::L, MR = V::MR, MRP = kMRP<T>;
    if (ta) {
        // op(A) = A^T: row k of A holds op(A)(:, k); read it front to back and deal its MR-wide
        // pieces out to the panels (zero past row M).
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
    // op(A) = A: L rows x L k-steps at a time through a register transpose (rows of the next
    // panel, while inside A, ride along in lanes the kernel does not read).
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t i0 = p * MR, m = std::min<int64_t>(MR, M - i0);
        T* d = dst + p * kc * MRP;
        for (int64_t k = 0; k < kc; k += L) {
            const int64_t nk = std::min<int64_t>(L, kc - k);
            for (int64_t r0 = 0; r0 < m; r0 += L)
                transpose_block(A + (i0 + r0) * lda + k0 + k, lda,
                                std::min<int64_t>(L, M - i0 - r0), nk, d + k * MRP + r0, MRP);
        }
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
    // op(B) = B^T: panel rows are columns of B; L x L blocks are transposed in registers, columns
    // past the block packed as zeros.
    for (int64_t p = p0; p < p1; ++p) {
        T* d = dst + p * kc * NR;
        const int64_t jp = j0 + p * NR, n = std::min<int64_t>(NR, nb - p * NR);
        for (int64_t k = 0; k < kc; k += L) {
            const int64_t nk = std::min<int64_t>(L, kc - k);
            for (int64_t h = 0; h < NR; h += L) {
                if (h < n) {
                    transpose_block(B + (jp + h) * ldb + k0 + k, ldb, std::min<int64_t>(L, n - h),
                                    nk, d + k * NR + h, NR);
                } else {
                    for (int64_t kk = 0; kk < nk; ++kk) V::store(d + (k + kk) * NR + h, V::zero());
                }
            }
        }
    }
}

}  // namespace gemm_detail
}  // namespace GD_NS
}  // namespace gd

// Products with a short inner dimension and op(A) = A^T, op(B) = B: a linear layer's weight
// gradient dW (OUT, IN) = dy^T (OUT, B) x (B, IN) at a small batch B. Shared by gemm.cpp (which
// stores C) and optim.cpp (which applies an SGD update to each tile of dW while it is in
// registers, so the weight is read and written once and dW is never stored).
//
// a (K, M) rows lda apart (op(A)(i, k) = a[k * lda + i]); b (K, N) rows ldb apart. Each C element
// is one FMA chain from zero over k = 0, 1, ..., K - 1: the arithmetic of the blocked path's
// micro-kernel for a product with one K block (K <= 512 / sizeof(T) floats deep), so which path
// computes an element never changes its bits. Tiles of ROWS rows of C by 2 vectors of columns
// (the last tile of a column band masked) hold ROWS x 2 accumulators; C is swept in column bands
// whose K rows of b (16 KiB) stay in L1 while every row tile of the band passes over them.
// Nothing is packed.
//
// done(r, j, acc) receives the L sums of row r, columns j.. (full vectors), done(r, j, acc, m) the
// first lanes of m only. Only explicit vector operations are used, so the bits do not depend on
// the including file's floating-point contraction flags.
#pragma once
#include <algorithm>
#include <cstdint>

#include "gemm/simd.hpp"

namespace gd {
namespace GD_NS {
namespace gemm_detail {

// Short K: the products that gemm.cpp sends to smallk_rows (ta, !tb, 2 <= K <= kSmallK).
constexpr int64_t kSmallK = 32;

// Rows of C per tile: 8 x 2 accumulators of 32 vector registers, 6 x 2 of 16 (12 independent FMA
// chains, 2 rows of b and a broadcast in 15 ymm: 4 x 2 left 8 chains for 2 FMA ports x 4 cycles
// latency, no slack).
template <class T>
constexpr int kSmallKRows = Simd<T>::MR >= 14 ? 8 : 6;

// Bytes of b per column band (K rows of the band's columns).
constexpr int64_t kSmallKBandBytes = int64_t(16) << 10;

// ROWS rows of C (a + r the first) by columns [j0, N) of b.
template <class T, int ROWS, class Done>
inline void smallk_tile_rows(int64_t K, const T* GD_RESTRICT a, int64_t lda,
                             const T* GD_RESTRICT b, int64_t ldb, int64_t j0, int64_t N,
                             const Done& done) {
    using V = Simd<T>;
    using reg = typename V::reg;
    constexpr int L = V::L;
    int64_t j = j0;
    for (; j + 2 * L <= N; j += 2 * L) {
        reg acc0[ROWS], acc1[ROWS];
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; ++r) acc0[r] = acc1[r] = V::zero();
        for (int64_t k = 0; k < K; ++k) {
            const reg b0 = V::load(b + k * ldb + j), b1 = V::load(b + k * ldb + j + L);
            const T* ak = a + k * lda;
#pragma GCC unroll 8
            for (int r = 0; r < ROWS; ++r) {
                const reg ar = V::set1(ak[r]);
                acc0[r] = V::fma(ar, b0, acc0[r]);
                acc1[r] = V::fma(ar, b1, acc1[r]);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; ++r) {
            done(r, j, acc0[r]);
            done(r, j + L, acc1[r]);
        }
    }
    for (; j < N; j += L) {  // the last N mod 2L columns, a (masked) vector at a time
        const auto m = V::first(N - j);
        reg acc[ROWS];
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; ++r) acc[r] = V::zero();
        for (int64_t k = 0; k < K; ++k) {
            const reg b0 = V::load(b + k * ldb + j, m);
            const T* ak = a + k * lda;
#pragma GCC unroll 8
            for (int r = 0; r < ROWS; ++r) acc[r] = V::fma(V::set1(ak[r]), b0, acc[r]);
        }
        for (int r = 0; r < ROWS; ++r) done(r, j, acc[r], m);
    }
}

// done with the tile's row r reported as row base + r
template <class T, class Done>
struct SmallKShift {
    const Done& d;
    int64_t base;
    void operator()(int r, int64_t j, typename Simd<T>::reg v) const { d(base + r, j, v); }
    void operator()(int r, int64_t j, typename Simd<T>::reg v, typename Simd<T>::mask m) const {
        d(base + r, j, v, m);
    }
};

// The last n < R rows of a band, from row i, in one tile of n rows.
template <class T, int R, class Done>
inline void smallk_tail(int64_t n, int64_t i, int64_t K, const T* GD_RESTRICT a, int64_t lda,
                        const T* GD_RESTRICT b, int64_t ldb, int64_t j0, int64_t j1,
                        const Done& done) {
    if constexpr (R >= 1) {
        if (n == R)
            smallk_tile_rows<T, R>(K, a + i, lda, b, ldb, j0, j1, SmallKShift<T, Done>{done, i});
        else
            smallk_tail<T, R - 1>(n, i, K, a, lda, b, ldb, j0, j1, done);
    }
}

// Rows [i0, i1) of C by columns [j0, j1): kSmallKRows rows at a time, the rest in one tile.
template <class T, class Done>
inline void smallk_band(int64_t i0, int64_t i1, int64_t K, const T* GD_RESTRICT a, int64_t lda,
                        const T* GD_RESTRICT b, int64_t ldb, int64_t j0, int64_t j1,
                        const Done& done) {
    constexpr int R = kSmallKRows<T>;
    int64_t i = i0;
    for (; i + R <= i1; i += R)
        smallk_tile_rows<T, R>(K, a + i, lda, b, ldb, j0, j1, SmallKShift<T, Done>{done, i});
    smallk_tail<T, R - 1>(i1 - i, i, K, a, lda, b, ldb, j0, j1, done);
}

// Rows [i0, i1) of C (N columns), one column band at a time; done(i, j, acc[, m]) gets C's row
// index i.
template <class T, class Done>
inline void smallk_rows(int64_t i0, int64_t i1, int64_t K, const T* GD_RESTRICT a, int64_t lda,
                        const T* GD_RESTRICT b, int64_t ldb, int64_t N, const Done& done) {
    constexpr int64_t L2 = 2 * Simd<T>::L;
    const int64_t band =
        std::max<int64_t>(L2, kSmallKBandBytes / (K * int64_t(sizeof(T))) / L2 * L2);
    for (int64_t j0 = 0; j0 < N; j0 += band)
        smallk_band(i0, i1, K, a, lda, b, ldb, j0, std::min(N, j0 + band), done);
}

}  // namespace gemm_detail
}  // namespace GD_NS
}  // namespace gd

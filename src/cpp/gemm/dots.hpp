// The dot products of a batch-1 linear layer, shared by gemm.cpp (matrix-vector products) and
// optim.cpp (the same products over rows that take a deferred SGD update as they are read).
//
// x (K), ROWS rows -> dot(row r, x) for each r, handed to done(r, sum). Each dot: four vector
// accumulators over k (k / L mod 4 picks one: a row streams 4L contiguous values per step), the
// vector steps left after the last 4L block in the first, the masked tail (K mod L columns) in
// the second, then ((s0 + s1) + (s2 + s3)) and one fixed-order horizontal sum: the same
// arithmetic for every row, however rows are grouped. A few rows at a time, each read front to
// back in long runs: measured 112 against 89 GB/s from L2 (8 rows with two accumulators) for the
// lecture net's 60 x 600 layer, 148 against 129 GB/s for 256 x 784.
//
// row(r, k) returns the L values of row r from column k, row(r, k, m) the first m of them
// (masked). Only explicit vector operations are used, so the bits do not depend on the including
// file's floating-point contraction flags.
#pragma once
#include <cstdint>

#include "gemm/simd.hpp"

namespace gd {
namespace GD_NS {
namespace gemm_detail {

template <class T, int ROWS, class Row, class Done>
inline void dots_rows(int64_t K, const T* GD_RESTRICT x, const Row& row, const Done& done) {
    using V = Simd<T>;
    using reg = typename V::reg;
    constexpr int L = V::L;
    reg s0[ROWS], s1[ROWS], s2[ROWS], s3[ROWS];
    for (int r = 0; r < ROWS; ++r) s0[r] = s1[r] = s2[r] = s3[r] = V::zero();
    int64_t k = 0;
    for (; k + 4 * L <= K; k += 4 * L) {
        const reg x0 = V::load(x + k), x1 = V::load(x + k + L), x2 = V::load(x + k + 2 * L),
                  x3 = V::load(x + k + 3 * L);
#pragma GCC unroll 4
        for (int r = 0; r < ROWS; ++r) {
            s0[r] = V::fma(row(r, k), x0, s0[r]);
            s1[r] = V::fma(row(r, k + L), x1, s1[r]);
            s2[r] = V::fma(row(r, k + 2 * L), x2, s2[r]);
            s3[r] = V::fma(row(r, k + 3 * L), x3, s3[r]);
        }
    }
    for (; k + L <= K; k += L) {
        const reg x0 = V::load(x + k);
        for (int r = 0; r < ROWS; ++r) s0[r] = V::fma(row(r, k), x0, s0[r]);
    }
    if (k < K) {  // the last K - k < L columns, masked (short rows: no scalar tail per row)
        const auto m = V::first(K - k);
        const reg x0 = V::load(x + k, m);
        for (int r = 0; r < ROWS; ++r) s1[r] = V::fma(row(r, k, m), x0, s1[r]);
    }
    const reg one = V::set1(T(1));
    for (int r = 0; r < ROWS; ++r) {  // (an FMA by 1 is exactly the sum)
        const reg lo = V::fma(s1[r], one, s0[r]), hi = V::fma(s3[r], one, s2[r]);
        done(r, V::hsum(V::fma(hi, one, lo)));
    }
}

// The rows as they are in memory, ldw values apart.
template <class T>
struct PlainRows {
    using V = Simd<T>;
    const T* GD_RESTRICT W;
    int64_t ldw;
    typename V::reg operator()(int r, int64_t k) const { return V::load(W + r * ldw + k); }
    typename V::reg operator()(int r, int64_t k, typename V::mask m) const {
        return V::load(W + r * ldw + k, m);
    }
};

// Rows per dots_rows call: 4 rows x 4 accumulators + 4 x vectors fit 32 vector registers;
// 2 rows where there are 16.
template <class T>
constexpr int kDotRows = Simd<T>::L * static_cast<int>(sizeof(T)) >= 64 ? 4 : 2;

}  // namespace gemm_detail
}  // namespace GD_NS
}  // namespace gd

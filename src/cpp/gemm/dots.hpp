// The dot products of a batch-1 linear layer, shared by gemm.cpp (matrix-vector products) and
// optim.cpp (the same products over rows that take a deferred SGD update as they are read); and
// below, the tiles of rows-by-rows products for a short batch (dots_tile).
//
// x (K), ROWS rows -> dot(row r, x) for each r, handed to done(r, sum). Each dot: four vector
// accumulators over k (k / L mod 4 picks one: a row streams 4L contiguous values per step), the
// vector steps left after the last 4L block in the first, the masked tail (K mod L columns) in
// the second, then ((s0 + s1) + (s2 + s3)) and one fixed-order horizontal sum: the same
// arithmetic for every row, however rows are grouped. A few rows at a time, each read front to
// back in long runs: faster from L2 than 8 rows with two accumulators (figures in
// docs/performance.md, "Measurements behind the kernels").
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

// Rows per dots_rows call: 4 rows x 4 accumulators + 4 x vectors fit 32 vector registers (the
// ISAs with MR >= 14: AVX-512, NEON); 2 rows where there are 16.
template <class T>
constexpr int kDotRows = Simd<T>::MR >= 14 ? 4 : 2;

// out[r] = the sum of the lanes of v[r] for r < N (v has 8 entries, those past N zero), in an
// order fixed per vector, whichever place it takes: V::hsum each.
template <class T>
struct Hsums {
    template <int N>
    static void run(const typename Simd<T>::reg* v, T* out) {
        for (int r = 0; r < N; ++r) out[r] = Simd<T>::hsum(v[r]);
    }
};
#if defined(__AVX512F__)
// For 16 floats, three rounds over all 8 vectors at once (23 vector operations instead of 8
// trips through memory): quarters 0 + 2 and 1 + 3 of each vector, then the two halves of those,
// then lanes 0 + 2 and 1 + 3 of what is left, then the last pair. Each vector's lanes meet in the
// same order wherever it sits (float addition is commutative).
template <>
struct Hsums<float> {
    template <int N>
    static void run(const __m512* v, float* out) {
        static_assert(N <= 8, "8 vectors at a time");
        __m512 s[4], t[2];
        for (int i = 0; i < 4; ++i)  // s[i] quarters: v[2i] q0+q2, q1+q3, v[2i+1] q0+q2, q1+q3
            s[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                                 _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
        for (int i = 0; i < 2; ++i)  // t[i] quarter j: 4 partial sums of v[4i + j]
            t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * i], s[2 * i + 1], 0x88),
                                 _mm512_shuffle_f32x4(s[2 * i], s[2 * i + 1], 0xDD));
        // quarter j: [v[j] 0+2, v[4+j] 0+2, v[j] 1+3, v[4+j] 1+3], then each pair of those added
        const __m512 u =
            _mm512_add_ps(_mm512_unpacklo_ps(t[0], t[1]), _mm512_unpackhi_ps(t[0], t[1]));
        const __m512 w = _mm512_add_ps(u, _mm512_permute_ps(u, 0x4E));
        alignas(64) float lanes[16];
        _mm512_store_ps(lanes, w);
        for (int r = 0; r < N; ++r)  // lane 4j holds the sum of v[j], lane 4j + 1 that of v[4 + j]
            out[r] = lanes[r < 4 ? 4 * r : 4 * (r - 4) + 1];
    }
};
#endif

// A tile of a product of rows by rows: out[c][r] = dot(a row r, b row c) over K for r < XR,
// c < WR (a and b rows lda and ldb apart, each contiguous along K). One vector accumulator per
// pair, lane l summing the k = l mod L in increasing order (the last K mod L masked), then Hsums:
// the same arithmetic for every pair, whatever tile it falls in. XR x WR accumulators, WR rows of
// b and one of a in registers; a's XR rows stay in L1 while b's rows stream past.
template <class T, int XR, int WR>
void dots_tile(int64_t K, const T* GD_RESTRICT a, int64_t lda, const T* GD_RESTRICT b,
               int64_t ldb, T (*out)[8]) {
    using V = Simd<T>;
    using reg = typename V::reg;
    constexpr int L = V::L;
    // (Hsums reads 8 vectors at a time: a tall tile keeps 8 per column, zero past XR)
    constexpr int AR = XR < WR ? XR : 8;
    reg acc[WR][AR];
#pragma GCC unroll 8
    for (int c = 0; c < WR; ++c)
        for (int r = 0; r < AR; ++r) acc[c][r] = V::zero();
    int64_t k = 0;
#pragma GCC unroll 2
    for (; k + L <= K; k += L) {
        reg w[WR];
#pragma GCC unroll 8
        for (int c = 0; c < WR; ++c) w[c] = V::load(b + c * ldb + k);
#pragma GCC unroll 8
        for (int r = 0; r < XR; ++r) {
            const reg x = V::load(a + r * lda + k);
#pragma GCC unroll 8
            for (int c = 0; c < WR; ++c) acc[c][r] = V::fma(x, w[c], acc[c][r]);
        }
    }
    if (k < K) {
        const auto m = V::first(K - k);
        reg w[WR];
        for (int c = 0; c < WR; ++c) w[c] = V::load(b + c * ldb + k, m);
        for (int r = 0; r < XR; ++r) {
            const reg x = V::load(a + r * lda + k, m);
            for (int c = 0; c < WR; ++c) acc[c][r] = V::fma(x, w[c], acc[c][r]);
        }
    }
    if constexpr (XR < WR) {
        // A wide tile (few rows of a): the horizontal sums taken across b's rows, up to 8
        // vectors per Hsums call instead of XR of 8. Hsums sums each vector's lanes in the same
        // order wherever it sits, so this changes no bit.
        for (int r = 0; r < XR; ++r) {
            reg v[8];
            alignas(64) T o[8];
            for (int c = 0; c < 8; ++c) v[c] = c < WR ? acc[c][r] : V::zero();
            Hsums<T>::template run<WR>(v, o);
            for (int c = 0; c < WR; ++c) out[c][r] = o[c];
        }
    } else {
        for (int c = 0; c < WR; ++c) Hsums<T>::template run<XR>(acc[c], out[c]);
    }
}

// Tile shape of dots_tile: 8 x 3 (24 accumulators + 3 + 1 of 32 registers); 4 x 2 where there
// are 16.
template <class T>
constexpr int kTileXR = Simd<T>::MR >= 14 ? 8 : 4;
template <class T>
constexpr int kTileWR = Simd<T>::MR >= 14 ? 3 : 2;
// Wide tiles for a batch of at most kWideXR rows (a Linear forward at batch 1 or 2 inside a
// product, e.g. the deferred update's forward): kWideXR x kWideWR, 2 x 8 (16 accumulators + 8 + 1
// of 32 registers), 2 x 4 where there are 16 (8 + 4 + 1). An 8 x 3 tile with only 2 rows of a
// loads 5 vectors for 6 FMAs (load-bound); 2 x 8 loads 10 for 16. Every pair keeps its own
// accumulator and reduction, so the tile shape changes no bit.
template <class T>
constexpr int kWideXR = 2;
template <class T>
constexpr int kWideWR = Simd<T>::MR >= 14 ? 8 : 4;

}  // namespace gemm_detail
}  // namespace GD_NS
}  // namespace gd

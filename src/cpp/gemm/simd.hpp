// Vector types for the GEMM kernels, one set per instruction set. This header is included by
// gemm.cpp and optim.cpp, which are compiled once per ISA (CMakeLists.txt): the compiler flags of
// each copy pick the AVX-512 or the AVX2+FMA branch below, GD_ISA_NEON the NEON one, and the
// baseline of every target gets the portable one.
//
// Simd<T> gives: reg (one vector of L lanes), mask (the first n lanes), load/store (unaligned,
// with optional mask: masked-off lanes are neither read nor written), set1, fma(a, b, c) = a*b + c
// with one rounding (see the portable branch for targets without a fused multiply-add), mul, sub,
// hsum (a fixed-order horizontal sum), and MR: the rows of the GEMM micro-tile for T.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.hpp"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif
#if defined(GD_ISA_NEON)
#if !defined(__aarch64__)
#error "the neon ISA is built for aarch64 only (CMakeLists.txt)"
#endif
#include <arm_neon.h>
#endif

// A software prefetch for reading; locality 3 = into L1, 2 = into L2.
#if defined(__GNUC__)
#define GD_PREFETCH(p, locality) __builtin_prefetch((p), 0, (locality))
#else
#define GD_PREFETCH(p, locality) ((void)(p))
#endif

namespace gd {
namespace GD_NS {
namespace gemm_detail {

template <class T>
struct Simd;

#if defined(__AVX512F__)

// 32 zmm registers: a 14 x 2L micro-tile keeps 28 accumulators, 2 rows of B and a broadcast
// of A in registers (31 of 32); 28 independent FMA chains cover 2 FMA ports x 4 cycles latency
// 3.5 times, and each k step loads 2 vectors + 14 broadcasts for 28 FMAs. (Measured a few % ahead
// of 12 x 2L, whose packed A rows would also leave 4 of every 16 values unused.)
template <>
struct Simd<float> {
    using T = float;
    using reg = __m512;
    using mask = __mmask16;
    static constexpr int L = 16;
    static constexpr int MR = 14;
    static reg zero() { return _mm512_setzero_ps(); }
    static reg set1(float x) { return _mm512_set1_ps(x); }
    static reg load(const float* p) { return _mm512_loadu_ps(p); }
    static reg load(const float* p, mask m) { return _mm512_maskz_loadu_ps(m, p); }
    static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
    static void store(float* p, reg v, mask m) { _mm512_mask_storeu_ps(p, m, v); }
    static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
    static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
    static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
    static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
    static reg permute2(reg a, __m512i idx, reg b) { return _mm512_permutex2var_ps(a, idx, b); }
    static mask first(int64_t n) {
        return n >= L ? mask(0xFFFF) : n <= 0 ? mask(0) : mask((1u << n) - 1u);
    }
    // Halves added lane-wise, then pairs: a fixed order. (Through memory: GCC 12 warns about
    // an uninitialised temporary inside _mm512_reduce_add_ps and the 512->256 casts.)
    // dst[k * ldd + j] = src[j * lds + k] for j, k < 16; see transpose_bits below.
    static void transpose(const float* src, int64_t lds, float* dst, int64_t ldd);
    static float hsum(reg v) {
        alignas(64) float t[16];
        _mm512_store_ps(t, v);
        const __m256 h = _mm256_add_ps(_mm256_load_ps(t), _mm256_load_ps(t + 8));
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        q = _mm_add_ss(q, _mm_movehdup_ps(q));
        return _mm_cvtss_f32(q);
    }
};

template <>
struct Simd<double> {
    using T = double;
    using reg = __m512d;
    using mask = __mmask8;
    static constexpr int L = 8;
    static constexpr int MR = 14;
    static reg zero() { return _mm512_setzero_pd(); }
    static reg set1(double x) { return _mm512_set1_pd(x); }
    static reg load(const double* p) { return _mm512_loadu_pd(p); }
    static reg load(const double* p, mask m) { return _mm512_maskz_loadu_pd(m, p); }
    static void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
    static void store(double* p, reg v, mask m) { _mm512_mask_storeu_pd(p, m, v); }
    static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
    static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
    static reg sub(reg a, reg b) { return _mm512_sub_pd(a, b); }
    static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
    static reg permute2(reg a, __m512i idx, reg b) { return _mm512_permutex2var_pd(a, idx, b); }
    static mask first(int64_t n) {
        return n >= L ? mask(0xFF) : n <= 0 ? mask(0) : mask((1u << n) - 1u);
    }
    static void transpose(const double* src, int64_t lds, double* dst, int64_t ldd);
    static double hsum(reg v) {
        alignas(64) double t[8];
        _mm512_store_pd(t, v);
        const __m256d h = _mm256_add_pd(_mm256_load_pd(t), _mm256_load_pd(t + 4));
        const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
        return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
    }
};

// An L x L transpose in registers: for each bit b of the row index, rows i and i + b swap the
// lanes whose index has bit b set (vpermt2ps/pd), which exchanges bit b of the row and of the
// lane index; after all bits, element (j, k) sits at (k, j).
// kPermIdx<L>.v[s][h][k]: the two-source lane selectors for b = L/2 >> s, h = 0 for row i, 1 for
// row i + b (a selector >= L takes lane selector - L of the second source).
template <int L, class I>
struct PermIdx {
    alignas(64) I v[5][2][L];
};
template <int L, class I>
constexpr PermIdx<L, I> make_perm_idx() {
    PermIdx<L, I> p{};
    int s = 0;
    for (int b = L / 2; b >= 1; b /= 2, ++s)
        for (int k = 0; k < L; ++k) {
            p.v[s][0][k] = static_cast<I>((k & b) ? L + k - b : k);
            p.v[s][1][k] = static_cast<I>((k & b) ? L + k : k + b);
        }
    return p;
}

template <class V, class I>
inline void transpose_bits(const typename V::T* src, int64_t lds, typename V::T* dst, int64_t ldd) {
    constexpr int L = V::L;
    static constexpr PermIdx<L, I> idx = make_perm_idx<L, I>();
    typename V::reg r[L];
#pragma GCC unroll 16
    for (int j = 0; j < L; ++j) r[j] = V::load(src + j * lds);
    int s = 0;
#pragma GCC unroll 4
    for (int b = L / 2; b >= 1; b /= 2, ++s) {
        const __m512i lo = _mm512_load_si512(idx.v[s][0]), hi = _mm512_load_si512(idx.v[s][1]);
#pragma GCC unroll 16
        for (int i = 0; i < L; ++i) {
            if (i & b) continue;
            const typename V::reg x = r[i], y = r[i + b];
            r[i] = V::permute2(x, lo, y);
            r[i + b] = V::permute2(x, hi, y);
        }
    }
#pragma GCC unroll 16
    for (int k = 0; k < L; ++k) V::store(dst + k * ldd, r[k]);
}

inline void Simd<float>::transpose(const float* src, int64_t lds, float* dst, int64_t ldd) {
    transpose_bits<Simd<float>, int32_t>(src, lds, dst, ldd);
}

inline void Simd<double>::transpose(const double* src, int64_t lds, double* dst, int64_t ldd) {
    transpose_bits<Simd<double>, int64_t>(src, lds, dst, ldd);
}

#elif defined(__AVX2__) && defined(__FMA__)

// 16 ymm registers: a 6 x 2L micro-tile keeps 12 accumulators, 2 rows of B and a broadcast.
template <>
struct Simd<float> {
    using reg = __m256;
    using mask = __m256i;
    static constexpr int L = 8;
    static constexpr int MR = 6;
    static reg zero() { return _mm256_setzero_ps(); }
    static reg set1(float x) { return _mm256_set1_ps(x); }
    static reg load(const float* p) { return _mm256_loadu_ps(p); }
    static reg load(const float* p, mask m) { return _mm256_maskload_ps(p, m); }
    static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
    static void store(float* p, reg v, mask m) { _mm256_maskstore_ps(p, m, v); }
    static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
    static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
    static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
    static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
    static mask first(int64_t n) {
        const int c = n >= L ? L : n <= 0 ? 0 : static_cast<int>(n);
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    // dst[k * ldd + j] = src[j * lds + k] for j, k < 8 (the usual unpack/shuffle/permute steps)
    static void transpose(const float* src, int64_t lds, float* dst, int64_t ldd) {
        __m256 r[8], t[8];
        for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(src + j * lds);
        for (int j = 0; j < 8; j += 2) {
            t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
            t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
        }
        for (int j = 0; j < 8; j += 4) {
            r[j] = _mm256_shuffle_ps(t[j], t[j + 2], 0x44);
            r[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], 0xEE);
            r[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0x44);
            r[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0xEE);
        }
        for (int j = 0; j < 4; ++j) {
            _mm256_storeu_ps(dst + j * ldd, _mm256_permute2f128_ps(r[j], r[j + 4], 0x20));
            _mm256_storeu_ps(dst + (j + 4) * ldd, _mm256_permute2f128_ps(r[j], r[j + 4], 0x31));
        }
    }
    static float hsum(reg v) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
    }
};

template <>
struct Simd<double> {
    using reg = __m256d;
    using mask = __m256i;
    static constexpr int L = 4;
    static constexpr int MR = 6;
    static reg zero() { return _mm256_setzero_pd(); }
    static reg set1(double x) { return _mm256_set1_pd(x); }
    static reg load(const double* p) { return _mm256_loadu_pd(p); }
    static reg load(const double* p, mask m) { return _mm256_maskload_pd(p, m); }
    static void store(double* p, reg v) { _mm256_storeu_pd(p, v); }
    static void store(double* p, reg v, mask m) { _mm256_maskstore_pd(p, m, v); }
    static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
    static reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
    static reg sub(reg a, reg b) { return _mm256_sub_pd(a, b); }
    static reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
    static mask first(int64_t n) {
        const int64_t c = n >= L ? L : n <= 0 ? 0 : n;
        return _mm256_cmpgt_epi64(_mm256_set1_epi64x(c), _mm256_setr_epi64x(0, 1, 2, 3));
    }
    static void transpose(const double* src, int64_t lds, double* dst, int64_t ldd) {
        const __m256d r0 = _mm256_loadu_pd(src), r1 = _mm256_loadu_pd(src + lds);
        const __m256d r2 = _mm256_loadu_pd(src + 2 * lds), r3 = _mm256_loadu_pd(src + 3 * lds);
        const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
        const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
        _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t0, t2, 0x20));
        _mm256_storeu_pd(dst + ldd, _mm256_permute2f128_pd(t1, t3, 0x20));
        _mm256_storeu_pd(dst + 2 * ldd, _mm256_permute2f128_pd(t0, t2, 0x31));
        _mm256_storeu_pd(dst + 3 * ldd, _mm256_permute2f128_pd(t1, t3, 0x31));
    }
    static double hsum(reg v) {
        __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
        return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    }
};

#elif defined(GD_ISA_NEON)

// AArch64 Advanced SIMD: 32 q registers of 4 floats or 2 doubles. A 14 x 2L micro-tile keeps 28
// accumulators, 2 rows of B and a broadcast of A (31 of 32), as on AVX-512. fma is vfmaq (FMLA,
// one rounding); masked loads and stores go lane by lane through a small array, so masked-off
// elements are neither read nor written.
template <>
struct Simd<float> {
    using T = float;
    using reg = float32x4_t;
    using mask = int64_t;  // the number of valid lanes
    static constexpr int L = 4;
    static constexpr int MR = 14;
    static reg zero() { return vdupq_n_f32(0.0f); }
    static reg set1(float x) { return vdupq_n_f32(x); }
    static reg load(const float* p) { return vld1q_f32(p); }
    static reg load(const float* p, mask m) {
        float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int64_t i = 0; i < m; ++i) t[i] = p[i];
        return vld1q_f32(t);
    }
    static void store(float* p, reg v) { vst1q_f32(p, v); }
    static void store(float* p, reg v, mask m) {
        float t[4];
        vst1q_f32(t, v);
        for (int64_t i = 0; i < m; ++i) p[i] = t[i];
    }
    static reg fma(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }
    static reg mul(reg a, reg b) { return vmulq_f32(a, b); }
    static reg sub(reg a, reg b) { return vsubq_f32(a, b); }
    static reg add(reg a, reg b) { return vaddq_f32(a, b); }
    static mask first(int64_t n) { return n >= L ? L : n <= 0 ? 0 : n; }
    // dst[k * ldd + j] = src[j * lds + k] for j, k < 4: lanes transposed in pairs (TRN1/TRN2 of
    // 32-bit lanes), then the pairs (TRN1/TRN2 of 64-bit lanes)
    static void transpose(const float* src, int64_t lds, float* dst, int64_t ldd) {
        const reg r0 = vld1q_f32(src), r1 = vld1q_f32(src + lds);
        const reg r2 = vld1q_f32(src + 2 * lds), r3 = vld1q_f32(src + 3 * lds);
        const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1));
        const float64x2_t t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));
        const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3));
        const float64x2_t t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
        vst1q_f32(dst, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
        vst1q_f32(dst + ldd, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
        vst1q_f32(dst + 2 * ldd, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
        vst1q_f32(dst + 3 * ldd, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
    }
    // halves added lane-wise, then the pair: (v0 + v2) + (v1 + v3)
    static float hsum(reg v) {
        const float32x2_t h = vadd_f32(vget_low_f32(v), vget_high_f32(v));
        return vget_lane_f32(h, 0) + vget_lane_f32(h, 1);
    }
};

template <>
struct Simd<double> {
    using T = double;
    using reg = float64x2_t;
    using mask = int64_t;
    static constexpr int L = 2;
    static constexpr int MR = 14;
    static reg zero() { return vdupq_n_f64(0.0); }
    static reg set1(double x) { return vdupq_n_f64(x); }
    static reg load(const double* p) { return vld1q_f64(p); }
    static reg load(const double* p, mask m) {
        double t[2] = {0.0, 0.0};
        for (int64_t i = 0; i < m; ++i) t[i] = p[i];
        return vld1q_f64(t);
    }
    static void store(double* p, reg v) { vst1q_f64(p, v); }
    static void store(double* p, reg v, mask m) {
        double t[2];
        vst1q_f64(t, v);
        for (int64_t i = 0; i < m; ++i) p[i] = t[i];
    }
    static reg fma(reg a, reg b, reg c) { return vfmaq_f64(c, a, b); }
    static reg mul(reg a, reg b) { return vmulq_f64(a, b); }
    static reg sub(reg a, reg b) { return vsubq_f64(a, b); }
    static reg add(reg a, reg b) { return vaddq_f64(a, b); }
    static mask first(int64_t n) { return n >= L ? L : n <= 0 ? 0 : n; }
    static void transpose(const double* src, int64_t lds, double* dst, int64_t ldd) {
        const reg r0 = vld1q_f64(src), r1 = vld1q_f64(src + lds);
        vst1q_f64(dst, vzip1q_f64(r0, r1));
        vst1q_f64(dst + ldd, vzip2q_f64(r0, r1));
    }
    static double hsum(reg v) { return vgetq_lane_f64(v, 0) + vgetq_lane_f64(v, 1); }
};

#else

// Portable: a 16-byte vector of plain lanes (SSE2 on baseline x86-64, NEON on a baseline aarch64
// build, through the compiler's vector extension). 6 x 2L tile: 12 accumulators in 16 registers.
// fma is gd::madd per lane (common.hpp): fused, one rounding, where the target has a fused
// multiply-add instruction (aarch64), else a multiply then an add (baseline x86-64, where a
// software fma would make the portable GEMM many times slower).
template <class T>
struct Simd {
    static constexpr int L = 16 / static_cast<int>(sizeof(T));
    static constexpr int MR = 6;
#if defined(__GNUC__)
    typedef T reg __attribute__((vector_size(16)));
#else
    struct reg {
        T v[L];
        T& operator[](int i) { return v[i]; }
        T operator[](int i) const { return v[i]; }
    };
#endif
    using mask = int64_t;  // the number of valid lanes
    static reg zero() {
        reg r;
        for (int i = 0; i < L; ++i) r[i] = T(0);
        return r;
    }
    static reg set1(T x) {
#if defined(__GNUC__)
        // an initializer list, which GCC turns into one shuffle (a lane-by-lane loop became a
        // chain of inserts in the micro-kernel's inner loop)
        if constexpr (L == 4) {
            return reg{x, x, x, x};
        } else {
            static_assert(L == 2, "16-byte vectors of float or double");
            return reg{x, x};
        }
#else
        reg r;
        for (int i = 0; i < L; ++i) r[i] = x;
        return r;
#endif
    }
    static reg load(const T* p) {
        reg r;
        std::memcpy(&r, p, sizeof(r));
        return r;
    }
    static reg load(const T* p, mask m) {
        reg r = zero();
        for (int i = 0; i < m; ++i) r[i] = p[i];
        return r;
    }
    static void store(T* p, reg v) { std::memcpy(p, &v, sizeof(v)); }
    static void store(T* p, reg v, mask m) {
        for (int i = 0; i < m; ++i) p[i] = v[i];
    }
    static reg fma(reg a, reg b, reg c) {
#if defined(__GNUC__) && !GD_FAST_FMA
        return a * b + c;  // the same as madd per lane, in one vector expression
#else
        reg r;
        for (int i = 0; i < L; ++i) r[i] = madd(a[i], b[i], c[i]);
        return r;
#endif
    }
#if defined(__GNUC__)
    static reg mul(reg a, reg b) { return a * b; }
    static reg sub(reg a, reg b) { return a - b; }
    static reg add(reg a, reg b) { return a + b; }
#else
    static reg mul(reg a, reg b) {
        reg r;
        for (int i = 0; i < L; ++i) r[i] = a[i] * b[i];
        return r;
    }
    static reg sub(reg a, reg b) {
        reg r;
        for (int i = 0; i < L; ++i) r[i] = a[i] - b[i];
        return r;
    }
    static reg add(reg a, reg b) {
        reg r;
        for (int i = 0; i < L; ++i) r[i] = a[i] + b[i];
        return r;
    }
#endif
    static mask first(int64_t n) { return n >= L ? L : n <= 0 ? 0 : n; }
    static void transpose(const T* src, int64_t lds, T* dst, int64_t ldd) {
        for (int k = 0; k < L; ++k)
            for (int j = 0; j < L; ++j) dst[k * ldd + j] = src[j * lds + k];
    }
    static T hsum(reg v) {
        T s = v[0];
        for (int i = 1; i < L; ++i) s += v[i];
        return s;
    }
};

#endif

}  // namespace gemm_detail
}  // namespace GD_NS
}  // namespace gd

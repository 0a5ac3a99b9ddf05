// Transcendental functions for the elementwise kernels: exp, log, log1p, tanh, sigmoid, and gelu
// with its derivative (the normal CDF, 0.5 (1 + erf(x / sqrt 2))), in float and double, written so that
//  - a `#pragma omp simd` loop over them vectorises (no branches, no calls, no tables: selects,
//    integer operations on the representation, + - * / only), and
//  - every ISA's build gives the same bits: only IEEE basic operations, each rounded on its own
//    (the kernels are compiled with -ffp-contract=off, CMakeLists.txt), no libm.
// Accuracy over the whole domain (tests/test_vmath.py and tests/cpp/kernel_test.cpp assert it;
// docs/performance-vmath.md lists the measured maxima): within 1.5 ulp of the exact result for
// exp, log, log1p, tanh and sigmoid in float and double; gelu within 1 ulp in float (computed in
// double) and 7 ulp in double.
// Special values are C's: NaN in, NaN out (the input's payload, made quiet); exp overflows to +inf
// and underflows through the denormals to +0; log(+-0) = -inf, log(x < 0) = NaN, log(+inf) = inf;
// log1p(-1) = -inf, log1p(-0) = -0; tanh(+-inf) = +-1, tanh(-0) = -0.
// The polynomial coefficients are least-squares fits on Chebyshev nodes (mpmath, 60 digits) of
// the functions named beside them; any other set of the same accuracy would do.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>

#include "common.hpp"

namespace gd {
namespace GD_NS {
namespace vm {

inline uint32_t to_bits(float x) { uint32_t u; std::memcpy(&u, &x, sizeof u); return u; }
inline uint64_t to_bits(double x) { uint64_t u; std::memcpy(&u, &x, sizeof u); return u; }
inline float from_bits(uint32_t u) { float x; std::memcpy(&x, &u, sizeof x); return x; }
inline double from_bits(uint64_t u) { double x; std::memcpy(&x, &u, sizeof x); return x; }

// |x| and copysign by the sign bit (exact, NaN payloads kept)
inline float abs_bits(float x) { return from_bits(to_bits(x) & 0x7fffffffu); }
inline double abs_bits(double x) { return from_bits(to_bits(x) & uint64_t(0x7fffffffffffffff)); }
inline float with_sign_of(float m, float s) {
    return from_bits(to_bits(m) | (to_bits(s) & 0x80000000u));
}
inline double with_sign_of(double m, double s) {
    return from_bits(to_bits(m) | (to_bits(s) & uint64_t(0x8000000000000000)));
}

template <class T> struct Consts;
template <> struct Consts<float> {
    static constexpr float round = 12582912.0f;                  // 1.5 * 2^23: x + round rounds x
    static constexpr float log2e = 1.44269502f;
    static constexpr float ln2_hi = 0.693145751953125f;          // 15 bits: k ln2_hi is exact
    static constexpr float ln2_lo = 1.42860677e-06f;             // ln 2 - ln2_hi
    static constexpr float exp_hi = 88.8f;                       // e^x = inf above ln(max) ~ 88.72
    static constexpr float exp_lo = -104.0f;                     // e^x rounds to 0 below -103.97
    static constexpr float sqrt2 = 1.41421354f;
    static constexpr float tanh_poly_max = 0.625f;
    static constexpr float tanh_exp_max = 19.0f;                 // 2 / (e^19 + 1) < 2^-25
};
template <> struct Consts<double> {
    static constexpr double round = 6755399441055744.0;          // 1.5 * 2^52
    static constexpr double log2e = 1.4426950408889634;
    static constexpr double ln2_hi = 0.693147180369123816490;    // 32 bits: k ln2_hi is exact
    static constexpr double ln2_lo = 1.90821492927058770002e-10; // ln 2 - ln2_hi
    static constexpr double exp_hi = 710.0;                      // above ln(max) ~ 709.78
    static constexpr double exp_lo = -746.0;                     // e^x rounds to 0 below -745.13
    static constexpr double sqrt2 = 1.4142135623730951;
    static constexpr double tanh_poly_max = 0.625;
    static constexpr double tanh_exp_max = 40.0;                 // 2 / (e^40 + 1) < 2^-54
};

// 2^k for an integer-valued k in [-1100, 1100] (double) / [-160, 160] (float), as the product
// s1 * s2 of two normal powers of two (each exponent is half of k's): x * s1 is exact for the x
// in [0.5, 2] it is used on, so x * s1 * s2 rounds once, also when the result is denormal.
inline void pow2_split(float k, float& s1, float& s2) {
    const float t = k * 0.5f + Consts<float>::round;  // round(k / 2) in the low bits
    const float k1 = t - Consts<float>::round;
    const float u = (k - k1) + Consts<float>::round;
    s1 = from_bits((to_bits(t) + 127u) << 23);
    s2 = from_bits((to_bits(u) + 127u) << 23);
}
inline void pow2_split(double k, double& s1, double& s2) {
    const double t = k * 0.5 + Consts<double>::round;
    const double k1 = t - Consts<double>::round;
    const double u = (k - k1) + Consts<double>::round;
    s1 = from_bits((to_bits(t) + uint64_t(1023)) << 52);
    s2 = from_bits((to_bits(u) + uint64_t(1023)) << 52);
}

// e^r - 1 - r = r^2 q(r) on |r| <= ln(2) / 2 (fit of (e^r - 1 - r) / r^2)
inline float expm1_poly(float r) {
    const float q = 0.500000001f + r * (0.166666665f + r * (0.0416664653f + r * (0.00833337321f +
                    r * (0.00139336260f + r * 0.000198495267f))));
    return r + r * r * q;
}
inline double expm1_poly(double r) {
    const double q = 0.5 + r * (0.16666666666666671 + r * (0.041666666666666609 +
                     r * (0.0083333333333261445 + r * (0.0013888888888922743 +
                     r * (0.00019841269874804537 + r * (2.4801587234688484e-05 +
                     r * (2.7557255405271434e-06 + r * (2.7557360039215128e-07 +
                     r * (2.5105219862741798e-08 + r * 2.0885937381824053e-09)))))))));
    return r + r * r * q;
}

// e^(x + lo) with lo a small correction (|lo| < 2^-20 |x| or so), NaN and the infinities as
// exp. x = k ln2 + r, |r| <= ln(2) / 2 (Cody and Waite: k ln2_hi exact), e^r by a polynomial,
// times 2^k.
template <class T>
inline T exp_lo(T x, T lo) {
    using C = Consts<T>;
    T xc = x > C::exp_hi ? C::exp_hi : x;  // (NaN stays NaN: both comparisons are false)
    xc = xc < C::exp_lo ? C::exp_lo : xc;
    const T k = (xc * C::log2e + C::round) - C::round;
    const T r = ((xc - k * C::ln2_hi) + lo) - k * C::ln2_lo;
    T s1, s2;
    pow2_split(k, s1, s2);
    const T y = (T(1) + expm1_poly(r)) * s1 * s2;
    return x != x ? x + x : y;
}
template <class T> inline T exp(T x) { return exp_lo(x, T(0)); }

// log(1 + f) for f in [sqrt(1/2) - 1, sqrt(2) - 1]: s = f / (2 + f), log(1 + f) = 2 atanh(s)
// = 2 s + s R(s^2) = f - s (f - R(s^2)), R(z) = z P(z) (fit of (2 atanh(s) / s - 2) / z)
inline float log1p_kernel(float f) {
    const float s = f / (2.0f + f);
    const float z = s * s;
    const float R = z * (0.666666666f + z * (0.400001220f + z * (0.285507952f +
                    z * 0.233312399f)));
    return f - s * (f - R);
}
inline double log1p_kernel(double f) {
    const double s = f / (2.0 + f);
    const double z = s * s;
    const double R = z * (0.66666666666666696 + z * (0.39999999999899061 +
                     z * (0.28571428626186746 + z * (0.22222211099110173 +
                     z * (0.18182891794864686 + z * (0.15331630977520247 +
                     z * 0.14617589150677499))))));
    return f - s * (f - R);
}

// x = 2^e m, m in [sqrt(1/2), sqrt(2)), for a positive finite x (denormals scaled up first);
// returns m and sets e (an integer-valued float)
inline float split_exponent(float x, float& e) {
    const bool tiny = x < 1.17549435e-38f;
    const float xs = tiny ? x * 8388608.0f : x;  // * 2^23
    const uint32_t b = to_bits(xs);
    float m = from_bits((b & 0x007fffffu) | 0x3f800000u);  // [1, 2)
    // the biased exponent as a float: the exponent bits placed in the mantissa of 2^23
    float eb = from_bits((b >> 23) | 0x4b000000u) - 8388608.0f;
    const bool big = m > Consts<float>::sqrt2;
    m = big ? m * 0.5f : m;
    e = (eb - (tiny ? 150.0f : 127.0f)) + (big ? 1.0f : 0.0f);
    return m;
}
inline double split_exponent(double x, double& e) {
    const bool tiny = x < 2.2250738585072014e-308;
    const double xs = tiny ? x * 4503599627370496.0 : x;  // * 2^52
    const uint64_t b = to_bits(xs);
    double m = from_bits((b & uint64_t(0x000fffffffffffff)) | uint64_t(0x3ff0000000000000));
    double eb = from_bits((b >> 52) | uint64_t(0x4330000000000000)) - 4503599627370496.0;
    const bool big = m > Consts<double>::sqrt2;
    m = big ? m * 0.5 : m;
    e = (eb - (tiny ? 1075.0 : 1023.0)) + (big ? 1.0 : 0.0);
    return m;
}

// log(x) = e ln2 + log(1 + f), x = 2^e (1 + f)
template <class T>
inline T log(T x) {
    using C = Consts<T>;
    constexpr T inf = std::numeric_limits<T>::infinity();
    T e;
    const T m = split_exponent(x, e);
    const T y = e * C::ln2_hi + (log1p_kernel(m - T(1)) + e * C::ln2_lo);
    // +-0: -inf; < 0: NaN; +inf: inf; NaN: itself
    const T special = x != x ? x + x
                      : (x == T(0) ? -inf : (x < T(0) ? std::numeric_limits<T>::quiet_NaN() : x));
    return (x > T(0) && x < inf) ? y : special;
}

// log(1 + x): u = 1 + x rounded, c = (1 + x) - u exactly (or negligibly for a large x), and
// log(1 + x) = log(u) + c / u. The -0 and the denormals come back as they are.
template <class T>
inline T log1p(T x) {
    using C = Consts<T>;
    constexpr T inf = std::numeric_limits<T>::infinity();
    const T u = T(1) + x;
    const T c = x > T(1) ? (T(1) - (u - x)) : (x - (u - T(1)));
    T e;
    const T m = split_exponent(u, e);
    const T y = e * C::ln2_hi + (log1p_kernel(m - T(1)) + (e * C::ln2_lo + c / u));
    const T special = x != x ? x + x
                      : (x == T(-1) ? -inf : (x < T(-1) ? std::numeric_limits<T>::quiet_NaN() : x));
    const bool ordinary = x > T(-1) && x < inf && x != T(0);
    return ordinary ? y : special;
}

// tanh(x) = x + x^3 P(x^2) for |x| < 0.625 (fit of (tanh(x) - x) / x^3), else
// 1 - 2 / (e^(2|x|) + 1) with x's sign (e^(2|x|) = inf gives exactly 1)
inline float tanh_poly(float x) {
    const float z = x * x;
    const float p = -0.333333332f + z * (0.133333028f + z * (-0.0539591154f +
                    z * (0.0217678981f + z * (-0.00834098758f + z * 0.00228973795f))));
    return x + x * z * p;
}
inline double tanh_poly(double x) {
    const double z = x * x;
    const double p = -0.33333333333333331 + z * (0.13333333333333319 +
                     z * (-0.053968253968235444 + z * (0.021869488535111611 +
                     z * (-0.0088632354992724555 + z * (0.0035921274999376127 +
                     z * (-0.001455828329507479 + z * (0.00058998139069606778 +
                     z * (-0.00023888773094406381 + z * (9.6036517890899206e-05 +
                     z * (-3.7073333140788727e-05 + z * (1.2202402487862333e-05 +
                     z * -2.4356331709032021e-06)))))))))));
    return x + x * z * p;
}
// 2^k for an integer-valued k in [0, 60]: one normal power of two
inline float pow2_small(float k) {
    return from_bits((to_bits(k + Consts<float>::round) + 127u) << 23);
}
inline double pow2_small(double k) {
    return from_bits((to_bits(k + Consts<double>::round) + uint64_t(1023)) << 52);
}

// e^(2a) is exp's value for 2a up to tanh_exp_max (then 2^k is one normal power of two, and
// (1 + p) 2^k is exact as exp's (1 + p) s1 s2 is); 2a is clamped there, where 1 - 2 / (e + 1)
// already rounds to 1, as it does for every larger a (and for a NaN, which the select replaces).
template <class T>
inline T tanh(T x) {
    using C = Consts<T>;
    const T a = abs_bits(x);
    T a2 = a + a;
    a2 = a2 < C::tanh_exp_max ? a2 : C::tanh_exp_max;
    const T k = (a2 * C::log2e + C::round) - C::round;
    const T r = (a2 - k * C::ln2_hi) - k * C::ln2_lo;
    const T e = (T(1) + expm1_poly(r)) * pow2_small(k);
    const T big = T(1) - T(2) / (e + T(1));
    const T y = a < Consts<T>::tanh_poly_max ? tanh_poly(a) : big;
    return x != x ? x + x : with_sign_of(y, x);
}

// 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) for x < 0 (e^-|x| never overflows), each rounded
// about once: e^-|x| = (E + lo) 2^k with E = 1 + p rounded and lo its rounding error, 1 + e^-|x|
// = D + Dlo likewise, and the quotient q of the rounded parts is corrected by the low parts
// (q (1 + lo / E - Dlo / D)).
template <class T>
inline T sigmoid(T x) {
    using C = Consts<T>;
    const T a = -abs_bits(x);
    const T ac = a < C::exp_lo ? C::exp_lo : a;  // (NaN stays NaN)
    const T k = (ac * C::log2e + C::round) - C::round;
    const T r = (ac - k * C::ln2_hi) - k * C::ln2_lo;
    T s1, s2;
    pow2_split(k, s1, s2);
    const T p = expm1_poly(r);
    const T E = T(1) + p;
    const T lo = p - (E - T(1));
    const T eh = E * s1 * s2, el = lo * s1 * s2;
    const T D = T(1) + eh;
    const T Dlo = (eh - (D - T(1))) + el;
    const bool neg = x < T(0);
    const T q = (neg ? eh : T(1)) / D;
    const T y = q + q * ((neg ? lo / E : T(0)) - Dlo / D);
    return x != x ? x + x : y;
}

// e^(-x^2 / 2) for the normal distribution, accurate for a large |x| too: x = xh + xl with xh
// of 26 bits, so xh^2 is exact and x^2 = xh^2 + xl (x + xh) enters exp as a high and a low part
// (x^2 rounded first would cost up to x^2 / 2 ulp). |x| >= 40 gives 0 (NaN gives 0 as well: the
// callers propagate NaN through x).
inline double exp_neg_half_square(double x) {
    const double xa0 = abs_bits(x);
    const double xa = xa0 < 40.0 ? xa0 : 40.0;
    const double xh = from_bits(to_bits(xa) & uint64_t(0xfffffffff8000000));
    const double xl = xa - xh;
    return exp_lo(-0.5 * (xh * xh), -0.5 * (xl * (xa + xh)));
}

// erf(a) / a for 0 <= a <= 0.75, in z = a^2 (fit of erf(sqrt z) / sqrt z)
inline double erf_over_x(double z) {
    double p = 1.1462318375818699e-08;
    p = -1.5937193339560563e-07 + z * p;
    p = 1.6430339359500639e-06 + z * p;
    p = -1.492417338581493e-05 + z * p;
    p = 0.00012055288646376664 + z * p;
    p = -0.0008548326165829798 + z * p;
    p = 0.0052239776150727526 + z * p;
    p = -0.026866170644398151 + z * p;
    p = 0.11283791670952462 + z * p;
    p = -0.37612638903183715 + z * p;
    p = 1.1283791670955126 + z * p;
    return p;
}

// erfcx(a) = e^(a^2) erfc(a) for a >= 0.75: t h(s) with t = 2 / (2 + a) (a = +inf is t = 0)
// and h a polynomial in s = (t - 0.3975...) / 0.3297..., s in [-1, 1] for a up to 27.5 (fit of
// erfcx(2 / t - 2) / t, which stays within [0.30, 0.70]; beyond 27.5 erfc is 0 in double)
inline double erfcx_large(double a) {
    const double t = 2.0 / (2.0 + a);
    const double s = (t - 0.39753466872110937) * (1.0 / 0.32973805855161786);
    double p = -6.628463237628331e-12;
    p = 1.374650324351335e-11 + s * p;
    p = 5.0554172500039812e-11 + s * p;
    p = -1.8738218256901786e-10 + s * p;
    p = -3.1124624730569302e-11 + s * p;
    p = 1.258018372731669e-09 + s * p;
    p = -2.1598129079099294e-09 + s * p;
    p = -4.4179303243211237e-09 + s * p;
    p = 2.3501400312700422e-08 + s * p;
    p = -8.990807191137389e-09 + s * p;
    p = -1.6666289699233312e-07 + s * p;
    p = 3.2809754429208954e-07 + s * p;
    p = 9.7007396655277629e-07 + s * p;
    p = -4.1143146839924115e-06 + s * p;
    p = -5.4454346345528894e-06 + s * p;
    p = 4.6425258056723339e-05 + s * p;
    p = 4.9025376448139607e-05 + s * p;
    p = -0.00057647115773137088 + s * p;
    p = -0.0012535578653837033 + s * p;
    p = 0.0072974433014668869 + s * p;
    p = 0.054859205455347032 + s * p;
    p = 0.19055048625470519 + s * p;
    p = 0.44607513174083624 + s * p;
    return t * p;
}

// The standard normal CDF Phi(x) = (1 + erf(x / sqrt 2)) / 2 given e = e^(-x^2 / 2), in double:
// |x| / sqrt 2 < 0.75: 1/2 +- erf / 2; beyond, erfc = e erfcx by the above, Phi = erfc / 2 for
// x < 0 (no cancellation: Phi(-30) is a denormal with its digits) and 1 - erfc / 2 for x > 0.
inline double normal_cdf(double x, double e) {
    const double a = abs_bits(x) * 0.70710678118654752440;
    const double E = a * erf_over_x(a * a);
    const double C = e * erfcx_large(a);
    const bool pos = x >= 0.0;
    const double small = 0.5 + (pos ? 0.5 * E : -0.5 * E);
    const double large = pos ? 1.0 - 0.5 * C : 0.5 * C;
    return a < 0.75 ? small : large;
}

// gelu(x) = x Phi(x) and its derivative Phi(x) + x phi(x), computed in double for float too
// (rounded once at the end). For x < 0 beyond the polynomial the product is formed as
// ((x / 2) e) erfcx, so that no intermediate is a denormal unless gelu(x) is. Special values as
// the formula: gelu(-inf) = -inf * 0 = NaN.
template <class T>
inline T gelu(T x) {
    const double xd = double(x);
    const double e = exp_neg_half_square(xd);
    const double a = abs_bits(xd) * 0.70710678118654752440;
    const double E = a * erf_over_x(a * a);
    const double g = erfcx_large(a);
    const bool pos = xd >= 0.0;
    const double small = xd * (0.5 + (pos ? 0.5 * E : -0.5 * E));
    const double large = pos ? xd * (1.0 - 0.5 * (e * g)) : ((0.5 * xd) * e) * g;
    return x != x ? x + x : T(a < 0.75 ? small : large);
}
template <class T>
inline T gelu_grad(T x) {
    const double xd = double(x);
    const double e = exp_neg_half_square(xd);
    const double d = normal_cdf(xd, e) + xd * (0.39894228040143267794 * e);
    return x != x ? x + x : T(d);
}

}  // namespace vm
}  // namespace GD_NS
}  // namespace gd

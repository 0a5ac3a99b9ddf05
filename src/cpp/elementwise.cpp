// Elementwise arithmetic over broadcast, strided operands (shape legend in elementwise.hpp).
// Each op is a scalar formula (a struct below); one generic walk applies it: dims of size 1 are
// dropped and neighbouring dims that every operand steps through as one are merged, then the
// innermost dim is a row handed to a loop specialised for its layout (output contiguous and each
// input contiguous or constant along the row: `omp simd`, the compiler vectorises; anything else:
// a plain strided loop). Rows are cut into fixed chunks of elements (bounds depend on the shape
// only) and chunks spread over threads; every element is computed alone, so any thread count
// gives the same bits.
// + - * / maximum minimum neg abs square reciprocal sign clamp where round exactly as NumPy does
// (IEEE, no contraction possible), and so do sqrt and rsqrt (sqrt is an IEEE basic operation);
// exp log log1p are vmath.hpp's (the same bits on every ISA, vectorised); sin cos pow call the C++
// library in T.
#include "elementwise.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "activation.hpp"
#include "fuse_kernel.hpp"
#include "parallel.hpp"
#include "vmath.hpp"

namespace gd {
namespace GD_NS {
namespace {

constexpr int64_t kChunk = 1 << 14;  // elements per parallel chunk

// Every formula takes three inputs (a, b, c) and ignores those beyond its arity.
// NumPy's maximum/minimum: a NaN in a wins, then a NaN in b, and on ties (+0, -0) b.
// (written as two selects: GCC vectorises this form, not the nested one)
template <class T> inline T max_nan(T a, T b) {
    const T m = a > b ? a : b;
    return a != a ? a : m;
}
template <class T> inline T min_nan(T a, T b) {
    const T m = a < b ? a : b;
    return a != a ? a : m;
}

#define GD_EW_OP(Name, Arity, expr)                                   \
    struct Name {                                                     \
        static constexpr int arity = Arity;                           \
        static constexpr bool cond = false;                           \
        static constexpr bool bool_out = false;                       \
        template <class T> static T f(T a, T b, T c) {                \
            (void)a; (void)b; (void)c;                                \
            return expr;                                              \
        }                                                             \
    };

GD_EW_OP(Add, 2, a + b)
GD_EW_OP(Sub, 2, a - b)
GD_EW_OP(Mul, 2, a * b)
GD_EW_OP(Div, 2, a / b)
GD_EW_OP(Pow, 2, std::pow(a, b))
GD_EW_OP(Maximum, 2, max_nan(a, b))
GD_EW_OP(Minimum, 2, min_nan(a, b))
GD_EW_OP(Neg, 1, -a)
GD_EW_OP(Abs, 1, std::fabs(a))
GD_EW_OP(Exp, 1, vm::exp(a))
GD_EW_OP(Log, 1, vm::log(a))
GD_EW_OP(Log1p, 1, vm::log1p(a))
GD_EW_OP(Sqrt, 1, std::sqrt(a))
GD_EW_OP(Rsqrt, 1, T(1) / std::sqrt(a))
GD_EW_OP(Square, 1, a * a)
GD_EW_OP(Sin, 1, std::sin(a))
GD_EW_OP(Cos, 1, std::cos(a))
// NumPy's sign: +0 for either zero, NaN stays the same NaN
GD_EW_OP(Sign, 1, a > T(0) ? T(1) : (a < T(0) ? T(-1) : (a == T(0) ? T(0) : a)))
GD_EW_OP(Reciprocal, 1, T(1) / a)
// PyTorch's sign: 0 for either zero and for NaN (abs' is 0 at NaN there)
GD_EW_OP(Sgn, 1, a > T(0) ? T(1) : (a < T(0) ? T(-1) : T(0)))
// min_nan(max_nan(a, lo), hi), written so that GCC vectorises it as a max, a min, two NaN tests
// and two blends (the nested form became a long chain of mask operations): m = a > lo ? a : lo
// is max_nan(a, lo) unless a is NaN (then m = lo, and the last select gives a, as max_nan would
// have carried a through min_nan); the rest is min_nan(m, hi). The same bits as the nested form,
// NaN payloads included (tests/test_fusion_tiles.py).
template <class T> inline T clamp_nan(T a, T lo, T hi) {
    const T m = a > lo ? a : lo;
    T r = m < hi ? m : hi;
    r = m != m ? m : r;
    return a != a ? a : r;
}

// minimum(maximum(a, lo), hi): NaN anywhere propagates, hi wins when lo > hi (as torch.clamp);
// an absent bound is -inf / +inf, which leaves every a (and its zero's sign) as it is
GD_EW_OP(Clamp, 3, clamp_nan(a, b, c))
GD_EW_OP(Copy, 1, a)
#undef GD_EW_OP

// comparisons write NumPy's bool (one byte, 0 or 1); IEEE: false with a NaN, except !=
#define GD_EW_CMP(Name, expr)                                         \
    struct Name {                                                     \
        static constexpr int arity = 2;                               \
        static constexpr bool cond = false;                           \
        static constexpr bool bool_out = true;                        \
        template <class T> static uint8_t f(T a, T b, T) {            \
            return uint8_t(expr);                                     \
        }                                                             \
    };
GD_EW_CMP(Eq, a == b)
GD_EW_CMP(Ne, a != b)
GD_EW_CMP(Lt, a < b)
GD_EW_CMP(Le, a <= b)
GD_EW_CMP(Gt, a > b)
GD_EW_CMP(Ge, a >= b)
#undef GD_EW_CMP

// the condition is read as bytes (NumPy's bool: 0 or 1): a bool load keeps GCC from vectorising
struct Where {
    static constexpr int arity = 3;
    static constexpr bool cond = true;
    static constexpr bool bool_out = false;
    template <class T> static T f(uint8_t c, T a, T b) { return c != 0 ? a : b; }
};

// Shape and strides after dropping size-1 dims and merging; st[0] is the output's.
struct Plan {
    int nd = 0;
    int64_t n = 1;  // elements
    int64_t shape[kEwMaxDims];
    int64_t st[4][kEwMaxDims];
};

// Returns false when the iteration is empty. Operands without strides (scalars) get 0.
bool make_plan(Plan& p, int nops, const int64_t* const* strides, const int64_t* shape,
               int64_t ndim) {
    p.nd = 0;
    p.n = 1;
    for (int64_t d = 0; d < ndim; ++d) {
        if (shape[d] == 0) return false;
        if (shape[d] == 1) continue;
        const int k = p.nd;
        if (k > 0) {  // merge into the previous (outer) dim when every operand allows it
            bool merge = true;
            for (int o = 0; o < nops && merge; ++o) {
                const int64_t s = strides[o] ? strides[o][d] : 0;
                merge = p.st[o][k - 1] == s * shape[d];
            }
            if (merge) {
                p.shape[k - 1] *= shape[d];
                for (int o = 0; o < nops; ++o) p.st[o][k - 1] = strides[o] ? strides[o][d] : 0;
                p.n *= shape[d];
                continue;
            }
        }
        p.shape[k] = shape[d];
        for (int o = 0; o < nops; ++o) p.st[o][k] = strides[o] ? strides[o][d] : 0;
        p.n *= shape[d];
        ++p.nd;
    }
    if (p.nd == 0) {  // one element (0-d, or all dims of size 1)
        p.nd = 1;
        p.shape[0] = 1;
        for (int o = 0; o < nops; ++o) p.st[o][0] = 1;
    }
    return true;
}

// Calls row(off, c, len) for each piece of a row of the innermost dim inside elements [i0, i1):
// off[o] = operand o's offset of that row's start (in elements), c the first column, len the
// count. The outer index advances like an odometer, so no division per row.
template <class Row>
void walk(const Plan& p, int nops, int64_t i0, int64_t i1, const Row& row) {
    const int in = p.nd - 1;
    const int64_t L = p.shape[in];
    int64_t r = i0 / L, c = i0 % L;
    int64_t idx[kEwMaxDims];
    int64_t off[4] = {0, 0, 0, 0};
    for (int d = in - 1; d >= 0; --d) {
        idx[d] = r % p.shape[d];
        r /= p.shape[d];
        for (int o = 0; o < nops; ++o) off[o] += idx[d] * p.st[o][d];
    }
    for (int64_t i = i0; i < i1;) {
        const int64_t len = std::min(L - c, i1 - i);
        row(off, c, len);
        i += len;
        c = 0;
        for (int d = in - 1; d >= 0; --d) {  // next row
            for (int o = 0; o < nops; ++o) off[o] += p.st[o][d];
            if (++idx[d] < p.shape[d]) break;
            for (int o = 0; o < nops; ++o) off[o] -= idx[d] * p.st[o][d];
            idx[d] = 0;
        }
    }
}

// One row, output contiguous; input k contiguous (Ck) or constant along the row (its [0]).
template <class Op, class T, class A, bool C0, bool C1, bool C2, class Y>
void row_fast(Y* y, const A* a, const T* b, const T* c, int64_t n) {
    const A a0 = a[0];
    const T b0 = b[0], c0 = c[0];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = Op::f(C0 ? a[i] : a0, C1 ? b[i] : b0, C2 ? c[i] : c0);
}

// Reference for every layout (and the path for strided ones).
template <class Op, class T, class A, class Y>
void row_strided(Y* y, int64_t sy, const A* a, int64_t sa, const T* b, int64_t sb, const T* c,
                 int64_t sc, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i * sy] = Op::f(a[i * sa], b[i * sb], c[i * sc]);
}

template <class Op, class T, class A, class Y>
void row(Y* y, int64_t sy, const A* a, int64_t sa, const T* b, int64_t sb, const T* c,
         int64_t sc, int64_t n) {
    const auto unit = [](int64_t s) { return s == 0 || s == 1; };
    if (sy != 1 || !unit(sa) || !unit(sb) || !unit(sc))
        return row_strided<Op>(y, sy, a, sa, b, sb, c, sc, n);
    const int mask = int(sa == 1) | int(sb == 1) << 1 | int(sc == 1) << 2;
    // only the layouts an op of this arity can have (unused inputs are constants)
    if constexpr (Op::arity == 1) {
        if (mask & 1) return row_fast<Op, T, A, true, false, false>(y, a, b, c, n);
        return row_fast<Op, T, A, false, false, false>(y, a, b, c, n);
    } else if constexpr (Op::arity == 2) {
        switch (mask & 3) {
            case 0: return row_fast<Op, T, A, false, false, false>(y, a, b, c, n);
            case 1: return row_fast<Op, T, A, true, false, false>(y, a, b, c, n);
            case 2: return row_fast<Op, T, A, false, true, false>(y, a, b, c, n);
            default: return row_fast<Op, T, A, true, true, false>(y, a, b, c, n);
        }
    } else {
        switch (mask) {
            case 0: return row_fast<Op, T, A, false, false, false>(y, a, b, c, n);
            case 1: return row_fast<Op, T, A, true, false, false>(y, a, b, c, n);
            case 2: return row_fast<Op, T, A, false, true, false>(y, a, b, c, n);
            case 3: return row_fast<Op, T, A, true, true, false>(y, a, b, c, n);
            case 4: return row_fast<Op, T, A, false, false, true>(y, a, b, c, n);
            case 5: return row_fast<Op, T, A, true, false, true>(y, a, b, c, n);
            case 6: return row_fast<Op, T, A, false, true, true>(y, a, b, c, n);
            default: return row_fast<Op, T, A, true, true, true>(y, a, b, c, n);
        }
    }
}

template <class Op, class T>
void run(T* y_out, const int64_t* y_stride, const void* const* x, const int64_t* const* x_stride,
         const T* s, const int64_t* shape, int64_t ndim) {
    using A = std::conditional_t<Op::cond, uint8_t, T>;
    using Y = std::conditional_t<Op::bool_out, uint8_t, T>;  // (bool: y is NumPy bool memory)
    Y* y = reinterpret_cast<Y*>(y_out);
    // a scalar or unused input is an operand with stride 0 on a local copy
    const A av = A(s != nullptr ? s[0] : T(0));
    const T bv = s != nullptr ? s[1] : T(0), cv = s != nullptr ? s[2] : T(0);
    const bool ha = Op::arity >= 1 && x[0] != nullptr;
    const bool hb = Op::arity >= 2 && x[1] != nullptr;
    const bool hc = Op::arity >= 3 && x[2] != nullptr;
    const A* a = ha ? static_cast<const A*>(x[0]) : &av;
    const T* b = hb ? static_cast<const T*>(x[1]) : &bv;
    const T* c = hc ? static_cast<const T*>(x[2]) : &cv;
    const int64_t* strides[4] = {y_stride, ha ? x_stride[0] : nullptr, hb ? x_stride[1] : nullptr,
                                 hc ? x_stride[2] : nullptr};
    Plan p;
    if (!make_plan(p, 4, strides, shape, ndim)) return;
    const int in = p.nd - 1;
    const int64_t sy = p.st[0][in], sa = p.st[1][in], sb = p.st[2][in], sc = p.st[3][in];
    parallel_chunks(p.n, kChunk, 8 * p.n, [&](int64_t i0, int64_t i1) {
        walk(p, 4, i0, i1, [&](const int64_t* off, int64_t c0, int64_t len) {
            row<Op, T>(y + off[0] + c0 * sy, sy, a + off[1] + c0 * sa, sa, b + off[2] + c0 * sb,
                       sb, c + off[3] + c0 * sc, sc, len);
        });
    });
}

// Sum of a run of n elements with stride s: 8 interleaved partial sums (element i goes to
// partial i % 8), added pairwise at the end, then the tail in order. Fixed for every ISA.
template <class T>
T run_sum(const T* x, int64_t s, int64_t n) {
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    if (s == 1) {
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; ++k) acc[k] += x[i + k];
    } else {
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; ++k) acc[k] += x[(i + k) * s];
    }
    T total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i) total += x[i * s];
    return total;
}

// y (stride 0 along the summed dims) = sum of x over them. Plan operand 0 is y, 1 is x.
template <class T>
void sum_to(T* y, const int64_t* y_stride, const T* x, const int64_t* x_stride,
            const int64_t* shape, int64_t ndim) {
    // kept dims: y steps along them (and has as many elements as the product of their sizes)
    const int64_t* strides[2] = {y_stride, x_stride};
    Plan p;
    if (!make_plan(p, 2, strides, shape, ndim)) {
        // an empty sum is 0: zero y over its own (kept, nonempty) dims
        Plan q;
        int64_t kshape[kEwMaxDims];
        int64_t kst[kEwMaxDims];
        int nk = 0;
        for (int64_t d = 0; d < ndim; ++d) {
            if (y_stride[d] == 0 || shape[d] == 1) continue;
            if (shape[d] == 0) return;  // y is empty too
            kshape[nk] = shape[d];
            kst[nk++] = y_stride[d];
        }
        const int64_t* ks[1] = {kst};
        make_plan(q, 1, ks, kshape, nk);
        walk(q, 1, 0, q.n, [&](const int64_t* off, int64_t c0, int64_t len) {
            const int64_t sy = q.st[0][q.nd - 1];
            for (int64_t i = 0; i < len; ++i) y[off[0] + (c0 + i) * sy] = T(0);
        });
        return;
    }
    // split the merged dims into kept (K: y stride != 0) and summed (R) ones
    Plan K, R;
    K.nd = R.nd = 0;
    K.n = R.n = 1;
    for (int d = 0; d < p.nd; ++d) {
        Plan& t = p.st[0][d] != 0 ? K : R;
        t.shape[t.nd] = p.shape[d];
        t.st[0][t.nd] = p.st[0][d];
        t.st[1][t.nd] = p.st[1][d];
        t.n *= p.shape[d];
        ++t.nd;
    }
    if (K.nd == 0) {  // one output
        K.nd = 1;
        K.shape[0] = 1;
        K.st[0][0] = K.st[1][0] = 0;
    }
    if (R.nd == 0) {  // nothing summed: a copy in y's layout
        R.nd = 1;
        R.shape[0] = 1;
        R.st[0][0] = R.st[1][0] = 0;
    }
    const bool inner_summed = p.st[0][p.nd - 1] == 0;
    if (inner_summed) {
        // each output: its summed runs along the innermost dim, added in order of the outer
        // summed indices. R's last dim is that run.
        const int64_t L = R.shape[R.nd - 1], sx = R.st[1][R.nd - 1];
        Plan Ro = R;  // the summed dims outside the run
        Ro.nd = R.nd - 1;
        Ro.n = R.n / L;
        if (Ro.nd == 0) {
            Ro.nd = 1;
            Ro.shape[0] = 1;
            Ro.st[0][0] = Ro.st[1][0] = 0;
        }
        const int64_t chunk = std::max<int64_t>(1, kChunk / R.n);
        parallel_chunks(K.n, chunk, 2 * p.n, [&](int64_t m0, int64_t m1) {
            walk(K, 2, m0, m1, [&](const int64_t* koff, int64_t c0, int64_t len) {
                const int64_t ky = K.st[0][K.nd - 1], kx = K.st[1][K.nd - 1];
                for (int64_t i = 0; i < len; ++i) {
                    const T* xb = x + koff[1] + (c0 + i) * kx;
                    T acc = T(0);
                    bool first = true;
                    walk(Ro, 2, 0, Ro.n, [&](const int64_t* roff, int64_t r0, int64_t rlen) {
                        for (int64_t j = 0; j < rlen; ++j) {
                            const T v = run_sum(xb + roff[1] + (r0 + j) * Ro.st[1][Ro.nd - 1],
                                                sx, L);
                            acc = first ? v : acc + v;
                            first = false;
                        }
                    });
                    y[koff[0] + (c0 + i) * ky] = acc;
                }
            });
        });
        return;
    }
    // innermost dim kept: rows of outputs accumulate one summed index after another
    // (chunks of at least 1024 outputs: each summed index then streams a long contiguous piece)
    const int64_t chunk = std::max<int64_t>(1024, kChunk / R.n);
    parallel_chunks(K.n, chunk, 2 * p.n, [&](int64_t m0, int64_t m1) {
        walk(K, 2, m0, m1, [&](const int64_t* koff, int64_t c0, int64_t len) {
            const int64_t ky = K.st[0][K.nd - 1], kx = K.st[1][K.nd - 1];
            T* yr = y + koff[0] + c0 * ky;
            const T* xr = x + koff[1] + c0 * kx;
            bool first = true;
            walk(R, 2, 0, R.n, [&](const int64_t* roff, int64_t r0, int64_t rlen) {
                for (int64_t j = 0; j < rlen; ++j) {
                    const T* xs = xr + roff[1] + (r0 + j) * R.st[1][R.nd - 1];
                    if (ky == 1 && kx == 1) {
                        if (first) {
#pragma omp simd
                            for (int64_t i = 0; i < len; ++i) yr[i] = xs[i];
                        } else {
#pragma omp simd
                            for (int64_t i = 0; i < len; ++i) yr[i] += xs[i];
                        }
                    } else {
                        for (int64_t i = 0; i < len; ++i)
                            yr[i * ky] = first ? xs[i * kx] : yr[i * ky] + xs[i * kx];
                    }
                    first = false;
                }
            });
        });
    });
}

}  // namespace

template <class T>
void elementwise(Ew op, T* y, const int64_t* y_stride, const void* const* x,
                 const int64_t* const* x_stride, const T* s, const int64_t* shape, int64_t ndim) {
    const auto R = [&](auto tag) {
        run<decltype(tag)>(y, y_stride, x, x_stride, s, shape, ndim);
    };
    switch (op) {
        case Ew::add: return R(Add{});
        case Ew::sub: return R(Sub{});
        case Ew::mul: return R(Mul{});
        case Ew::div: return R(Div{});
        case Ew::pow:
            // x ** 2 (a constant exponent) as x * x: exact, and what squares in a loss cost
            if (x[1] == nullptr && s != nullptr && s[1] == T(2)) return R(Square{});
            return R(Pow{});
        case Ew::maximum: return R(Maximum{});
        case Ew::minimum: return R(Minimum{});
        case Ew::neg: return R(Neg{});
        case Ew::abs: return R(Abs{});
        case Ew::exp: return R(Exp{});
        case Ew::log: return R(Log{});
        case Ew::log1p: return R(Log1p{});
        case Ew::sqrt: return R(Sqrt{});
        case Ew::rsqrt: return R(Rsqrt{});
        case Ew::square: return R(Square{});
        case Ew::sin: return R(Sin{});
        case Ew::cos: return R(Cos{});
        case Ew::sign: return R(Sign{});
        case Ew::reciprocal: return R(Reciprocal{});
        case Ew::clamp: return R(Clamp{});
        case Ew::where: return R(Where{});
        case Ew::sgn: return R(Sgn{});
        case Ew::eq: return R(Eq{});
        case Ew::ne: return R(Ne{});
        case Ew::lt: return R(Lt{});
        case Ew::le: return R(Le{});
        case Ew::gt: return R(Gt{});
        case Ew::ge: return R(Ge{});
        case Ew::copy: return R(Copy{});
        case Ew::sum_to:
            return sum_to(y, y_stride, static_cast<const T*>(x[0]), x_stride[0], shape, ndim);
    }
}

template void elementwise<float>(Ew, float*, const int64_t*, const void* const*,
                                 const int64_t* const*, const float*, const int64_t*, int64_t);
template void elementwise<double>(Ew, double*, const int64_t*, const void* const*,
                                  const int64_t* const*, const double*, const int64_t*, int64_t);

// ---- ew_fused (fuse.hpp): a chain of members run piece by piece ----
// The instruction's blocks (fixed by the shape: the unit of the parallel split) are walked row by
// row of the innermost merged dim, and each row in pieces of at most kPiece elements. On each
// piece every member runs in program order through the same row loop (`row` above, or the
// activation's own loop) as its unfused kernel, so each element gets the same operations in the
// same order; only where a piece ends differs, and every formula gives the same bits in a vector
// loop and in its remainder loop. An intermediate that lives in scratch takes kPiece slots of 8
// bytes (L1-resident) instead of a block's.
namespace {

constexpr int64_t kPiece = 1024;

// nt rows of n elements; operand k's row t starts step[k] bytes after row t - 1 (0: the same
// row again, e.g. a (1, W) operand). The layout is dispatched once for the nt rows, and each row
// runs the same loop as `row` (row_fast / row_strided), so every element gets the same formula.
template <class Op, class T, class A, bool C0, bool C1, bool C2, class Y>
void rows_fast(char* y, const char* a, const char* b, const char* c, int64_t n, int64_t nt,
               const int64_t* step) {
    for (int64_t t = 0; t < nt; ++t)
        row_fast<Op, T, A, C0, C1, C2>(reinterpret_cast<Y*>(y + t * step[0]),
                                       reinterpret_cast<const A*>(a + t * step[1]),
                                       reinterpret_cast<const T*>(b + t * step[2]),
                                       reinterpret_cast<const T*>(c + t * step[3]), n);
}

template <class Op, class T>
void ew_piece(void* y_out, int64_t sy, const void* const* x, const int64_t* sx, const T* s,
              int64_t n, int64_t nt, const int64_t* step_in) {
    using A = std::conditional_t<Op::cond, uint8_t, T>;
    using Y = std::conditional_t<Op::bool_out, uint8_t, T>;
    const A av = A(s[0]);
    const T bv = s[1], cv = s[2];
    const bool ha = Op::arity >= 1 && x[0] != nullptr;
    const bool hb = Op::arity >= 2 && x[1] != nullptr;
    const bool hc = Op::arity >= 3 && x[2] != nullptr;
    char* y = static_cast<char*>(y_out);
    const char* a = ha ? static_cast<const char*>(x[0]) : reinterpret_cast<const char*>(&av);
    const char* b = hb ? static_cast<const char*>(x[1]) : reinterpret_cast<const char*>(&bv);
    const char* c = hc ? static_cast<const char*>(x[2]) : reinterpret_cast<const char*>(&cv);
    const int64_t sa = ha ? sx[0] : 0, sb = hb ? sx[1] : 0, sc = hc ? sx[2] : 0;
    const int64_t step[4] = {step_in[0], ha ? step_in[1] : 0, hb ? step_in[2] : 0,
                             hc ? step_in[3] : 0};
    const auto unit = [](int64_t v) { return v == 0 || v == 1; };
    if (sy != 1 || !unit(sa) || !unit(sb) || !unit(sc)) {
        for (int64_t t = 0; t < nt; ++t)
            row_strided<Op, T>(reinterpret_cast<Y*>(y + t * step[0]), sy,
                               reinterpret_cast<const A*>(a + t * step[1]), sa,
                               reinterpret_cast<const T*>(b + t * step[2]), sb,
                               reinterpret_cast<const T*>(c + t * step[3]), sc, n);
        return;
    }
    const int mask = int(sa == 1) | int(sb == 1) << 1 | int(sc == 1) << 2;
#define GD_ROWS(C0, C1, C2) return rows_fast<Op, T, A, C0, C1, C2, Y>(y, a, b, c, n, nt, step)
    if constexpr (Op::arity == 1) {
        if (mask & 1) GD_ROWS(true, false, false);
        GD_ROWS(false, false, false);
    } else if constexpr (Op::arity == 2) {
        switch (mask & 3) {
            case 0: GD_ROWS(false, false, false);
            case 1: GD_ROWS(true, false, false);
            case 2: GD_ROWS(false, true, false);
            default: GD_ROWS(true, true, false);
        }
    } else {
        switch (mask) {
            case 0: GD_ROWS(false, false, false);
            case 1: GD_ROWS(true, false, false);
            case 2: GD_ROWS(false, true, false);
            case 3: GD_ROWS(true, true, false);
            case 4: GD_ROWS(false, false, true);
            case 5: GD_ROWS(true, false, true);
            case 6: GD_ROWS(false, true, true);
            default: GD_ROWS(true, true, true);
        }
    }
#undef GD_ROWS
}

template <class T>
using PieceFn = void (*)(void*, int64_t, const void* const*, const int64_t*, const T*, int64_t,
                         int64_t, const int64_t*);

template <class T>
PieceFn<T> piece_fn(Ew op, bool scalar_b, T b) {
    switch (op) {
        case Ew::add: return &ew_piece<Add, T>;
        case Ew::sub: return &ew_piece<Sub, T>;
        case Ew::mul: return &ew_piece<Mul, T>;
        case Ew::div: return &ew_piece<Div, T>;
        case Ew::pow:  // as elementwise(): a constant exponent 2 is x * x
            return scalar_b && b == T(2) ? &ew_piece<Square, T> : &ew_piece<Pow, T>;
        case Ew::maximum: return &ew_piece<Maximum, T>;
        case Ew::minimum: return &ew_piece<Minimum, T>;
        case Ew::neg: return &ew_piece<Neg, T>;
        case Ew::abs: return &ew_piece<Abs, T>;
        case Ew::exp: return &ew_piece<Exp, T>;
        case Ew::log: return &ew_piece<Log, T>;
        case Ew::log1p: return &ew_piece<Log1p, T>;
        case Ew::sqrt: return &ew_piece<Sqrt, T>;
        case Ew::rsqrt: return &ew_piece<Rsqrt, T>;
        case Ew::square: return &ew_piece<Square, T>;
        case Ew::sin: return &ew_piece<Sin, T>;
        case Ew::cos: return &ew_piece<Cos, T>;
        case Ew::sign: return &ew_piece<Sign, T>;
        case Ew::reciprocal: return &ew_piece<Reciprocal, T>;
        case Ew::clamp: return &ew_piece<Clamp, T>;
        case Ew::where: return &ew_piece<Where, T>;
        case Ew::sgn: return &ew_piece<Sgn, T>;
        case Ew::eq: return &ew_piece<Eq, T>;
        case Ew::ne: return &ew_piece<Ne, T>;
        case Ew::lt: return &ew_piece<Lt, T>;
        case Ew::le: return &ew_piece<Le, T>;
        case Ew::gt: return &ew_piece<Gt, T>;
        case Ew::ge: return &ew_piece<Ge, T>;
        case Ew::copy: return &ew_piece<Copy, T>;
        case Ew::sum_to: break;  // never a member (fuse.cpp)
    }
    return nullptr;
}

// A reduction member's row (fuse.cpp, kind 3), contiguous: op 0 an `ew` sum_to (run_sum above,
// as sum_to does for one run), op 1 / 2 a `reduce` sum / mean: what reduce.cpp's rows path
// (block_partial) does for an output whose one run of n < its block elements is contiguous:
// element j to lane j % L while whole groups of L last (the tail then to lanes 0, 1, ... in
// order), L = 128 bytes of T (one lane when n < L), lanes combined by the halving tree.
template <class T>
T reduce_row(int64_t op, const T* x, int64_t n) {
    if (op == 0) return run_sum(x, int64_t(1), n);
    constexpr int L = int(128 / sizeof(T));
    T total;
    if (n >= L) {
        T lanes[L];
        for (int l = 0; l < L; ++l) lanes[l] = T(0);
        int64_t j = 0;
        for (; j + L <= n; j += L) {
            const T* GD_RESTRICT xj = x + j;
#pragma omp simd
            for (int l = 0; l < L; ++l) lanes[l] += xj[l];
        }
        for (int l = 0; j < n; ++j, ++l) lanes[l] += x[j];
        for (int w = L / 2; w >= 1; w /= 2)
            for (int l = 0; l < w; ++l) lanes[l] += lanes[l + w];
        total = lanes[0];
    } else {
        total = T(0);
        for (int64_t j = 0; j < n; ++j) total += x[j];
    }
    return op == 2 ? total / T(n) : total;
}

// One member, decoded once per replay.
template <class T>
struct FusedMember {
    int64_t kind, op;      // kind: 0 ew, 1 act_fwd, 2 act_bwd (fuse.cpp)
    int64_t src[4];        // >= 0: scratch slot
    const int64_t* st[4];  // strides over the merged shape (elements)
    char* p[4];            // memory pointers (null: scalar or absent)
    int64_t item[4];       // bytes per element of each operand
    int64_t sr[4];         // stride along the row (elements)
    T s[3];
    PieceFn<T> fn;
};

}  // namespace

template <class T>
void run_fused_chain(const int64_t* i, const double* dd, const std::vector<void*>* lists) {
    const int64_t M = i[0], nd = i[1];
    const int64_t* shape = i + 2;
    const int64_t split = shape[nd], rows = shape[nd + 1], S = shape[nd + 2];
    const int64_t* recs = shape + nd + 3;
    const int64_t R = 6 + 4 * nd;  // ints per member
    const int64_t last = nd - 1;   // the row dim
    std::vector<FusedMember<T>> mem(static_cast<size_t>(M));
    for (int64_t j = 0; j < M; ++j) {
        const int64_t* rec = recs + j * R;
        FusedMember<T>& m = mem[static_cast<size_t>(j)];
        m.kind = rec[0];
        m.op = rec[1];
        const EwInfo* info = m.kind == 0 || m.kind == 4 ? &kEwOps[m.op] : nullptr;
        for (int k = 0; k < 4; ++k) {
            m.src[k] = rec[2 + k];
            m.st[k] = rec + 6 + k * nd;
            m.p[k] = m.src[k] >= 0 ? nullptr : static_cast<char*>(lists[j][static_cast<size_t>(k)]);
            const bool byte = info != nullptr && ((k == 1 && info->cond_first) ||
                                                  (k == 0 && info->bool_out));
            m.item[k] = byte ? 1 : int64_t(sizeof(T));
            m.sr[k] = m.src[k] >= 0 ? 1 : m.st[k][last];
        }
        for (int k = 0; k < 3; ++k) m.s[k] = T(dd[3 * j + k]);
        m.fn = m.kind == 0 || m.kind == 4
                   ? piece_fn<T>(static_cast<Ew>(m.op), m.src[2] < 0 && m.p[2] == nullptr, m.s[1])
                   : nullptr;
    }
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < split; ++d) outer *= shape[d];
    for (int64_t d = split + 1; d < nd; ++d) inner *= shape[d];
    const int64_t per = (shape[split] + rows - 1) / rows;  // blocks per outer index
    const int64_t n = outer * shape[split] * inner;
    const int64_t slot = kPiece * 8;                        // bytes per scratch slot
    parallel_chunks(outer * per, 1, 8 * n, [&](int64_t b0, int64_t b1) {
        thread_local std::vector<double> buf;
        const size_t need = static_cast<size_t>(S * kPiece + 8);
        if (buf.size() < need) buf.resize(need);
        char* base = reinterpret_cast<char*>(
            (reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t(63));
        int64_t idx[kEwMaxDims], sub[kEwMaxDims];
        thread_local std::vector<int64_t> boff;  // block offsets (elements)
        if (boff.size() < static_cast<size_t>(4 * M)) boff.resize(static_cast<size_t>(4 * M));
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t o = b / per, r0 = (b % per) * rows;
            const int64_t nr = std::min(rows, shape[split] - r0);
            int64_t rem = o;
            for (int64_t d = split; d-- > 0;) {
                idx[d] = rem % shape[d];
                rem /= shape[d];
            }
            for (int64_t j = 0; j < M; ++j)
                for (int k = 0; k < 4; ++k) {
                    const int64_t* st = mem[static_cast<size_t>(j)].st[k];
                    int64_t off = r0 * st[split];
                    for (int64_t d = 0; d < split; ++d) off += idx[d] * st[d];
                    boff[static_cast<size_t>(4 * j + k)] = off;
                }
            // the block: dims [split, nd) with dim split cut to nr rows; rows along dim `last`
            for (int64_t d = split; d < nd; ++d) sub[d] = d == split ? nr : shape[d];
            const int64_t L = sub[last];
            int64_t nrows = 1;
            for (int64_t d = split; d < last; ++d) nrows *= sub[d];
            // tiles of tr whole rows (short rows) or pieces of one row; several rows per tile
            // only with one row dim, whose row r is at r * stride
            const bool one = last - split == 1;
            const int64_t tr = one && L <= kPiece ? std::min(nrows, kPiece / L) : 1;
            const int64_t cw = std::min(L, kPiece);
            for (int64_t r = 0; r < nrows; r += tr) {
                const int64_t nt = std::min(tr, nrows - r);
                // row r's offset along the row dims, per member operand (added to boff)
                int64_t ridx[kEwMaxDims];
                if (!one) {
                    int64_t q = r;
                    for (int64_t d = last; d-- > split;) {
                        ridx[d] = q % sub[d];
                        q /= sub[d];
                    }
                }
                for (int64_t c0 = 0; c0 < L; c0 += cw) {
                    const int64_t len = std::min(cw, L - c0);
                    for (int64_t j = 0; j < M; ++j) {
                        const FusedMember<T>& m = mem[static_cast<size_t>(j)];
                        char* ptr[4];
                        int64_t step[4];  // bytes from one row of the tile to the next
                        for (int k = 0; k < 4; ++k) {
                            if (m.src[k] >= 0) {
                                ptr[k] = base + m.src[k] * slot;
                                step[k] = len * m.item[k];
                                continue;
                            }
                            if (m.p[k] == nullptr) {
                                ptr[k] = nullptr;
                                step[k] = 0;
                                continue;
                            }
                            int64_t off = boff[static_cast<size_t>(4 * j + k)] + c0 * m.sr[k];
                            if (one) {
                                off += r * m.st[k][split];
                            } else {
                                for (int64_t d = split; d < last; ++d) off += ridx[d] * m.st[k][d];
                            }
                            ptr[k] = m.p[k] + off * m.item[k];
                            step[k] = one ? m.st[k][split] * m.item[k] : 0;
                        }
                        // the tile's rows as one row where every operand's rows follow each
                        // other (scratch, whole contiguous rows, scalars); otherwise nt rows
                        int64_t n1 = len, nt1 = nt;
                        if (nt > 1) {
                            bool flat = true;
                            for (int k = 0; k < 4; ++k)
                                flat = flat && (ptr[k] == nullptr ||
                                                step[k] == len * m.sr[k] * m.item[k]);
                            if (flat) {
                                n1 = nt * len;
                                nt1 = 1;
                            }
                        }
                        if (m.kind == 0) {
                            const void* xp[3] = {ptr[1], ptr[2], ptr[3]};
                            m.fn(ptr[0], m.sr[0], xp, m.sr + 1, m.s, n1, nt1, step);
                            continue;
                        }
                        if (m.kind == 4) {  // a row member: one element per row of the tile
                            const void* xp[3] = {ptr[1], ptr[2], ptr[3]};
                            m.fn(ptr[0], m.sr[0], xp, m.sr + 1, m.s, 1, nt, step);
                            continue;
                        }
                        if (m.kind == 3) {  // a row reduction: the tile holds whole rows
                            for (int64_t t = 0; t < nt; ++t)
                                *reinterpret_cast<T*>(ptr[0] + t * step[0]) = reduce_row(
                                    m.op, reinterpret_cast<const T*>(ptr[1] + t * step[1]), len);
                            continue;
                        }
                        for (int64_t t = 0; t < nt1; ++t) {
                            char* q[4];
                            for (int k = 0; k < 4; ++k)
                                q[k] = ptr[k] == nullptr ? nullptr : ptr[k] + t * step[k];
                            if (m.kind == 1) {
                                activation_forward<T>(static_cast<Act>(m.op),
                                                      reinterpret_cast<T*>(q[0]),
                                                      reinterpret_cast<const T*>(q[1]), n1, m.s[0]);
                            } else {
                                activation_backward<T>(
                                    static_cast<Act>(m.op), reinterpret_cast<T*>(q[0]),
                                    reinterpret_cast<const T*>(q[1]),
                                    reinterpret_cast<const T*>(q[2]),
                                    reinterpret_cast<const T*>(q[3]), n1, m.s[0]);
                            }
                        }
                    }
                }
            }
        }
    });
}

template void run_fused_chain<float>(const int64_t*, const double*, const std::vector<void*>*);
template void run_fused_chain<double>(const int64_t*, const double*, const std::vector<void*>*);

}  // namespace GD_NS
}  // namespace gd

// Bool and integer arithmetic as kernels, so that gd.compile records the lines a training step
// writes to report accuracy ((logits.argmax(1) == y).float().mean(), (y != k).long().sum()):
//
//   int_binary(op, a, b)    comparisons eq/ne/lt/le/gt/ge, logical land/lor/lxor, bitwise
//                           and/or/xor, add/sub/mul of integers (two's complement wraparound,
//                           as NumPy and PyTorch), max/min of bools or integers, and floor
//                           division and remainder of integers (Python's // and %), with
//                           broadcasting;
//   int_unary(op, x, dtype) cast between bool/int32/int64/float32/float64, logical not, bitwise
//                           invert, and round/floor/ceil of floats (pred.round() == y);
//   int_sum(x, axes, keepdim) the int64 sum of a bool/int32/int64 array over axes.
//
// Operands may be arrays of any strides (whole multiples of the item size) of the five dtypes, or
// one Python number. The result dtype follows PyTorch's promotion: dimensioned arrays first, then
// 0-d arrays when of a higher category (bool < integer < float), then the Python number when of a
// higher category (an int takes int64, a float float32); comparisons convert both operands to
// that dtype and compare there, so an int64 compared with a float32 is compared as float32.
//
// Each binding is also a registered instruction kind (instr_registry.hpp) with a `<name>_args`
// twin that lays out the instruction of a call; both parse their arguments with one function.
// Every result element depends on its own inputs only (the sum adds in C order on one thread, and
// integer sums are exact modulo 2^64), so results do not depend on the thread count or the ISA.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <pybind11/stl.h>

#include "bind_common.hpp"
#include "instr_registry.hpp"
#include "parallel.hpp"

namespace gd {
namespace {

constexpr int64_t kMaxDims = 16;

// dtype codes
enum Dt : int64_t { kBool = 0, kI32 = 1, kI64 = 2, kF32 = 3, kF64 = 4 };
constexpr int64_t kItem[5] = {1, 4, 8, 4, 8};
const char* const kDtName[5] = {"bool", "int32", "int64", "float32", "float64"};

int category(int64_t dt) { return dt == kBool ? 0 : dt <= kI64 ? 1 : 2; }

// binary ops
enum BinOp : int64_t {
    kEq, kNe, kLt, kLe, kGt, kGe,  // bool result, compared in the promoted dtype
    kLand, kLor, kLxor,            // bool result of the operands' truth values
    kAnd, kOr, kXor,               // bitwise, bool or integer result
    kAdd, kSub, kMul,              // integer result
    kMax, kMin,                    // bool or integer result (the larger, the smaller)
    kFloorDiv, kRem,               // integer result: floor(a / b), a - floor(a / b) b (b != 0)
    kNumBin
};
const char* const kBinName[kNumBin] = {"eq", "ne", "lt", "le", "gt", "ge", "land", "lor",
                                       "lxor", "and", "or", "xor", "add", "sub", "mul",
                                       "max", "min", "floordiv", "rem"};
enum UnOp : int64_t { kCast, kNot, kInvert, kRound, kFloor, kCeil, kNumUn };
const char* const kUnName[kNumUn] = {"cast", "not", "invert", "round", "floor", "ceil"};

template <class C>
inline C load(const char* p, int64_t dt) {
    switch (dt) {
        case kBool: return static_cast<C>(*reinterpret_cast<const uint8_t*>(p) != 0);
        case kI32: return static_cast<C>(*reinterpret_cast<const int32_t*>(p));
        case kI64: return static_cast<C>(*reinterpret_cast<const int64_t*>(p));
        case kF32: return static_cast<C>(*reinterpret_cast<const float*>(p));
        default: return static_cast<C>(*reinterpret_cast<const double*>(p));
    }
}

// Calls f(k, byte offset in each of the `na` strided arrays) for flat output positions
// k in [b, e) of `shape` in C order; st holds na rows of nd element strides, item their sizes.
template <int NA, class F>
void walk(const int64_t* shape, int64_t nd, const int64_t* const* st, const int64_t* item,
          int64_t b, int64_t e, F&& f) {
    int64_t pos[kMaxDims] = {0};
    int64_t off[NA] = {0};
    int64_t rem = b;
    for (int64_t d = nd - 1; d >= 0; --d) {
        pos[d] = shape[d] ? rem % shape[d] : 0;
        rem = shape[d] ? rem / shape[d] : 0;
        for (int a = 0; a < NA; ++a) off[a] += pos[d] * st[a][d] * item[a];
    }
    for (int64_t k = b; k < e; ++k) {
        f(k, off);
        for (int64_t d = nd - 1; d >= 0; --d) {
            for (int a = 0; a < NA; ++a) off[a] += st[a][d] * item[a];
            if (++pos[d] < shape[d]) break;
            for (int a = 0; a < NA; ++a) off[a] -= shape[d] * st[a][d] * item[a];
            pos[d] = 0;
        }
    }
}

int64_t numel(const int64_t* shape, int64_t nd) {
    int64_t n = 1;
    for (int64_t d = 0; d < nd; ++d) n *= shape[d];
    return n;
}

// [lo, hi] element offsets a strided array of `shape` touches; false when it is empty
bool span(const int64_t* shape, const int64_t* st, int64_t nd, int64_t& lo, int64_t& hi) {
    lo = hi = 0;
    for (int64_t d = 0; d < nd; ++d) {
        if (shape[d] == 0) return false;
        const int64_t s = (shape[d] - 1) * st[d];
        (s < 0 ? lo : hi) += s;
    }
    return true;
}

void push_span(std::vector<Operand>& ops, void* p, const int64_t* shape, const int64_t* st,
               int64_t nd, int64_t item, bool write, int slot) {
    int64_t lo, hi;
    if (p == nullptr || !span(shape, st, nd, lo, hi)) return;
    ops.push_back({static_cast<char*>(p) + lo * item, (hi - lo + 1) * item, !write, write, slot});
}

// ---- int_binary: p [out, a, b] (null for the scalar); i [kind, op, ta, tb, tc, to, nd,
// shape[nd], sa[nd], sb[nd], scalar as int64]; d [scalar as double] -------------------------
int64_t g_bin_kind = -1;

struct BinLayout {
    int64_t op, ta, tb, tc, to, nd;
    const int64_t *shape, *sa, *sb;
    int64_t si;
    double sd;
    char *out;
    const char *a, *b;
};

BinLayout bin_layout(const Instr& in) {
    const int64_t* i = in.i.data();
    BinLayout L;
    L.op = i[1]; L.ta = i[2]; L.tb = i[3]; L.tc = i[4]; L.to = i[5]; L.nd = i[6];
    L.shape = i + 7; L.sa = i + 7 + L.nd; L.sb = i + 7 + 2 * L.nd;
    L.si = i[7 + 3 * L.nd];
    L.sd = in.d[0];
    L.out = static_cast<char*>(in.p[0]);
    L.a = static_cast<const char*>(in.p[1]);
    L.b = static_cast<const char*>(in.p[2]);
    return L;
}

// Calls f(T{}) with T the C++ type of dtype code dt (bool as uint8_t: NumPy's bools are 0 or 1).
template <class F>
void with_dt(int64_t dt, F&& f) {
    switch (dt) {
        case kBool: f(uint8_t{}); break;
        case kI32: f(int32_t{}); break;
        case kI64: f(int64_t{}); break;
        case kF32: f(float{}); break;
        default: f(double{}); break;
    }
}

// Merges adjacent dims that every one of the `na` strided arrays walks as one (stride[d] ==
// stride[d + 1] * shape[d + 1]), and drops dims of size 1: fewer, longer rows.
template <int NA>
int64_t merge_dims(const int64_t* shape, int64_t nd, const int64_t* const* st, int64_t* mshape,
                   int64_t (*mst)[kMaxDims]) {
    int64_t m = 0;
    for (int64_t d = 0; d < nd; ++d) {
        if (shape[d] == 1) continue;
        bool join = m > 0;
        for (int a = 0; a < NA && join; ++a)
            join = mst[a][m - 1] == st[a][d] * shape[d];
        if (join) {
            mshape[m - 1] *= shape[d];
            for (int a = 0; a < NA; ++a) mst[a][m - 1] = st[a][d];
        } else {
            mshape[m] = shape[d];
            for (int a = 0; a < NA; ++a) mst[a][m] = st[a][d];
            ++m;
        }
    }
    return m;
}

// Runs row(k0, offsets of the row's first element, length) over the rows (innermost dim) of
// `shape` for the `na` arrays (element strides st, item sizes item); the rows are split among
// threads in fixed chunks, so no result depends on the thread count.
template <int NA, class F>
void for_rows(const int64_t* shape, int64_t nd, const int64_t* const* st, const int64_t* item,
              F&& row) {
    int64_t ms[kMaxDims];
    int64_t mst[NA][kMaxDims];
    const int64_t m = merge_dims<NA>(shape, nd, st, ms, mst);
    const int64_t n = numel(shape, nd);
    if (n == 0) return;
    const int64_t inner = m ? ms[m - 1] : 1;
    const int64_t rows = n / inner;
    const int64_t* ost[NA];
    int64_t inner_st[NA];
    for (int a = 0; a < NA; ++a) {
        ost[a] = mst[a];
        inner_st[a] = m ? mst[a][m - 1] : 0;
    }
    const int64_t grain = std::max<int64_t>(1, 16384 / inner);
    parallel_chunks(rows, grain, n * 2, [&](int64_t b, int64_t e) {
        walk<NA>(ms, m ? m - 1 : 0, ost, item, b, e, [&](int64_t r, const int64_t* off) {
            row(r * inner, off, inner, inner_st);
        });
    });
}

// Python's and PyTorch's integer floor division and remainder (the remainder takes the
// divisor's sign), in int64 (results wrap as the other integer ops do); b != 0 (checked before).
// b = -1 is its own case: INT64_MIN / -1 traps on x86.
inline uint64_t floor_div(int64_t a, int64_t b) {
    if (b == -1) return uint64_t(0) - static_cast<uint64_t>(a);
    const int64_t q = a / b;
    return static_cast<uint64_t>((a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q);
}
inline uint64_t floor_rem(int64_t a, int64_t b) {
    if (b == -1) return 0;
    const int64_t r = a % b;
    return static_cast<uint64_t>((r != 0 && ((r < 0) != (b < 0))) ? r + b : r);
}

template <class C, class TA, class TB>
void bin_row(int64_t op, int64_t to, const TA* a, int64_t sa, const TB* b, int64_t sb, char* o,
             int64_t n) {
    auto* ob = reinterpret_cast<uint8_t*>(o);
// (unit strides and a broadcast operand get their own loops, which the compiler vectorizes)
#define GD_LOOP(EXPR)                                                                  \
    if (sa == 1 && sb == 1) {                                                          \
        for (int64_t j = 0; j < n; ++j) { const auto x = a[j]; const auto y = b[j]; EXPR; } \
    } else if (sa == 1 && sb == 0) {                                                   \
        const auto y = b[0];                                                           \
        for (int64_t j = 0; j < n; ++j) { const auto x = a[j]; EXPR; }                 \
    } else {                                                                           \
        for (int64_t j = 0; j < n; ++j) {                                              \
            const auto x = a[j * sa]; const auto y = b[j * sb]; EXPR;                  \
        }                                                                              \
    }                                                                                  \
    return;
#define GD_CMP(OP) GD_LOOP(ob[j] = static_cast<C>(x) OP static_cast<C>(y))
    switch (op) {
        case kEq: GD_CMP(==)
        case kNe: GD_CMP(!=)
        case kLt: GD_CMP(<)
        case kLe: GD_CMP(<=)
        case kGt: GD_CMP(>)
        case kGe: GD_CMP(>=)
        default: break;
    }
#undef GD_CMP
    if (op <= kLxor) {
        for (int64_t j = 0; j < n; ++j) {
            const bool x = a[j * sa] != TA(0), y = b[j * sb] != TB(0);
            ob[j] = op == kLand ? (x && y) : op == kLor ? (x || y) : (x != y);
        }
        return;
    }
    with_dt(to, [&](auto tag) {
        using TO = decltype(tag);
        auto* out = reinterpret_cast<TO*>(o);
        const auto U = [](auto v) { return static_cast<uint64_t>(static_cast<int64_t>(v)); };
        const auto S = [](auto v) { return static_cast<int64_t>(v); };
        const auto put = [](uint64_t v) {
            return std::is_same<TO, uint8_t>::value ? TO(v != 0) : static_cast<TO>(v);
        };
        switch (op) {
            case kAnd: GD_LOOP(out[j] = put(U(x) & U(y)))
            case kOr: GD_LOOP(out[j] = put(U(x) | U(y)))
            case kXor: GD_LOOP(out[j] = put(U(x) ^ U(y)))
            case kAdd: GD_LOOP(out[j] = put(U(x) + U(y)))
            case kSub: GD_LOOP(out[j] = put(U(x) - U(y)))
            case kMax: GD_LOOP(out[j] = put(static_cast<uint64_t>(std::max(S(x), S(y)))))
            case kMin: GD_LOOP(out[j] = put(static_cast<uint64_t>(std::min(S(x), S(y)))))
            case kFloorDiv: GD_LOOP(out[j] = put(floor_div(S(x), S(y))))
            case kRem: GD_LOOP(out[j] = put(floor_rem(S(x), S(y))))
            default: GD_LOOP(out[j] = put(U(x) * U(y)))
        }
    });
#undef GD_LOOP
}

template <class C>
void bin_compute(const BinLayout& L) {
    // a number operand becomes a stride-0 array of one element: its value converted to the
    // compute dtype (comparisons), its truth value (logical ops) or its int64 (integer ops)
    const int64_t sdt = L.a ? L.tb : L.ta;
    C sc = sdt == kF64 ? static_cast<C>(L.sd) : static_cast<C>(L.si);
    uint8_t st = sdt == kF64 ? L.sd != 0.0 : L.si != 0;
    int64_t si = L.si;
    const char* sp;
    int64_t sdt_run;
    if (L.op <= kGe) {
        sp = reinterpret_cast<const char*>(&sc);
        sdt_run = std::is_same<C, float>::value ? kF32 : std::is_same<C, double>::value ? kF64 : kI64;
    } else if (L.op <= kLxor) {
        sp = reinterpret_cast<const char*>(&st);
        sdt_run = kBool;
    } else {
        sp = reinterpret_cast<const char*>(&si);
        sdt_run = kI64;
    }
    const char* pa = L.a ? L.a : sp;
    const char* pb = L.b ? L.b : sp;
    const int64_t ta = L.a ? L.ta : sdt_run, tb = L.b ? L.tb : sdt_run;
    std::vector<int64_t> zero(static_cast<size_t>(L.nd), 0), cont(static_cast<size_t>(L.nd));
    int64_t acc = 1;
    for (int64_t d = L.nd - 1; d >= 0; --d) {
        cont[static_cast<size_t>(d)] = acc;
        acc *= L.shape[d];
    }
    const int64_t* st3[3] = {L.a ? L.sa : zero.data(), L.b ? L.sb : zero.data(), cont.data()};
    const int64_t item[3] = {kItem[ta], kItem[tb], kItem[L.to]};
    with_dt(ta, [&](auto tga) {
        using TA = decltype(tga);
        with_dt(tb, [&](auto tgb) {
            using TB = decltype(tgb);
            for_rows<3>(L.shape, L.nd, st3, item,
                        [&](int64_t, const int64_t* off, int64_t n, const int64_t* ist) {
                            bin_row<C, TA, TB>(L.op, L.to,
                                               reinterpret_cast<const TA*>(pa + off[0]), ist[0],
                                               reinterpret_cast<const TB*>(pb + off[1]), ist[1],
                                               L.out + off[2], n);
                        });
        });
    });
}

// floordiv and rem: a zero divisor raises PyTorch's error (RuntimeError), eagerly and in a replay,
// before anything is written
void check_divisor(const BinLayout& L) {
    if (L.op != kFloorDiv && L.op != kRem) return;
    const char* what = L.op == kFloorDiv ? "ZeroDivisionError: integer floor_divide by zero"
                                         : "ZeroDivisionError: integer remainder by zero";
    if (!L.b) {  // the number operand is the divisor
        if (L.si == 0) throw std::runtime_error(what);
        return;
    }
    const int64_t* st[1] = {L.sb};
    const int64_t item[1] = {kItem[L.tb]};
    bool zero = false;
    with_dt(L.tb, [&](auto tag) {
        using TB = decltype(tag);
        walk<1>(L.shape, L.nd, st, item, 0, numel(L.shape, L.nd),
                [&](int64_t, const int64_t* off) {
                    zero = zero || *reinterpret_cast<const TB*>(L.b + off[0]) == TB(0);
                });
    });
    if (zero) throw std::runtime_error(what);
}

void bin_run(const Instr& in) {
    const BinLayout L = bin_layout(in);
    check_divisor(L);
    switch (L.tc) {
        case kF32: bin_compute<float>(L); break;
        case kF64: bin_compute<double>(L); break;
        default: bin_compute<int64_t>(L); break;  // bool and integers compare exactly in int64
    }
}

void bin_operands(const Instr& in, std::vector<Operand>& ops) {
    const BinLayout L = bin_layout(in);
    std::vector<int64_t> contiguous(static_cast<size_t>(L.nd));
    int64_t acc = 1;
    for (int64_t d = L.nd - 1; d >= 0; --d) {
        contiguous[static_cast<size_t>(d)] = acc;
        acc *= L.shape[d];
    }
    push_span(ops, in.p[0], L.shape, contiguous.data(), L.nd, kItem[L.to], true, 0);
    push_span(ops, in.p[1], L.shape, L.sa, L.nd, kItem[L.ta], false, 1);
    push_span(ops, in.p[2], L.shape, L.sb, L.nd, kItem[L.tb], false, 2);
}

int64_t bin_flops(const Instr& in) { return numel(in.i.data() + 7, in.i[6]); }

bool dt_ok(int64_t t) { return t >= kBool && t <= kF64; }

bool bin_valid(size_t nptrs, const std::vector<int64_t>& i, size_t nreals) {
    if (nptrs != 3 || nreals != 1 || i.size() < 8) return false;
    const int64_t nd = i[6];
    if (nd < 0 || nd > kMaxDims || i.size() != static_cast<size_t>(8 + 3 * nd)) return false;
    for (int64_t d = 0; d < nd; ++d)
        if (i[static_cast<size_t>(7 + d)] < 0) return false;
    return i[1] >= 0 && i[1] < kNumBin && dt_ok(i[2]) && dt_ok(i[3]) && dt_ok(i[4]) &&
           dt_ok(i[5]);
}

// ---- int_unary: p [out, x]; i [kind, op, tx, to, nd, shape[nd], sx[nd]] -----------------------
int64_t g_un_kind = -1;

// the first element of a float array with no value in integer dtype `to` (NaN, Inf, out of
// range), as its flat position, or -1
int64_t first_unconvertible(const char* x, int64_t tx, int64_t to, const int64_t* shape,
                            int64_t nd, const int64_t* sx, double& bad) {
    if (category(tx) != 2 || category(to) != 1) return -1;
    const double lo = to == kI32 ? -2147483648.0 : -9223372036854775808.0;
    const double hi = to == kI32 ? 2147483648.0 : 9223372036854775808.0;
    const int64_t n = numel(shape, nd);
    if (n == 0) return -1;
    int64_t ms[kMaxDims];
    int64_t mst[1][kMaxDims];
    const int64_t* st1[1] = {sx};
    const int64_t m = merge_dims<1>(shape, nd, st1, ms, mst);
    const int64_t inner = m ? ms[m - 1] : 1, step = m ? mst[0][m - 1] : 0;
    const int64_t* ost[1] = {mst[0]};
    const int64_t item[1] = {kItem[tx]};
    int64_t found = -1;
    with_dt(tx, [&](auto tag) {
        using TX = decltype(tag);
        walk<1>(ms, m ? m - 1 : 0, ost, item, 0, n / inner, [&](int64_t r, const int64_t* off) {
            if (found >= 0) return;
            const TX* p = reinterpret_cast<const TX*>(x + off[0]);
            bool ok = true;  // (a branch-free pass first: the common case has no bad value)
            for (int64_t j = 0; j < inner; ++j) {
                const double v = static_cast<double>(p[j * step]);
                ok &= v >= lo && v < hi;
            }
            if (ok) return;
            for (int64_t j = 0; j < inner; ++j) {
                const double v = static_cast<double>(p[j * step]);
                if (!(v >= lo && v < hi)) {
                    found = r * inner + j;
                    bad = v;
                    return;
                }
            }
        });
    });
    return found;
}

std::string cast_message(double bad, int64_t to) {
    // the shortest %g form that reads back as the value (Python's repr of 1e30 is 1e+30)
    char buf[40] = "nan";
    if (std::isinf(bad)) std::snprintf(buf, sizeof buf, "%s", bad > 0 ? "inf" : "-inf");
    else if (!std::isnan(bad))
        for (int p = 1; p <= 17; ++p) {
            std::snprintf(buf, sizeof buf, "%.*g", p, bad);
            if (std::strtod(buf, nullptr) == bad) break;
        }
    return std::string("to: can't convert ") + buf + " to " + kDtName[to] +
           " (NaN, Inf and values outside [" +
           (to == kI32 ? "-2147483648, 2147483647" : "-9223372036854775808, 9223372036854775807") +
           "] have no integer value)";
}

template <class TX, class TO>
void unary_row(int64_t op, const TX* x, int64_t sx, TO* o, int64_t n) {
    constexpr bool out_bool = std::is_same<TO, uint8_t>::value;
    constexpr bool in_float = std::is_floating_point<TX>::value;
    if (op == kNot || (op == kInvert && std::is_same<TX, uint8_t>::value)) {
        for (int64_t j = 0; j < n; ++j) o[j] = TO(x[j * sx] == TX(0));
    } else if (op == kInvert) {
        for (int64_t j = 0; j < n; ++j) o[j] = static_cast<TO>(~static_cast<int64_t>(x[j * sx]));
    } else if (op >= kRound) {
        // a float32 is exact in double, and so are its rounded values
        for (int64_t j = 0; j < n; ++j) {
            const double v = static_cast<double>(x[j * sx]);
            o[j] = static_cast<TO>(op == kRound ? std::nearbyint(v)  // halves to even
                                   : op == kFloor ? std::floor(v) : std::ceil(v));
        }
    } else if (out_bool) {
        for (int64_t j = 0; j < n; ++j) o[j] = TO(x[j * sx] != TX(0));
    } else if (in_float || std::is_floating_point<TO>::value || sizeof(TO) >= sizeof(TX)) {
        // (float -> integer: in range, checked before; int64 -> float rounds to nearest once)
        for (int64_t j = 0; j < n; ++j) o[j] = static_cast<TO>(x[j * sx]);
    } else {
        // int64 -> int32 keeps the low 32 bits, as NumPy's astype
        for (int64_t j = 0; j < n; ++j)
            o[j] = static_cast<TO>(static_cast<uint64_t>(static_cast<int64_t>(x[j * sx])));
    }
}

void unary_compute(int64_t op, const char* x, int64_t tx, char* out, int64_t to,
                   const int64_t* shape, int64_t nd, const int64_t* sx) {
    std::vector<int64_t> cont(static_cast<size_t>(nd));
    int64_t acc = 1;
    for (int64_t d = nd - 1; d >= 0; --d) {
        cont[static_cast<size_t>(d)] = acc;
        acc *= shape[d];
    }
    const int64_t* st[2] = {sx, cont.data()};
    const int64_t item[2] = {kItem[tx], kItem[to]};
    with_dt(tx, [&](auto tgx) {
        using TX = decltype(tgx);
        with_dt(to, [&](auto tgo) {
            using TO = decltype(tgo);
            for_rows<2>(shape, nd, st, item,
                        [&](int64_t, const int64_t* off, int64_t n, const int64_t* ist) {
                            unary_row<TX, TO>(op, reinterpret_cast<const TX*>(x + off[0]),
                                              ist[0], reinterpret_cast<TO*>(out + off[1]), n);
                        });
        });
    });
}

void un_run(const Instr& in) {
    const int64_t* i = in.i.data();
    const int64_t nd = i[4];
    double bad = 0;
    const auto* x = static_cast<const char*>(in.p[1]);
    if (i[1] == kCast && first_unconvertible(x, i[2], i[3], i + 5, nd, i + 5 + nd, bad) >= 0)
        throw std::invalid_argument(cast_message(bad, i[3]));
    unary_compute(i[1], x, i[2], static_cast<char*>(in.p[0]), i[3], i + 5, nd, i + 5 + nd);
}

void un_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t* i = in.i.data();
    const int64_t nd = i[4];
    const int64_t n = numel(i + 5, nd);
    if (n > 0) ops.push_back({in.p[0], n * kItem[i[3]], false, true, 0});
    push_span(ops, in.p[1], i + 5, i + 5 + nd, nd, kItem[i[2]], false, 1);
}

int64_t un_flops(const Instr& in) { return numel(in.i.data() + 5, in.i[4]); }

bool un_valid(size_t nptrs, const std::vector<int64_t>& i, size_t nreals) {
    if (nptrs != 2 || nreals != 0 || i.size() < 5) return false;
    const int64_t nd = i[4];
    if (nd < 0 || nd > kMaxDims || i.size() != static_cast<size_t>(5 + 2 * nd)) return false;
    for (int64_t d = 0; d < nd; ++d)
        if (i[static_cast<size_t>(5 + d)] < 0) return false;
    return i[1] >= 0 && i[1] < kNumUn && dt_ok(i[2]) && dt_ok(i[3]);
}

// ---- int_sum: p [out, x]; i [kind, tx, nd, shape[nd], sx[nd], reduced[nd]] ---------------------
int64_t g_sum_kind = -1;

void sum_compute(const char* x, int64_t tx, int64_t* out, const int64_t* shape, int64_t nd,
                 const int64_t* sx, const int64_t* reduced) {
    // out's element strides over x's dims: 0 along the reduced ones
    int64_t so[kMaxDims];
    int64_t acc = 1;
    for (int64_t d = nd - 1; d >= 0; --d) {
        so[d] = reduced[d] ? 0 : acc;
        if (!reduced[d]) acc *= shape[d];
    }
    std::memset(out, 0, static_cast<size_t>(acc) * 8);
    const int64_t n = numel(shape, nd);
    if (acc == 1 && n > 0) {  // every element into one sum: rows of merged dims, typed loops
        int64_t ms[kMaxDims];
        int64_t mst[1][kMaxDims];
        const int64_t* st1[1] = {sx};
        const int64_t m = merge_dims<1>(shape, nd, st1, ms, mst);
        const int64_t inner = m ? ms[m - 1] : 1, step = m ? mst[0][m - 1] : 0;
        const int64_t* ost[1] = {mst[0]};
        const int64_t item1[1] = {kItem[tx]};
        uint64_t total = 0;
        with_dt(tx, [&](auto tag) {
            using TX = decltype(tag);
            walk<1>(ms, m ? m - 1 : 0, ost, item1, 0, n / inner, [&](int64_t, const int64_t* off) {
                const TX* p = reinterpret_cast<const TX*>(x + off[0]);
                uint64_t t = 0;
                for (int64_t j = 0; j < inner; ++j)
                    t += static_cast<uint64_t>(static_cast<int64_t>(p[j * step]));
                total += t;
            });
        });
        out[0] = static_cast<int64_t>(total);
        return;
    }
    const int64_t* st[2] = {sx, so};
    const int64_t item[2] = {kItem[tx], 1};
    auto* o = reinterpret_cast<uint64_t*>(out);
    walk<2>(shape, nd, st, item, 0, n, [&](int64_t, const int64_t* off) {
        o[off[1]] += static_cast<uint64_t>(load<int64_t>(x + off[0], tx));
    });
}

void sum_run(const Instr& in) {
    const int64_t* i = in.i.data();
    const int64_t nd = i[2];
    sum_compute(static_cast<const char*>(in.p[1]), i[1], static_cast<int64_t*>(in.p[0]), i + 3,
                nd, i + 3 + nd, i + 3 + 2 * nd);
}

int64_t sum_out_size(const int64_t* i) {
    const int64_t nd = i[2];
    int64_t n = 1;
    for (int64_t d = 0; d < nd; ++d)
        if (!i[3 + 2 * nd + d]) n *= i[3 + d];
    return n;
}

void sum_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t* i = in.i.data();
    const int64_t nd = i[2];
    ops.push_back({in.p[0], 8 * sum_out_size(i), false, true, 0});
    push_span(ops, in.p[1], i + 3, i + 3 + nd, nd, kItem[i[1]], false, 1);
}

int64_t sum_flops(const Instr& in) { return numel(in.i.data() + 3, in.i[2]); }

bool sum_valid(size_t nptrs, const std::vector<int64_t>& i, size_t nreals) {
    if (nptrs != 2 || nreals != 0 || i.size() < 3) return false;
    const int64_t nd = i[2];
    if (nd < 0 || nd > kMaxDims || i.size() != static_cast<size_t>(3 + 3 * nd)) return false;
    for (int64_t d = 0; d < nd; ++d)
        if (i[static_cast<size_t>(3 + d)] < 0) return false;
    return i[1] >= kBool && i[1] <= kI64;
}

}  // namespace

namespace bind {
namespace {

int64_t dt_code(const py::array& a, const char* op, const char* arg) {
    const py::dtype t = a.dtype();
    if (t.byteorder() != '>') {
        if (t.equal(py::dtype::of<bool>())) return kBool;
        if (t.equal(py::dtype::of<int32_t>())) return kI32;
        if (t.equal(py::dtype::of<int64_t>())) return kI64;
        if (t.equal(py::dtype::of<float>())) return kF32;
        if (t.equal(py::dtype::of<double>())) return kF64;
    }
    type_error(std::string(op) + ": argument '" + arg +
               "' must have dtype bool, int32, int64, float32 or float64 (native byte order), "
               "got " + dtype_str(a));
}

// element strides of an aligned array whose byte strides are whole items
std::vector<int64_t> elem_strides(const py::array& a, const char* op, const char* arg) {
    const int64_t item = a.itemsize();
    if (reinterpret_cast<uintptr_t>(a.data()) % static_cast<uintptr_t>(item) != 0)
        value_error(std::string(op) + ": argument '" + arg + "' is not aligned to " +
                    std::to_string(item) + " bytes");
    std::vector<int64_t> s(static_cast<size_t>(a.ndim()));
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        if (a.strides(d) % item != 0)
            value_error(std::string(op) + ": argument '" + arg + "' has a stride of " +
                        std::to_string(a.strides(d)) + " bytes, not a multiple of its item size " +
                        std::to_string(item));
        s[static_cast<size_t>(d)] = a.strides(d) / item;
    }
    if (a.ndim() > kMaxDims)
        value_error(std::string(op) + ": argument '" + arg + "' has " +
                    std::to_string(a.ndim()) + " dims, more than " + std::to_string(kMaxDims));
    return s;
}

int64_t dtype_arg(const py::handle& d, const char* op) {
    py::dtype t = py::dtype::from_args(py::reinterpret_borrow<py::object>(d));
    if (t.byteorder() != '>') {
        if (t.equal(py::dtype::of<bool>())) return kBool;
        if (t.equal(py::dtype::of<int32_t>())) return kI32;
        if (t.equal(py::dtype::of<int64_t>())) return kI64;
        if (t.equal(py::dtype::of<float>())) return kF32;
        if (t.equal(py::dtype::of<double>())) return kF64;
    }
    type_error(std::string(op) + ": argument 'dtype' must be bool, int32, int64, float32 or "
               "float64, got " + py::str(t).cast<std::string>());
}

py::array new_of(int64_t dt, const std::vector<int64_t>& shape) {
    switch (dt) {
        case kBool: return new_array<bool>(shape);
        case kI32: return new_array<int32_t>(shape);
        case kI64: return new_array<int64_t>(shape);
        case kF32: return new_array<float>(shape);
        default: return new_array<double>(shape);
    }
}

// One operand of int_binary: an array, or a Python bool/int/float.
struct Operand2 {
    py::array arr;  // empty for a number
    bool is_array = false;
    int64_t dt = kI64;  // a number: kBool, kI64 or kF64 (its category)
    int64_t si = 0;
    double sd = 0;
    std::vector<int64_t> shape, st;
};

Operand2 parse_operand(const py::handle& v, const char* op, const char* arg) {
    Operand2 o;
    if (py::isinstance<py::array>(v)) {
        o.arr = py::reinterpret_borrow<py::array>(v);
        o.is_array = true;
        o.dt = dt_code(o.arr, op, arg);
        o.shape = shape_of(o.arr);
        o.st = elem_strides(o.arr, op, arg);
        return o;
    }
    if (py::isinstance<py::bool_>(v)) {
        o.dt = kBool;
        o.si = v.cast<bool>() ? 1 : 0;
        o.sd = double(o.si);
    } else if (py::isinstance<py::int_>(v)) {
        o.dt = kI64;
        try {
            o.si = v.cast<int64_t>();
        } catch (const py::cast_error&) {
            value_error(std::string(op) + ": argument '" + arg + "' = " +
                        py::str(v).cast<std::string>() + " does not fit in int64");
        }
        o.sd = double(o.si);
    } else if (py::isinstance<py::float_>(v)) {
        o.dt = kF64;
        o.sd = v.cast<double>();
    } else {
        type_error(std::string(op) + ": argument '" + arg +
                   "' must be a numpy.ndarray or a Python bool, int or float, got " +
                   py::str(py::type::of(v)).cast<std::string>());
    }
    return o;
}

// the promoted dtype of two dtypes of one tier
int64_t promote2(int64_t x, int64_t y) {
    const int cx = category(x), cy = category(y);
    if (cx != cy) return cx > cy ? x : y;
    return x > y ? x : y;  // int32 < int64, float32 < float64
}

// PyTorch's result dtype of a binary op (dimensioned arrays, then 0-d arrays, then numbers)
int64_t result_dtype(const Operand2& a, const Operand2& b) {
    int64_t tier[3] = {-1, -1, -1};
    for (const Operand2* o : {&a, &b}) {
        const int t = !o->is_array ? 2 : o->shape.empty() ? 1 : 0;
        tier[t] = tier[t] < 0 ? o->dt : promote2(tier[t], o->dt);
    }
    int64_t r = tier[0];
    if (tier[1] >= 0 && (r < 0 || category(tier[1]) > category(r))) r = tier[1];
    if (tier[2] >= 0 && (r < 0 || category(tier[2]) > category(r))) {
        const int c = category(tier[2]);
        r = c == 0 ? kBool : c == 1 ? kI64 : kF32;
    }
    return r;
}

struct Binary {
    int64_t op = 0, tc = 0, to = 0;
    Operand2 a, b;
    std::vector<int64_t> shape, sa, sb;  // broadcast shape, element strides (0: broadcast)
};

Binary parse_binary(const std::string& opname, const py::handle& av, const py::handle& bv) {
    const char* op = "int_binary";
    Binary r;
    r.op = -1;
    for (int64_t k = 0; k < kNumBin; ++k)
        if (opname == kBinName[k]) r.op = k;
    if (r.op < 0)
        value_error(std::string(op) + ": argument 'op' must be one of eq, ne, lt, le, gt, ge, "
                    "land, lor, lxor, and, or, xor, add, sub, mul, max, min, floordiv, rem, got '" +
                    opname + "'");
    r.a = parse_operand(av, op, "a");
    r.b = parse_operand(bv, op, "b");
    if (!r.a.is_array && !r.b.is_array)
        type_error(std::string(op) + ": at least one of 'a' and 'b' must be a numpy.ndarray");
    const int64_t res = result_dtype(r.a, r.b);
    if (r.op <= kGe) {
        r.tc = res;
        r.to = kBool;
    } else if (r.op <= kLxor) {
        r.tc = kBool;
        r.to = kBool;
    } else {
        const bool bitwise = r.op <= kXor || r.op == kMax || r.op == kMin;  // (bools too)
        if (category(res) == 2 || (!bitwise && res == kBool))
            type_error(std::string(op) + ": '" + opname + "' takes " +
                       (bitwise ? "bool or integer" : "integer") + " operands whose result " +
                       "dtype is " + (bitwise ? "bool or an integer" : "an integer") + ", got " +
                       kDtName[r.a.dt] + (r.a.is_array ? "" : " (number)") + " and " +
                       kDtName[r.b.dt] + (r.b.is_array ? "" : " (number)"));
        r.tc = res;
        r.to = res;
    }
    // broadcast
    const size_t nd = std::max(r.a.shape.size(), r.b.shape.size());
    r.shape.assign(nd, 1);
    r.sa.assign(nd, 0);
    r.sb.assign(nd, 0);
    for (int which = 0; which < 2; ++which) {
        const Operand2& o = which ? r.b : r.a;
        std::vector<int64_t>& s = which ? r.sb : r.sa;
        const size_t off = nd - o.shape.size();
        for (size_t d = 0; d < o.shape.size(); ++d) {
            const int64_t n = o.shape[d];
            int64_t& m = r.shape[off + d];
            if (n != 1) {
                if (m != 1 && m != n)
                    value_error(std::string(op) + ": operands could not be broadcast together "
                                "with shapes " + shape_str(r.a.shape) + " and " +
                                shape_str(r.b.shape));
                m = n;
                s[off + d] = o.st[d];
            }
        }
    }
    // a dim of size 1 everywhere: its strides no longer matter
    for (size_t d = 0; d < nd; ++d)
        if (r.shape[d] == 1) r.sa[d] = r.sb[d] = 0;
    if (nd > static_cast<size_t>(kMaxDims))
        value_error(std::string(op) + ": more than " + std::to_string(kMaxDims) + " dims");
    return r;
}

// the number operand's value as the instruction stores it (int64 and double)
void scalar_of(const Binary& r, int64_t& si, double& sd) {
    const Operand2& s = r.a.is_array ? r.b : r.a;
    si = s.is_array ? 0 : s.si;
    sd = s.is_array ? 0.0 : s.sd;
}

BinLayout layout_of(const Binary& r, char* out) {
    BinLayout L;
    L.op = r.op; L.ta = r.a.dt; L.tb = r.b.dt; L.tc = r.tc; L.to = r.to;
    L.nd = static_cast<int64_t>(r.shape.size());
    L.shape = r.shape.data(); L.sa = r.sa.data(); L.sb = r.sb.data();
    scalar_of(r, L.si, L.sd);
    L.out = out;
    L.a = r.a.is_array ? static_cast<const char*>(r.a.arr.data()) : nullptr;
    L.b = r.b.is_array ? static_cast<const char*>(r.b.arr.data()) : nullptr;
    return L;
}

py::array binary(const std::string& op, const py::handle& a, const py::handle& b) {
    const Binary r = parse_binary(op, a, b);
    py::array out = new_of(r.to, r.shape);
    const BinLayout L = layout_of(r, static_cast<char*>(out.mutable_data()));
    check_divisor(L);
    {
        py::gil_scoped_release nogil;
        switch (L.tc) {
            case kF32: bin_compute<float>(L); break;
            case kF64: bin_compute<double>(L); break;
            default: bin_compute<int64_t>(L); break;
        }
    }
    return out;
}

std::pair<uintptr_t, int64_t> strided_span(const py::array& a, const std::vector<int64_t>& shape,
                                           const std::vector<int64_t>& st) {
    int64_t lo, hi;
    if (!span(shape.data(), st.data(), static_cast<int64_t>(shape.size()), lo, hi))
        return {addr(a), 0};
    return {addr(a) + static_cast<uintptr_t>(lo * a.itemsize()), (hi - lo + 1) * a.itemsize()};
}

py::tuple binary_args(const std::string& op, const py::handle& a, const py::handle& b,
                      const py::handle& result) {
    const Binary r = parse_binary(op, a, b);
    py::array out = as_array(result, "int_binary", "result");
    check_shape(out, "int_binary", "result", r.shape);
    const int64_t nd = static_cast<int64_t>(r.shape.size());
    std::vector<int64_t> ints{g_bin_kind, r.op, r.a.dt, r.b.dt, r.tc, r.to, nd};
    ints.insert(ints.end(), r.shape.begin(), r.shape.end());
    ints.insert(ints.end(), r.sa.begin(), r.sa.end());
    ints.insert(ints.end(), r.sb.begin(), r.sb.end());
    int64_t si;
    double sd;
    scalar_of(r, si, sd);
    ints.push_back(si);
    std::vector<uintptr_t> ptrs{addr(out), r.a.is_array ? addr(r.a.arr) : 0,
                                r.b.is_array ? addr(r.b.arr) : 0};
    std::vector<std::pair<uintptr_t, int64_t>> reads;
    if (r.a.is_array) reads.push_back(strided_span(r.a.arr, r.shape, r.sa));
    if (r.b.is_array) reads.push_back(strided_span(r.b.arr, r.shape, r.sb));
    return py::make_tuple(ptrs, ints, std::vector<double>{sd}, false, reads);
}

struct Unary {
    int64_t op = 0, tx = 0, to = 0;
    py::array x;
    std::vector<int64_t> shape, st;
};

Unary parse_unary(const std::string& opname, const py::handle& xv, const py::handle& dtype) {
    const char* op = "int_unary";
    Unary u;
    u.op = -1;
    for (int64_t k = 0; k < kNumUn; ++k)
        if (opname == kUnName[k]) u.op = k;
    if (u.op < 0)
        value_error(std::string(op) + ": argument 'op' must be one of cast, not, invert, round, "
                    "floor, ceil, got '" + opname + "'");
    u.x = as_array(xv, op, "x");
    u.tx = dt_code(u.x, op, "x");
    u.shape = shape_of(u.x);
    u.st = elem_strides(u.x, op, "x");
    if (u.op == kCast) {
        if (dtype.is_none()) type_error(std::string(op) + ": 'cast' needs argument 'dtype'");
        u.to = dtype_arg(dtype, op);
    } else if (u.op == kNot) {
        u.to = kBool;
    } else if (u.op >= kRound) {
        if (category(u.tx) != 2)
            type_error(std::string(op) + ": '" + opname + "' takes a float32 or float64 array, "
                       "got " + kDtName[u.tx]);
        u.to = u.tx;
    } else {
        if (category(u.tx) == 2)
            type_error(std::string(op) + ": 'invert' takes a bool or integer array, got " +
                       kDtName[u.tx]);
        u.to = u.tx;
    }
    return u;
}

py::array unary(const std::string& op, const py::handle& x, const py::handle& dtype) {
    const Unary u = parse_unary(op, x, dtype);
    const int64_t nd = static_cast<int64_t>(u.shape.size());
    const auto* xp = static_cast<const char*>(u.x.data());
    double bad = 0;
    if (u.op == kCast &&
        first_unconvertible(xp, u.tx, u.to, u.shape.data(), nd, u.st.data(), bad) >= 0)
        value_error(cast_message(bad, u.to));
    py::array out = new_of(u.to, u.shape);
    char* o = static_cast<char*>(out.mutable_data());
    {
        py::gil_scoped_release nogil;
        unary_compute(u.op, xp, u.tx, o, u.to, u.shape.data(), nd, u.st.data());
    }
    return out;
}

py::tuple unary_args(const std::string& op, const py::handle& x, const py::handle& dtype,
                     const py::handle& result) {
    const Unary u = parse_unary(op, x, dtype);
    py::array out = as_array(result, "int_unary", "result");
    check_shape(out, "int_unary", "result", u.shape);
    const int64_t nd = static_cast<int64_t>(u.shape.size());
    std::vector<int64_t> ints{g_un_kind, u.op, u.tx, u.to, nd};
    ints.insert(ints.end(), u.shape.begin(), u.shape.end());
    ints.insert(ints.end(), u.st.begin(), u.st.end());
    std::vector<uintptr_t> ptrs{addr(out), addr(u.x)};
    std::vector<std::pair<uintptr_t, int64_t>> reads{strided_span(u.x, u.shape, u.st)};
    return py::make_tuple(ptrs, ints, std::vector<double>{}, false, reads);
}

struct Sum {
    int64_t tx = 0;
    py::array x;
    std::vector<int64_t> shape, st, reduced, out_shape;
};

Sum parse_sum(const py::handle& xv, const py::handle& axes, bool keepdim) {
    const char* op = "int_sum";
    Sum s;
    s.x = as_array(xv, op, "x");
    s.tx = dt_code(s.x, op, "x");
    if (category(s.tx) != 0 && category(s.tx) != 1)
        type_error(std::string(op) + ": argument 'x' must have dtype bool, int32 or int64, got " +
                   dtype_str(s.x));
    s.shape = shape_of(s.x);
    s.st = elem_strides(s.x, op, "x");
    const int64_t nd = static_cast<int64_t>(s.shape.size());
    s.reduced.assign(static_cast<size_t>(nd), axes.is_none() ? 1 : 0);
    if (!axes.is_none()) {
        for (const py::handle& h : axes.cast<py::sequence>()) {
            const int64_t d = h.cast<int64_t>();
            if (d < 0 || d >= nd)
                value_error(std::string(op) + ": axis " + std::to_string(d) +
                            " is out of range for an array of " + std::to_string(nd) +
                            " dims (expected 0 <= axis < " + std::to_string(nd) + ")");
            if (s.reduced[static_cast<size_t>(d)])
                value_error(std::string(op) + ": axis " + std::to_string(d) + " appears twice");
            s.reduced[static_cast<size_t>(d)] = 1;
        }
    }
    for (int64_t d = 0; d < nd; ++d) {
        if (!s.reduced[static_cast<size_t>(d)]) s.out_shape.push_back(s.shape[static_cast<size_t>(d)]);
        else if (keepdim) s.out_shape.push_back(1);
    }
    return s;
}

py::array sum(const py::handle& x, const py::handle& axes, bool keepdim) {
    const Sum s = parse_sum(x, axes, keepdim);
    py::array out = new_array<int64_t>(s.out_shape);
    auto* o = static_cast<int64_t*>(out.mutable_data());
    const auto* xp = static_cast<const char*>(s.x.data());
    {
        py::gil_scoped_release nogil;
        sum_compute(xp, s.tx, o, s.shape.data(), static_cast<int64_t>(s.shape.size()),
                    s.st.data(), s.reduced.data());
    }
    return out;
}

py::tuple sum_args(const py::handle& x, const py::handle& axes, bool keepdim,
                   const py::handle& result) {
    const Sum s = parse_sum(x, axes, keepdim);
    py::array out = as_array(result, "int_sum", "result");
    check_shape(out, "int_sum", "result", s.out_shape);
    const int64_t nd = static_cast<int64_t>(s.shape.size());
    std::vector<int64_t> ints{g_sum_kind, s.tx, nd};
    ints.insert(ints.end(), s.shape.begin(), s.shape.end());
    ints.insert(ints.end(), s.st.begin(), s.st.end());
    ints.insert(ints.end(), s.reduced.begin(), s.reduced.end());
    std::vector<uintptr_t> ptrs{addr(out), addr(s.x)};
    std::vector<std::pair<uintptr_t, int64_t>> reads{strided_span(s.x, s.shape, s.st)};
    return py::make_tuple(ptrs, ints, std::vector<double>{}, false, reads);
}

}  // namespace

void bind_intops(py::module_& m) {
    g_bin_kind = register_instr_kind(
        {"int_binary", &bin_run, &bin_operands, &bin_flops, &bin_valid});
    g_un_kind = register_instr_kind({"int_unary", &un_run, &un_operands, &un_flops, &un_valid});
    g_sum_kind = register_instr_kind({"int_sum", &sum_run, &sum_operands, &sum_flops, &sum_valid});
    m.def("int_binary", &binary, py::arg("op"), py::arg("a"), py::arg("b"),
          "op(a, b) elementwise with broadcasting, a and b arrays (bool, int32, int64, float32, "
          "float64; any strides) or one a Python number, in PyTorch's result dtype. op: eq, ne, "
          "lt, le, gt, ge (bool; compared in the result dtype), land, lor, lxor (bool, of the "
          "truth values), and, or, xor (bitwise; bool or integer), add, sub, mul (integer, "
          "wrapping around), max, min (bool or integer), floordiv, rem (integer: Python's // "
          "and %, a zero divisor raises RuntimeError).");
    m.def("int_binary_args", &binary_args, py::arg("op"), py::arg("a"), py::arg("b"),
          py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for int_binary(...) = result.");
    m.def("int_unary", &unary, py::arg("op"), py::arg("x"), py::arg("dtype") = py::none(),
          "op(x) elementwise into a new C-contiguous array: 'cast' to dtype (bool, int32, int64, "
          "float32, float64; a float value with no integer value raises ValueError), 'not' "
          "(logical, bool result), 'invert' (bitwise ~ of a bool or integer array), 'round' "
          "(halves to even), 'floor', 'ceil' (of a float array, in its dtype).");
    m.def("int_unary_args", &unary_args, py::arg("op"), py::arg("x"),
          py::arg("dtype") = py::none(), py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for int_unary(...) = result.");
    m.def("int_sum", &sum, py::arg("x"), py::arg("axes") = py::none(),
          py::arg("keepdim") = false,
          "The int64 sum of a bool/int32/int64 array over axes (a sequence of distinct dims in "
          "[0, ndim); None: all), wrapping around as NumPy's int64 sum does.");
    m.def("int_sum_args", &sum_args, py::arg("x"), py::arg("axes") = py::none(),
          py::arg("keepdim") = false, py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for int_sum(...) = result.");
    add_record_args(m, {{"int_binary", "int_binary_args"},
                        {"int_unary", "int_unary_args"},
                        {"int_sum", "int_sum_args"}});
}

}  // namespace bind
}  // namespace gd

// Elementwise arithmetic with NumPy broadcasting. Shape legend: the iteration shape (ndim dims,
// the broadcast output shape); every operand is a pointer plus its stride in elements along each
// iteration dim (0 where it is broadcast), so any strided NumPy view is read in place.
#pragma once
#include <cstdint>

#include "common.hpp"

namespace gd {

// Op ids. The one source of truth is kEwOps below: the bindings export it to Python as
// _core.EW_OPS (name -> id), gd.compile stores the id in its generic `ew` instruction, and the
// static_assert keeps ids and table rows in step.
enum class Ew : int {
    add, sub, mul, div, pow, maximum, minimum,                                  // a, b
    neg, abs, exp, log, log1p, sqrt, rsqrt, square, sin, cos, sign, reciprocal,  // a
    clamp,                                                                       // a, lo, hi
    where,                                                                       // cond, a, b
    sum_to,  // a reduced to the output: y's stride is 0 along the dims it sums over
    sgn,     // a: PyTorch's sign (0 at NaN), the derivative of abs
    eq, ne, lt, le, gt, ge,  // a, b -> bool (NumPy's bool: one byte, 0 or 1)
    copy,    // a: y = a (a strided or broadcast operand made C-contiguous)
};

struct EwInfo {
    const char* name;
    Ew op;
    int arity;        // inputs read (1..3)
    bool cond_first;  // input 0 is bool (where)
    bool bool_out;    // the output is bool (comparisons)
};

inline constexpr EwInfo kEwOps[] = {
    {"add", Ew::add, 2, false, false},         {"sub", Ew::sub, 2, false, false},
    {"mul", Ew::mul, 2, false, false},         {"div", Ew::div, 2, false, false},
    {"pow", Ew::pow, 2, false, false},         {"maximum", Ew::maximum, 2, false, false},
    {"minimum", Ew::minimum, 2, false, false}, {"neg", Ew::neg, 1, false, false},
    {"abs", Ew::abs, 1, false, false},         {"exp", Ew::exp, 1, false, false},
    {"log", Ew::log, 1, false, false},         {"log1p", Ew::log1p, 1, false, false},
    {"sqrt", Ew::sqrt, 1, false, false},       {"rsqrt", Ew::rsqrt, 1, false, false},
    {"square", Ew::square, 1, false, false},   {"sin", Ew::sin, 1, false, false},
    {"cos", Ew::cos, 1, false, false},         {"sign", Ew::sign, 1, false, false},
    {"reciprocal", Ew::reciprocal, 1, false, false}, {"clamp", Ew::clamp, 3, false, false},
    {"where", Ew::where, 3, true, false},      {"sum_to", Ew::sum_to, 1, false, false},
    {"sgn", Ew::sgn, 1, false, false},
    {"eq", Ew::eq, 2, false, true},     {"ne", Ew::ne, 2, false, true},
    {"lt", Ew::lt, 2, false, true},     {"le", Ew::le, 2, false, true},
    {"gt", Ew::gt, 2, false, true},     {"ge", Ew::ge, 2, false, true},
    {"copy", Ew::copy, 1, false, false},
};
inline constexpr int kEwCount = int(sizeof(kEwOps) / sizeof(kEwOps[0]));

constexpr bool ew_table_in_order() {
    for (int k = 0; k < kEwCount; ++k)
        if (int(kEwOps[k].op) != k) return false;
    return int(Ew::copy) + 1 == kEwCount;
}
static_assert(ew_table_in_order(), "kEwOps must list every Ew op once, in enum order");

// NumPy's limit on dimensions (NPY_MAXDIMS in NumPy 2).
inline constexpr int kEwMaxDims = 64;

// The elements an operand with these strides covers over `shape`: offsets [lo, hi] from its
// pointer (lo <= 0 with negative strides); false when the shape is empty.
inline bool ew_span(const int64_t* shape, const int64_t* stride, int64_t ndim, int64_t& lo,
                    int64_t& hi) {
    lo = hi = 0;
    for (int64_t d = 0; d < ndim; ++d) {
        if (shape[d] == 0) return false;
        const int64_t step = (shape[d] - 1) * stride[d];
        if (step < 0) lo += step;
        else hi += step;
    }
    return true;
}

#ifdef GD_NS
namespace GD_NS {

// y at offsets sum_d idx[d] * y_stride[d] = op(x[0], x[1], x[2]) at theirs, for every index of
// `shape`; x[k] null means the scalar s[k] (x_stride[k] unused). A bool_out op (comparisons)
// writes bytes (0 or 1) at y, which then points to NumPy bool memory (strides in bytes).
// Inputs may be any strided views; y may be exactly an input (same pointer and strides), never
// partly overlap one.
// sum_to: y (stride 0 along the summed dims) = the sum of x[0] over them, each output element
// adding its terms one after another in row-major order of the summed indices (after merging
// dims; a run along a summed innermost dim in 8 interleaved partial sums added pairwise), so
// the bits depend on shape and strides only, never on the ISA or the thread count.
template <class T>
void elementwise(Ew op, T* y, const int64_t* y_stride, const void* const* x,
                 const int64_t* const* x_stride, const T* s, const int64_t* shape, int64_t ndim);

}  // namespace GD_NS
#endif

}  // namespace gd

// The reductions over any set of axes (reduce.cpp, one kernel for all of them) and their ids: the
// one table of names and ids. bind_reduce.cpp exports it to Python as _core.REDUCE_OPS and
// gd.compile stores the id in its generic `reduce` instruction (program.cpp), so a reduction
// added here needs no capture code.
#pragma once
#include <cmath>
#include <cstdint>

namespace gd {

// Outputs per op: value (y), index (idx, int64: the first occurrence of the extreme, or of the
// first NaN, in C order over the reduced axes), or both.
//   var, std: `param` is the correction (PyTorch's; 1 = Bessel's); norm: `param` is p
//   (0, 1, 2, any p > 0, +-inf).
enum class Red : int {
    sum = 0, mean, var, std_, amax, amin, max, min, argmax, argmin, logsumexp, norm, prod
};

constexpr const char* kRedNames[] = {"sum", "mean", "var", "std", "amax", "amin", "max",
                                     "min", "argmax", "argmin", "logsumexp", "norm", "prod"};
constexpr int kRedCount = static_cast<int>(sizeof(kRedNames) / sizeof(kRedNames[0]));
static_assert(kRedCount == static_cast<int>(Red::prod) + 1, "kRedNames lists every Red");

// Internal linkage: this header is compiled into the per-ISA kernel objects too, and the linker
// must not hand the generic code (program.cpp, the bindings) a copy built for AVX-512.
namespace {

inline bool red_writes_value(Red op) { return op != Red::argmax && op != Red::argmin; }
inline bool red_writes_index(Red op) {
    return op == Red::max || op == Red::min || op == Red::argmax || op == Red::argmin;
}
// amax, max, argmax and their min twins (and the inf norms) have no identity: a zero-size
// reduced axis is an error for them.
inline bool red_needs_elements(Red op, double param) {
    return op == Red::amax || op == Red::amin || op == Red::max || op == Red::min ||
           op == Red::argmax || op == Red::argmin ||
           (op == Red::norm && std::isinf(param));
}
// Floating-point operations per input element (Program::flops): two passes for var, std
// (mean, then squared deviations) and logsumexp (max, then exp of the shifted value).
inline int64_t red_flops_per_element(Red op) {
    switch (op) {
        case Red::var:
        case Red::std_: return 4;
        case Red::logsumexp: return 4;
        case Red::norm: return 2;
        default: return 1;
    }
}

}  // namespace

}  // namespace gd

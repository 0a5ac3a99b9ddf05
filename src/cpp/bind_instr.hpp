// Helpers for the binding files that register instruction kinds (instr_registry.hpp): running a
// kind by dtype, listing its operands, counting its flops, checking its layout, and the tuple a
// `<binding>_args` twin returns to gd.compile. Each kind's binding and its twin share one parse
// function (the binding's checks), so a recorded call is accepted exactly when the eager call is.
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "bind_common.hpp"
#include "instr_registry.hpp"

namespace gd {
namespace bind {
namespace instr {

template <class T>
T* P(const Instr& in, size_t k) {
    return static_cast<T*>(in.p[k]);
}

// A kind's run(): F32 or F64 by the instruction's dtype.
template <void (*F32)(const Instr&), void (*F64)(const Instr&)>
void run_by_dtype(const Instr& in) {
    if (in.f64) F64(in);
    else F32(in);
}

// Operand k: read or written, `bytes` long (skipped when its pointer is null).
inline void operand(const Instr& in, std::vector<Operand>& ops, int k, int64_t bytes, bool write) {
    if (in.p[static_cast<size_t>(k)] != nullptr)
        ops.push_back({in.p[static_cast<size_t>(k)], bytes, !write, write, k});
}

// One operation per element of the largest operand (how Program::flops counts elementwise and
// reduction work).
template <void (*Ops)(const Instr&, std::vector<Operand>&)>
int64_t elems_flops(const Instr& in) {
    std::vector<Operand> ops;
    Ops(in, ops);
    int64_t elems = 0;
    const int64_t e = in.f64 ? 8 : 4;
    for (const Operand& o : ops) elems = std::max(elems, o.bytes / e);
    return elems;
}

// A layout of `Ptrs` pointers, `Ints` ints (the kind id included) and `Reals` reals, with
// nonnegative sizes at ints [First, Last).
template <size_t Ptrs, size_t Ints, size_t Reals, size_t First, size_t Last>
bool layout_valid(size_t nptrs, const std::vector<int64_t>& i, size_t nreals) {
    if (nptrs != Ptrs || i.size() != Ints || nreals != Reals) return false;
    for (size_t k = First; k < Last; ++k)
        if (i[k] < 0) return false;
    return true;
}

// (pointers, ints, reals, float64, [(address, bytes) read]): what Program.add takes for a `call`
// instruction, and the memory gd.compile checks is known (empty operands are not listed)
inline py::tuple instr_tuple(std::vector<uintptr_t> ptrs, std::vector<int64_t> ints,
                             std::vector<double> reals, bool f64,
                             const std::vector<py::array>& reads) {
    std::vector<std::pair<uintptr_t, int64_t>> spans;
    for (const py::array& a : reads)
        if (a.nbytes() > 0) spans.push_back(span_of(a));
    return py::make_tuple(ptrs, ints, reals, f64, spans);
}

// check_array<float> or <double>
inline void check_float_array(const py::array& a, bool f64, const char* op, const char* arg) {
    if (f64) check_array<double>(a, op, arg);
    else check_array<float>(a, op, arg);
}

// The result a twin is given: an array of the dtype and shape the binding returns.
inline py::array checked_result(const py::handle& r, const char* op, const char* what, bool f64,
                                const std::vector<int64_t>& shape) {
    py::array a = as_array(r, op, what);
    check_float_array(a, f64, op, what);
    check_shape(a, op, what, shape);
    return a;
}

}  // namespace instr
}  // namespace bind
}  // namespace gd

// Validation and conversion shared by the bind_*.cpp files: every array that crosses into C++ is
// checked here for dtype, ndim, shape, contiguity and alignment, and a failure raises a Python
// TypeError/ValueError naming the op, the argument, and the expected and actual values.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace gd {
namespace bind {

inline std::string shape_str(const std::vector<int64_t>& s) {
    std::ostringstream o;
    o << "(";
    for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
    if (s.size() == 1) o << ",";
    o << ")";
    return o.str();
}

inline std::vector<int64_t> shape_of(const py::array& a) {
    std::vector<int64_t> s(static_cast<size_t>(a.ndim()));
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s[static_cast<size_t>(i)] = a.shape(i);
    return s;
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

[[noreturn]] inline void type_error(const std::string& msg) { throw py::type_error(msg); }
[[noreturn]] inline void value_error(const std::string& msg) { throw py::value_error(msg); }

// Casts `obj` to an array without copying (raises TypeError for non-arrays).
inline py::array as_array(const py::handle& obj, const char* op, const char* arg) {
    if (!py::isinstance<py::array>(obj))
        type_error(std::string(op) + ": argument '" + arg + "' must be a numpy.ndarray, got " +
                   py::str(py::type::of(obj)).cast<std::string>());
    return py::reinterpret_borrow<py::array>(obj);
}

// Checks dtype T (native byte order), C-contiguity and alignment.
template <class T>
void check_array(const py::array& a, const char* op, const char* arg) {
    if (!a.dtype().equal(py::dtype::of<T>()) || a.dtype().byteorder() == '>')
        type_error(std::string(op) + ": argument '" + arg + "' must have dtype " +
                   py::str(py::dtype::of<T>()).cast<std::string>() + " (native byte order), got " +
                   dtype_str(a));
    if (!(a.flags() & py::array::c_style))
        value_error(std::string(op) + ": argument '" + arg + "' must be C-contiguous");
    if (reinterpret_cast<uintptr_t>(a.data()) % alignof(T) != 0)
        value_error(std::string(op) + ": argument '" + arg + "' is not aligned to " +
                    std::to_string(alignof(T)) + " bytes");
}

inline void check_ndim(const py::array& a, const char* op, const char* arg, int lo, int hi) {
    const int nd = static_cast<int>(a.ndim());
    if (nd < lo || nd > hi) {
        std::string want = lo == hi ? std::to_string(lo) : std::to_string(lo) + " or " + std::to_string(hi);
        value_error(std::string(op) + ": argument '" + arg + "' must be " + want + "-d, got shape " +
                    shape_str(shape_of(a)));
    }
}

inline void check_shape(const py::array& a, const char* op, const char* arg,
                        const std::vector<int64_t>& want) {
    if (shape_of(a) != want)
        value_error(std::string(op) + ": argument '" + arg + "' expected shape " + shape_str(want) +
                    ", got " + shape_str(shape_of(a)));
}

// Raises if the output's memory overlaps an input's (the kernels assume no aliasing).
inline void check_no_overlap(const py::array& out, const py::array& in, const char* op,
                             const char* out_arg, const char* in_arg) {
    const char* o0 = static_cast<const char*>(out.data());
    const char* o1 = o0 + out.nbytes();
    const char* i0 = static_cast<const char*>(in.data());
    const char* i1 = i0 + in.nbytes();
    if (out.nbytes() > 0 && in.nbytes() > 0 && o0 < i1 && i0 < o1)
        value_error(std::string(op) + ": argument '" + out_arg + "' overlaps argument '" + in_arg +
                    "' in memory");
}

template <class T>
const T* in_ptr(const py::array& a) {
    return static_cast<const T*>(a.data());
}

template <class T>
T* out_ptr(py::array& a) {
    return static_cast<T*>(a.mutable_data());
}

template <class T>
py::array new_array(const std::vector<int64_t>& shape) {
    std::vector<py::ssize_t> s(shape.begin(), shape.end());
    return py::array_t<T>(s);
}

// 'f' for float32, 'd' for float64; anything else raises TypeError naming op and argument.
inline char float_kind(const py::array& a, const char* op, const char* arg) {
    if (a.dtype().equal(py::dtype::of<float>())) return 'f';
    if (a.dtype().equal(py::dtype::of<double>())) return 'd';
    type_error(std::string(op) + ": argument '" + arg +
               "' must have dtype float32 or float64, got " + dtype_str(a));
}

// Calls f.template operator()<float>() or <double>() by the dtype of `a`.
template <class F>
auto dispatch_float(const py::array& a, const char* op, const char* arg, F&& f) {
    if (float_kind(a, op, arg) == 'f') return f(float{});
    return f(double{});
}

// gd.compile's deferred weight updates (bind_replay.cpp): applies the one pending update, if
// any, and gives its parameters back their own class. Whatever reads or writes a parameter's
// memory behind Python's back (a Program run from Python) calls this first.
void flush_deferred();

// The address of an array's data, and its byte range: what a binding's `_args` twin reports of
// the memory a recorded call touches (see instr_registry.hpp).
inline uintptr_t addr(const py::array& a) { return reinterpret_cast<uintptr_t>(a.data()); }
inline std::pair<uintptr_t, int64_t> span_of(const py::array& a) {
    return {addr(a), static_cast<int64_t>(a.nbytes())};
}

// Adds binding -> `_args` twin pairs to the module's RECORD_ARGS dict, which gd.compile reads to
// record a call of any binding named there; each binding file adds its own pairs.
inline void add_record_args(py::module_& m,
                            std::initializer_list<std::pair<const char*, const char*>> pairs) {
    py::dict rec = py::hasattr(m, "RECORD_ARGS") ? m.attr("RECORD_ARGS").cast<py::dict>()
                                                 : py::dict();
    for (const auto& p : pairs) rec[p.first] = p.second;
    m.attr("RECORD_ARGS") = rec;
}

}  // namespace bind
}  // namespace gd

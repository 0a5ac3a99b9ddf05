// Bindings for sums (over one axis of a C-contiguous array, or over everything) and for the
// generic reduction over any set of axes of an array of any strides (reduce).
//
// Each kernel is also a registered instruction kind (instr_registry.hpp): gd.compile records a
// call through the binding's `<binding>_args` twin, which shares the binding's parse (its checks).
// Layouts (p = pointers, i = ints after the kind id i[0], d = reals):
//   sum_all   p[out, x]         i[N]
//   sum_axis  p[y, x]           i[outer, R, inner]
//   reduce    p[y|0, idx|0, x]  i[op (Red), nd, axes (bit mask), keepdim, shape (nd),
//                                 x's element strides (nd)]  d[param]
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "bind_common.hpp"
#include "bind_instr.hpp"
#include "instr_registry.hpp"
#include "kernels.hpp"
#include "reduce_ops.hpp"

namespace gd {
namespace bind {
namespace {

using instr::checked_result;
using instr::check_float_array;
using instr::elems_flops;
using instr::instr_tuple;
using instr::layout_valid;
using instr::operand;
using instr::P;
using instr::run_by_dtype;

int64_t g_sum_all_kind = -1, g_sum_axis_kind = -1, g_reduce_kind = -1;

// ---- sum_axis and sum_all ----

struct SumArgs {
    py::array x;
    bool f64 = false;
    int64_t outer = 1, R = 1, inner = 1;  // sum_axis: x as (outer, R, inner)
    std::vector<int64_t> out_shape;
};

SumArgs parse_sum_axis(const py::handle& xo, int64_t axis) {
    const char* op = "sum_axis";
    SumArgs s;
    s.x = as_array(xo, op, "x");
    s.f64 = float_kind(s.x, op, "x") == 'd';
    check_float_array(s.x, s.f64, op, "x");
    const int64_t nd = s.x.ndim();
    if (axis < -nd || axis >= nd)
        value_error(std::string(op) + ": axis " + std::to_string(axis) +
                    " is out of range for an array of shape " + shape_str(shape_of(s.x)));
    if (axis < 0) axis += nd;
    const std::vector<int64_t> shape = shape_of(s.x);
    for (int64_t d = 0; d < nd; ++d) {
        if (d < axis) s.outer *= shape[d];
        if (d > axis) s.inner *= shape[d];
        if (d != axis) s.out_shape.push_back(shape[d]);
    }
    s.R = shape[axis];
    return s;
}

SumArgs parse_sum_all(const py::handle& xo) {
    const char* op = "sum_all";
    SumArgs s;
    s.x = as_array(xo, op, "x");
    s.f64 = float_kind(s.x, op, "x") == 'd';
    check_float_array(s.x, s.f64, op, "x");
    s.R = s.x.size();
    return s;
}

// x (d0, ..., dn) -> the same without axis `axis` (negative counts from the end)
py::array sum_axis(const py::handle& xo, int64_t axis) {
    const SumArgs s = parse_sum_axis(xo, axis);
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array y = new_array<T>(s.out_shape);
        T* yp = out_ptr<T>(y);
        const T* xp = in_ptr<T>(s.x);
        py::gil_scoped_release nogil;
        kernels<T>().sum_axis(yp, xp, s.outer, s.R, s.inner);
        return y;
    };
    return s.f64 ? go(double{}) : go(float{});
}

// x (any shape) -> 0-d sum
py::array sum_all(const py::handle& xo) {
    const SumArgs s = parse_sum_all(xo);
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array y = new_array<T>({});
        T* yp = out_ptr<T>(y);
        const T* xp = in_ptr<T>(s.x);
        py::gil_scoped_release nogil;
        kernels<T>().sum_all(yp, xp, s.R);
        return y;
    };
    return s.f64 ? go(double{}) : go(float{});
}

py::tuple sum_axis_args(const py::handle& xo, int64_t axis, const py::handle& result) {
    const SumArgs s = parse_sum_axis(xo, axis);
    py::array y = checked_result(result, "sum_axis", "result", s.f64, s.out_shape);
    return instr_tuple({addr(y), addr(s.x)}, {g_sum_axis_kind, s.outer, s.R, s.inner}, {}, s.f64,
                       {s.x});
}

py::tuple sum_all_args(const py::handle& xo, const py::handle& result) {
    const SumArgs s = parse_sum_all(xo);
    py::array y = checked_result(result, "sum_all", "result", s.f64, {});
    return instr_tuple({addr(y), addr(s.x)}, {g_sum_all_kind, s.R}, {}, s.f64, {s.x});
}

template <class T>
void sum_all_run_t(const Instr& in) {
    kernels<T>().sum_all(P<T>(in, 0), P<T>(in, 1), in.i[1]);
}

template <class T>
void sum_axis_run_t(const Instr& in) {
    kernels<T>().sum_axis(P<T>(in, 0), P<T>(in, 1), in.i[1], in.i[2], in.i[3]);
}

void sum_all_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t e = in.f64 ? 8 : 4;
    operand(in, ops, 0, e, true);
    operand(in, ops, 1, e * in.i[1], false);
}

void sum_axis_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t e = in.f64 ? 8 : 4;
    operand(in, ops, 0, e * in.i[1] * in.i[3], true);
    operand(in, ops, 1, e * in.i[1] * in.i[2] * in.i[3], false);
}

// ---- reduce ----

struct ReduceArgs {
    Red op = Red::sum;
    std::string name;  // "reduce(<op>)"
    py::array x;
    bool f64 = false;
    std::vector<int64_t> shape, strides, out_shape;  // strides in elements
    uint64_t mask = 0;
    int64_t lo = 0, hi = 0;  // x's lowest and highest element offsets (elements)
};

ReduceArgs parse_reduce(int64_t op_id, const py::handle& xo, const py::object& axes, bool keepdim,
                        double param) {
    if (op_id < 0 || op_id >= kRedCount)
        value_error("reduce: argument 'op' must be an id of _core.REDUCE_OPS (0 to " +
                    std::to_string(kRedCount - 1) + "), got " + std::to_string(op_id));
    ReduceArgs r;
    r.op = static_cast<Red>(op_id);
    // "reduce(<op>)", the name every message starts with (made once: this runs per call)
    static const std::vector<std::string> names = [] {
        std::vector<std::string> v;
        for (int k = 0; k < kRedCount; ++k) v.push_back(std::string("reduce(") + kRedNames[k] + ")");
        return v;
    }();
    const std::string& name = names[static_cast<size_t>(op_id)];
    r.name = name;
    const char* opn = name.c_str();
    r.x = as_array(xo, opn, "x");
    const py::array& x = r.x;
    const int64_t nd = x.ndim();
    if (nd > 64) value_error(name + ": argument 'x' has " + std::to_string(nd) + " dims (at most 64)");
    r.shape = shape_of(x);
    const std::vector<int64_t>& shape = r.shape;
    uint64_t mask = 0;
    if (axes.is_none()) {
        for (int64_t d = 0; d < nd; ++d) mask |= uint64_t(1) << d;
    } else {
        // an int or a tuple/list of ints; anything with __index__ (NumPy integers) counts as one
        const auto bad = [&] {
            type_error(name + ": argument 'axes' must be None, an int or a tuple or list of "
                       "ints, got " + py::str(axes).cast<std::string>());
        };
        const auto as_int = [&](PyObject* o) -> int64_t {
            if (!PyIndex_Check(o)) bad();
            const py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(o));
            if (!i) throw py::error_already_set();
            const long long v = PyLong_AsLongLong(i.ptr());
            if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
            return v;
        };
        std::vector<int64_t> list;
        PyObject* ap = axes.ptr();
        if (PyTuple_Check(ap) || PyList_Check(ap)) {
            const py::ssize_t n = PySequence_Fast_GET_SIZE(ap);
            for (py::ssize_t k = 0; k < n; ++k) list.push_back(as_int(PySequence_Fast_GET_ITEM(ap, k)));
        } else {
            list.push_back(as_int(ap));
        }
        for (int64_t a : list) {
            if (a < -nd || a >= nd)
                value_error(name + ": argument 'axes': axis " + std::to_string(a) +
                            " is out of range for an array of shape " + shape_str(shape));
            const int64_t d = a < 0 ? a + nd : a;
            if ((mask >> d) & 1u)
                value_error(name + ": argument 'axes': axis " + std::to_string(d) +
                            " appears more than once");
            mask |= uint64_t(1) << d;
        }
    }
    r.mask = mask;
    for (int64_t d = 0; d < nd; ++d) {
        const bool red = (mask >> d) & 1u;
        if (red && shape[d] == 0 && red_needs_elements(r.op, param))
            value_error(name + ": cannot reduce over axis " + std::to_string(d) +
                        " of size 0 (no identity), array of shape " + shape_str(shape));
        if (!red) r.out_shape.push_back(shape[d]);
        else if (keepdim) r.out_shape.push_back(1);
    }
    r.f64 = float_kind(x, opn, "x") == 'd';
    const int64_t item = r.f64 ? 8 : 4;
    if (reinterpret_cast<uintptr_t>(x.data()) % static_cast<uintptr_t>(item) != 0)
        value_error(name + ": argument 'x' is not aligned to " + std::to_string(item) + " bytes");
    r.strides.resize(static_cast<size_t>(nd));
    for (int64_t d = 0; d < nd; ++d) {
        const int64_t sb = x.strides(d);
        if (sb % item != 0)
            value_error(name + ": argument 'x' has a stride of " + std::to_string(sb) +
                        " bytes, not a multiple of its item size");
        r.strides[d] = sb / item;
        if (shape[d] > 0) (r.strides[d] < 0 ? r.lo : r.hi) += (shape[d] - 1) * r.strides[d];
    }
    return r;
}

// x (any shape and strides) -> y, (y, idx) or idx over the dims not in `axes` (None: all);
// keepdim leaves the reduced dims with size 1
py::object reduce(int64_t op_id, const py::handle& xo, const py::object& axes, bool keepdim,
                  double param) {
    const ReduceArgs r = parse_reduce(op_id, xo, axes, keepdim, param);
    const auto go = [&](auto tag) -> py::object {
        using T = decltype(tag);
        py::array y, idx;
        T* yp = nullptr;
        int64_t* ip = nullptr;
        if (red_writes_value(r.op)) {
            y = new_array<T>(r.out_shape);
            yp = out_ptr<T>(y);
        }
        if (red_writes_index(r.op)) {
            idx = new_array<int64_t>(r.out_shape);
            ip = out_ptr<int64_t>(idx);
        }
        const T* xp = in_ptr<T>(r.x);
        {
            py::gil_scoped_release nogil;
            kernels<T>().reduce(r.op, yp, ip, xp, r.shape.data(), r.strides.data(),
                                static_cast<int64_t>(r.shape.size()), r.mask, param);
        }
        if (yp != nullptr && ip != nullptr) return py::make_tuple(y, idx);
        if (yp != nullptr) return std::move(y);
        return std::move(idx);
    };
    return r.f64 ? go(double{}) : go(float{});
}

// result: what reduce(...) returned (y, (y, idx) or idx)
py::tuple reduce_args(int64_t op_id, const py::handle& xo, const py::object& axes, bool keepdim,
                      double param, const py::handle& result) {
    const ReduceArgs r = parse_reduce(op_id, xo, axes, keepdim, param);
    const char* opn = r.name.c_str();
    const bool val = red_writes_value(r.op), ix = red_writes_index(r.op);
    py::object yo = py::reinterpret_borrow<py::object>(result), io = yo;
    if (val && ix) {
        if (!py::isinstance<py::tuple>(result) || py::len(result) != 2)
            type_error(r.name + ": argument 'result' must be the (values, indices) pair");
        yo = result.cast<py::tuple>()[0];
        io = result.cast<py::tuple>()[1];
    }
    uintptr_t yp = 0, ip = 0;
    if (val) yp = addr(checked_result(yo, opn, "result", r.f64, r.out_shape));
    if (ix) {
        py::array idx = as_array(io, opn, "result");
        check_array<int64_t>(idx, opn, "result");
        check_shape(idx, opn, "result", r.out_shape);
        ip = addr(idx);
    }
    const int64_t nd = static_cast<int64_t>(r.shape.size());
    std::vector<int64_t> ints{g_reduce_kind, static_cast<int64_t>(r.op), nd,
                              static_cast<int64_t>(r.mask), keepdim ? 1 : 0};
    ints.insert(ints.end(), r.shape.begin(), r.shape.end());
    ints.insert(ints.end(), r.strides.begin(), r.strides.end());
    // x's memory: from its lowest to its highest element, whatever its strides
    const int64_t item = r.f64 ? 8 : 4;
    std::vector<std::pair<uintptr_t, int64_t>> spans;
    if (r.x.size() > 0)
        spans.emplace_back(addr(r.x) + static_cast<uintptr_t>(r.lo * item),
                           (r.hi - r.lo + 1) * item);
    return py::make_tuple(std::vector<uintptr_t>{yp, ip, addr(r.x)}, ints,
                          std::vector<double>{param}, r.f64, spans);
}

template <class T>
void reduce_run_t(const Instr& in) {
    const int64_t* i = in.i.data() + 1;
    const int64_t nd = i[1];
    kernels<T>().reduce(static_cast<Red>(i[0]), P<T>(in, 0), static_cast<int64_t*>(in.p[1]),
                        P<T>(in, 2), i + 4, i + 4 + nd, nd, static_cast<uint64_t>(i[2]), in.d[0]);
}

// outputs: one element per kept position; x: the bytes between its lowest and highest element
// (any strides, negative ones too)
void reduce_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t e = in.f64 ? 8 : 4;
    const int64_t* i = in.i.data() + 1;
    const int64_t nd = i[1];
    int64_t out = 1, lo = 0, hi = 0, count = 1;
    for (int64_t d = 0; d < nd; ++d) {
        const int64_t n = i[4 + d], st = i[4 + nd + d];
        count *= n;
        if (!((static_cast<uint64_t>(i[2]) >> d) & 1u)) out *= n;
        if (n > 0) (st < 0 ? lo : hi) += (n - 1) * st;
    }
    operand(in, ops, 0, e * out, true);
    operand(in, ops, 1, 8 * out, true);
    if (count > 0 && in.p[2] != nullptr)
        ops.push_back({static_cast<char*>(in.p[2]) + e * lo, e * (hi - lo + 1), true, false, 2});
}

// per element of x: red_flops_per_element
int64_t reduce_flops(const Instr& in) {
    int64_t count = 1;
    for (int64_t d = 0; d < in.i[2]; ++d) count *= in.i[5 + d];
    return count * red_flops_per_element(static_cast<Red>(in.i[1]));
}

// Checked once by Program.add, so the replay may index blindly: the op, nd, the int count,
// sizes >= 0, the mask's bits inside nd, and outputs as the op writes them.
bool reduce_valid(size_t nptrs, const std::vector<int64_t>& i, size_t nreals) {
    if (nptrs != 3 || nreals != 1 || i.size() < 5) return false;
    const int64_t op = i[1], nd = i[2];
    if (op < 0 || op >= kRedCount || nd < 0 || nd > 64) return false;
    if (i.size() != static_cast<size_t>(5 + 2 * nd)) return false;
    for (int64_t d = 0; d < nd; ++d)
        if (i[5 + d] < 0) return false;
    return nd == 64 || (static_cast<uint64_t>(i[3]) >> nd) == 0;
}

}  // namespace

void bind_reduce(py::module_& m) {
    m.def("sum_axis", &sum_axis, py::arg("x"), py::arg("axis"),
          "Sum of a C-contiguous float array over one axis, deterministic for any thread count.");
    m.def("sum_all", &sum_all, py::arg("x"), "0-d sum of all elements, deterministic.");
    py::dict ops;
    for (int k = 0; k < kRedCount; ++k) ops[py::str(kRedNames[k])] = k;
    m.attr("REDUCE_OPS") = ops;
    m.def("reduce", &reduce, py::arg("op"), py::arg("x"), py::arg("axes") = py::none(),
          py::arg("keepdim") = false, py::arg("param") = 0.0,
          "Reduction `op` (an id of REDUCE_OPS) of a float array of any strides over `axes` "
          "(None: all), deterministic for any thread count. Returns y, (y, idx) for max/min, "
          "or idx (int64) for argmax/argmin. param: var/std correction, norm p.");
    g_sum_all_kind = register_instr_kind(
        {"sum_all", &run_by_dtype<sum_all_run_t<float>, sum_all_run_t<double>>, &sum_all_operands,
         &elems_flops<sum_all_operands>, &layout_valid<2, 2, 0, 1, 2>});
    g_sum_axis_kind = register_instr_kind(
        {"sum_axis", &run_by_dtype<sum_axis_run_t<float>, sum_axis_run_t<double>>,
         &sum_axis_operands, &elems_flops<sum_axis_operands>, &layout_valid<2, 4, 0, 1, 4>});
    g_reduce_kind = register_instr_kind(
        {"reduce", &run_by_dtype<reduce_run_t<float>, reduce_run_t<double>>, &reduce_operands,
         &reduce_flops, &reduce_valid});
    m.def("sum_axis_args", &sum_axis_args, py::arg("x"), py::arg("axis"), py::kw_only(),
          py::arg("result"),
          "The instruction gd.compile records for sum_axis(x, axis) = result: "
          "(pointers, ints, reals, float64, [(address, bytes) read]).");
    m.def("sum_all_args", &sum_all_args, py::arg("x"), py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for sum_all(x) = result.");
    m.def("reduce_args", &reduce_args, py::arg("op"), py::arg("x"), py::arg("axes") = py::none(),
          py::arg("keepdim") = false, py::arg("param") = 0.0, py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for reduce(...) = result.");
    add_record_args(m, {{"sum_axis", "sum_axis_args"},
                        {"sum_all", "sum_all_args"},
                        {"reduce", "reduce_args"}});
}

}  // namespace bind
}  // namespace gd

// Bindings for sums (over one axis of a C-contiguous array, or over everything) and for the
// generic reduction over any set of axes of an array of any strides (reduce).
#include <pybind11/stl.h>

#include "bind_common.hpp"
#include "kernels.hpp"
#include "reduce_ops.hpp"

namespace gd {
namespace bind {
namespace {

// x (d0, ..., dn) -> the same without axis `axis` (negative counts from the end)
py::array sum_axis(const py::handle& xo, int64_t axis) {
    const char* op = "sum_axis";
    py::array x = as_array(xo, op, "x");
    return dispatch_float(x, op, "x", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "x");
        const int64_t nd = x.ndim();
        if (axis < -nd || axis >= nd)
            value_error(std::string(op) + ": axis " + std::to_string(axis) +
                        " is out of range for an array of shape " + shape_str(shape_of(x)));
        if (axis < 0) axis += nd;
        std::vector<int64_t> shape = shape_of(x), out_shape;
        int64_t outer = 1, inner = 1;
        for (int64_t d = 0; d < nd; ++d) {
            if (d < axis) outer *= shape[d];
            if (d > axis) inner *= shape[d];
            if (d != axis) out_shape.push_back(shape[d]);
        }
        const int64_t R = shape[axis];
        py::array y = new_array<T>(out_shape);
        T* yp = out_ptr<T>(y);
        const T* xp = in_ptr<T>(x);
        {
            py::gil_scoped_release nogil;
            kernels<T>().sum_axis(yp, xp, outer, R, inner);
        }
        return y;
    });
}

// x (any shape) -> 0-d sum
py::array sum_all(const py::handle& xo) {
    const char* op = "sum_all";
    py::array x = as_array(xo, op, "x");
    return dispatch_float(x, op, "x", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "x");
        py::array y = new_array<T>({});
        T* yp = out_ptr<T>(y);
        const T* xp = in_ptr<T>(x);
        const int64_t n = x.size();
        {
            py::gil_scoped_release nogil;
            kernels<T>().sum_all(yp, xp, n);
        }
        return y;
    });
}

// x (any shape and strides) -> y, (y, idx) or idx over the dims not in `axes` (None: all);
// keepdim leaves the reduced dims with size 1
py::object reduce(int64_t op_id, const py::handle& xo, const py::object& axes, bool keepdim,
                  double param) {
    if (op_id < 0 || op_id >= kRedCount)
        value_error("reduce: argument 'op' must be an id of _core.REDUCE_OPS (0 to " +
                    std::to_string(kRedCount - 1) + "), got " + std::to_string(op_id));
    const Red op = static_cast<Red>(op_id);
    // "reduce(<op>)", the name every message starts with (made once: this runs per call)
    static const std::vector<std::string> names = [] {
        std::vector<std::string> v;
        for (int k = 0; k < kRedCount; ++k) v.push_back(std::string("reduce(") + kRedNames[k] + ")");
        return v;
    }();
    const std::string& name = names[static_cast<size_t>(op_id)];
    const char* opn = name.c_str();
    py::array x = as_array(xo, opn, "x");
    const int64_t nd = x.ndim();
    if (nd > 64) value_error(name + ": argument 'x' has " + std::to_string(nd) + " dims (at most 64)");
    const std::vector<int64_t> shape = shape_of(x);
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
    std::vector<int64_t> out_shape;
    for (int64_t d = 0; d < nd; ++d) {
        const bool r = (mask >> d) & 1u;
        if (r && shape[d] == 0 && red_needs_elements(op, param))
            value_error(name + ": cannot reduce over axis " + std::to_string(d) +
                        " of size 0 (no identity), array of shape " + shape_str(shape));
        if (!r) out_shape.push_back(shape[d]);
        else if (keepdim) out_shape.push_back(1);
    }
    return dispatch_float(x, opn, "x", [&](auto tag) -> py::object {
        using T = decltype(tag);
        if (reinterpret_cast<uintptr_t>(x.data()) % alignof(T) != 0)
            value_error(name + ": argument 'x' is not aligned to " + std::to_string(alignof(T)) +
                        " bytes");
        std::vector<int64_t> strides(static_cast<size_t>(nd));
        for (int64_t d = 0; d < nd; ++d) {
            const int64_t sb = x.strides(d);
            if (sb % static_cast<int64_t>(sizeof(T)) != 0)
                value_error(name + ": argument 'x' has a stride of " + std::to_string(sb) +
                            " bytes, not a multiple of its item size");
            strides[d] = sb / static_cast<int64_t>(sizeof(T));
        }
        py::array y, idx;
        T* yp = nullptr;
        int64_t* ip = nullptr;
        if (red_writes_value(op)) {
            y = new_array<T>(out_shape);
            yp = out_ptr<T>(y);
        }
        if (red_writes_index(op)) {
            idx = new_array<int64_t>(out_shape);
            ip = out_ptr<int64_t>(idx);
        }
        const T* xp = in_ptr<T>(x);
        {
            py::gil_scoped_release nogil;
            kernels<T>().reduce(op, yp, ip, xp, shape.data(), strides.data(), nd, mask, param);
        }
        if (yp != nullptr && ip != nullptr) return py::make_tuple(y, idx);
        if (yp != nullptr) return std::move(y);
        return std::move(idx);
    });
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
}

}  // namespace bind
}  // namespace gd

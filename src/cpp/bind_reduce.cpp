// Bindings for sums: over one axis of a C-contiguous array, or over everything.
#include "bind_common.hpp"
#include "kernels.hpp"

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

}  // namespace

void bind_reduce(py::module_& m) {
    m.def("sum_axis", &sum_axis, py::arg("x"), py::arg("axis"),
          "Sum of a C-contiguous float array over one axis, deterministic for any thread count.");
    m.def("sum_all", &sum_all, py::arg("x"), "0-d sum of all elements, deterministic.");
}

}  // namespace bind
}  // namespace gd

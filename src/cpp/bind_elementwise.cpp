// Bindings for elementwise arithmetic: operands are NumPy arrays of any strides (read in place,
// never copied) broadcast together as in NumPy, or Python numbers; float32/float64 (where's
// condition bool). The result is a new C-contiguous array, or `out`.
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "bind_common.hpp"
#include "elementwise.hpp"
#include "kernels.hpp"

namespace gd {
namespace bind {
namespace {

const char* const kArgNames[3] = {"a", "b", "c"};

// One parsed input: an array (with its strides in elements against the iteration shape) or a
// scalar; `absent` for a clamp bound left out.
struct Input {
    py::array arr;
    bool is_array = false;
    double scalar = 0.0;
    std::vector<int64_t> stride;
};

// The call, checked: the iteration shape, the output and every input's strides against it.
struct Call {
    const EwInfo* info = nullptr;
    std::string op;  // "elementwise <name>" for messages
    char kind = 0;   // 'f' float32, 'd' float64
    std::vector<int64_t> shape;
    Input in[3];
    py::array out;
    std::vector<int64_t> out_stride;
};

// Strides in elements of `a` broadcast to `shape` (0 along broadcast dims); raises when a
// byte stride or the pointer is not a multiple of the element size.
std::vector<int64_t> element_strides(const py::array& a, const std::vector<int64_t>& shape,
                                     const std::string& op, const char* arg) {
    const int64_t item = a.itemsize();
    if (reinterpret_cast<uintptr_t>(a.data()) % static_cast<uintptr_t>(item) != 0)
        value_error(op + ": argument '" + arg + "' is not aligned to " + std::to_string(item) +
                    " bytes");
    const int64_t nd = static_cast<int64_t>(shape.size()), an = a.ndim();
    std::vector<int64_t> st(static_cast<size_t>(nd), 0);
    for (int64_t d = 0; d < an; ++d) {
        const int64_t n = a.shape(d), bs = a.strides(d);
        if (n == 1) continue;  // broadcast (or a single index): stride 0
        if (bs % item != 0)
            value_error(op + ": argument '" + arg + "' has a stride of " + std::to_string(bs) +
                        " bytes, not a multiple of its element size " + std::to_string(item));
        st[static_cast<size_t>(nd - an + d)] = bs / item;
    }
    return st;
}

bool is_number(const py::handle& h) {
    return py::isinstance<py::float_>(h) || py::isinstance<py::int_>(h);
}

// Parses and checks (op, a, b, c, out). For sum_to, b is the output shape (a tuple).
Call parse(int64_t op_id, const py::handle& a, const py::handle& b, const py::handle& c,
           const py::handle& out) {
    Call call;
    if (op_id < 0 || op_id >= kEwCount)
        value_error("elementwise: op " + std::to_string(op_id) + " is not an id of EW_OPS (0.." +
                    std::to_string(kEwCount - 1) + ")");
    call.info = &kEwOps[op_id];
    const EwInfo& info = *call.info;
    call.op = std::string("elementwise ") + info.name;
    const std::string& op = call.op;
    const py::handle args[3] = {a, b, c};
    const int nin = info.op == Ew::sum_to ? 1 : info.arity;
    for (int k = nin; k < 3; ++k)
        if (!args[k].is_none() && !(info.op == Ew::sum_to && k == 1))
            type_error(op + ": takes " + std::to_string(nin) + " input(s), got argument '" +
                       kArgNames[k]);
    // inputs and the dtype: every float array shares one
    for (int k = 0; k < nin; ++k) {
        Input& in = call.in[k];
        const py::handle& h = args[k];
        const bool cond = info.cond_first && k == 0;
        if (py::isinstance<py::array>(h)) {
            in.arr = py::reinterpret_borrow<py::array>(h);
            in.is_array = true;
            if (cond) {
                if (!in.arr.dtype().equal(py::dtype::of<bool>()))
                    type_error(op + ": argument '" + kArgNames[k] + "' (the condition) must have "
                               "dtype bool, got " + dtype_str(in.arr));
                continue;
            }
            const char kd = float_kind(in.arr, op.c_str(), kArgNames[k]);
            if (in.arr.dtype().byteorder() == '>')
                type_error(op + ": argument '" + kArgNames[k] + "' must be in native byte order");
            if (call.kind != 0 && kd != call.kind)
                type_error(op + ": arguments must share one dtype, got " +
                           (call.kind == 'f' ? "float32" : "float64") + " and " +
                           dtype_str(in.arr) + " for '" + kArgNames[k] + "'");
            call.kind = kd;
        } else if (h.is_none() && info.op == Ew::clamp && k > 0) {
            in.scalar = k == 1 ? -INFINITY : INFINITY;  // no bound
        } else if (is_number(h) && !cond) {
            in.scalar = h.cast<double>();
        } else {
            type_error(op + ": argument '" + kArgNames[k] + "' must be a numpy.ndarray" +
                       (cond ? std::string(" of bool") : std::string(" or a Python number")) +
                       ", got " + py::str(py::type::of(h)).cast<std::string>());
        }
    }
    if (info.op == Ew::clamp && b.is_none() && c.is_none())
        value_error(op + ": at least one of 'b' (min) or 'c' (max) must not be None");
    if (call.kind == 0)
        type_error(op + ": needs at least one float32 or float64 array operand");

    // the iteration shape: NumPy broadcasting of the array inputs (sum_to: the input's shape)
    for (int k = 0; k < nin; ++k) {
        if (!call.in[k].is_array) continue;
        std::vector<int64_t> s = shape_of(call.in[k].arr);
        std::vector<int64_t>& r = call.shape;
        if (s.size() > r.size()) r.insert(r.begin(), s.size() - r.size(), 1);
        const size_t off = r.size() - s.size();
        for (size_t d = 0; d < s.size(); ++d) {
            int64_t& n = r[off + d];
            if (s[d] == n || s[d] == 1) continue;
            if (n == 1) {
                n = s[d];
                continue;
            }
            std::string shapes;
            for (int j = 0; j < nin; ++j)
                if (call.in[j].is_array)
                    shapes += std::string(shapes.empty() ? "" : ", ") + "'" + kArgNames[j] +
                              "' " + shape_str(shape_of(call.in[j].arr));
            value_error(op + ": operands could not be broadcast together: " + shapes);
        }
    }
    for (int k = 0; k < nin; ++k)
        if (call.in[k].is_array)
            call.in[k].stride = element_strides(call.in[k].arr, call.shape, op, kArgNames[k]);

    // the output: its shape (sum_to: b) and strides against the iteration shape
    std::vector<int64_t> out_shape = call.shape;
    if (info.op == Ew::sum_to) {
        if (!py::isinstance<py::tuple>(b) && !py::isinstance<py::list>(b))
            type_error(op + ": argument 'b' must be the output shape (a tuple of ints), got " +
                       py::str(py::type::of(b)).cast<std::string>());
        out_shape = b.cast<std::vector<int64_t>>();
        bool ok = out_shape.size() <= call.shape.size();
        for (size_t d = 0; ok && d < out_shape.size(); ++d) {
            const int64_t n = out_shape[d], m = call.shape[call.shape.size() - out_shape.size() + d];
            ok = n == m || n == 1;
        }
        if (!ok)
            value_error(op + ": can't sum an array of shape " + shape_str(call.shape) +
                        " to shape " + shape_str(out_shape) + " (it must broadcast to the input)");
    }
    if (out.is_none()) {
        call.out = call.kind == 'f' ? new_array<float>(out_shape) : new_array<double>(out_shape);
    } else {
        if (!py::isinstance<py::array>(out))
            type_error(op + ": argument 'out' must be a numpy.ndarray, got " +
                       py::str(py::type::of(out)).cast<std::string>());
        call.out = py::reinterpret_borrow<py::array>(out);
        if (float_kind(call.out, op.c_str(), "out") != call.kind)
            type_error(op + ": argument 'out' must have dtype " +
                       (call.kind == 'f' ? "float32" : "float64") + ", got " +
                       dtype_str(call.out));
        if (call.out.dtype().byteorder() == '>')
            type_error(op + ": argument 'out' must be in native byte order");
        check_shape(call.out, op.c_str(), "out", out_shape);
        if (!call.out.writeable())
            value_error(op + ": argument 'out' is read-only");
        for (py::ssize_t d = 0; d < call.out.ndim(); ++d)
            if (call.out.shape(d) > 1 && call.out.strides(d) == 0)
                value_error(op + ": argument 'out' has a zero stride (it would write one element "
                            "several times)");
    }
    // y's strides against the iteration shape: 0 along dims sum_to sums over
    call.out_stride = element_strides(call.out, call.shape, op, "out");
    if (info.op == Ew::sum_to) {
        const size_t lead = call.shape.size() - out_shape.size();
        for (size_t d = 0; d < call.shape.size(); ++d) {
            if (d < lead || (out_shape[d - lead] == 1 && call.shape[d] != 1))
                call.out_stride[d] = 0;  // summed
            else if (call.shape[d] == 0)
                call.out_stride[d] = 1;  // an empty output dim is kept (whatever its stride)
        }
    }

    // out may be exactly an input (an in-place op), never overlap one otherwise
    if (!out.is_none()) {
        int64_t olo, ohi;
        if (ew_span(call.shape.data(), call.out_stride.data(), int64_t(call.shape.size()), olo,
                    ohi)) {
            const int64_t item = call.out.itemsize();
            const char* o0 = static_cast<const char*>(call.out.data()) + olo * item;
            const char* o1 = static_cast<const char*>(call.out.data()) + (ohi + 1) * item;
            for (int k = 0; k < nin; ++k) {
                const Input& in = call.in[k];
                if (!in.is_array) continue;
                const int64_t it = in.arr.itemsize();
                int64_t lo, hi;
                ew_span(call.shape.data(), in.stride.data(), int64_t(call.shape.size()), lo, hi);
                const char* i0 = static_cast<const char*>(in.arr.data()) + lo * it;
                const char* i1 = static_cast<const char*>(in.arr.data()) + (hi + 1) * it;
                const bool same = in.arr.data() == call.out.data() && it == item &&
                                  in.stride == call.out_stride && info.op != Ew::sum_to;
                if (o0 < i1 && i0 < o1 && !same)
                    value_error(op + ": argument 'out' overlaps argument '" + kArgNames[k] +
                                "' in memory (only exactly the same array is allowed)");
            }
        }
    }
    return call;
}

template <class T>
void run(const Call& call) {
    const void* xp[3] = {nullptr, nullptr, nullptr};
    const int64_t* xs[3] = {nullptr, nullptr, nullptr};
    T sc[3] = {T(0), T(0), T(0)};
    for (int k = 0; k < 3; ++k) {
        const Input& in = call.in[k];
        if (in.is_array) {
            xp[k] = in.arr.data();
            xs[k] = in.stride.data();
        } else {
            sc[k] = T(in.scalar);
        }
    }
    T* y = static_cast<T*>(const_cast<void*>(call.out.data()));
    const Ew op = call.info->op;
    py::gil_scoped_release nogil;
    kernels<T>().elementwise(op, y, call.out_stride.data(), xp, xs, sc, call.shape.data(),
                             static_cast<int64_t>(call.shape.size()));
}

py::array elementwise(int64_t op, const py::handle& a, const py::handle& b, const py::handle& c,
                      const py::handle& out) {
    Call call = parse(op, a, b, c, out);
    if (call.kind == 'f') run<float>(call);
    else run<double>(call);
    return call.out;
}

// What gd.compile stores for one call (the `ew` instruction, program.cpp): the raw pointers
// [y, x0, x1, x2] (0 for a scalar), ints [op, ndim, shape, y strides, x0..x2 strides], the
// scalars, whether float64, and the (address, bytes) each array operand covers.
py::tuple elementwise_args(int64_t op, const py::handle& a, const py::handle& b,
                           const py::handle& c, const py::handle& out) {
    if (out.is_none()) value_error("elementwise_args: argument 'out' is required");
    const Call call = parse(op, a, b, c, out);
    const int64_t nd = static_cast<int64_t>(call.shape.size());
    std::vector<uintptr_t> ptrs{reinterpret_cast<uintptr_t>(call.out.data())};
    std::vector<int64_t> ints{op, nd};
    ints.insert(ints.end(), call.shape.begin(), call.shape.end());
    ints.insert(ints.end(), call.out_stride.begin(), call.out_stride.end());
    std::vector<double> reals;
    std::vector<std::pair<uintptr_t, int64_t>> spans;
    const auto span = [&](const py::array& arr, const std::vector<int64_t>& st) {
        int64_t lo, hi;
        if (!ew_span(call.shape.data(), st.data(), nd, lo, hi)) return;
        const int64_t item = arr.itemsize();
        spans.emplace_back(reinterpret_cast<uintptr_t>(arr.data()) + uintptr_t(lo * item),
                           (hi - lo + 1) * item);
    };
    span(call.out, call.out_stride);
    for (const Input& in : call.in) {
        ptrs.push_back(in.is_array ? reinterpret_cast<uintptr_t>(in.arr.data()) : 0);
        if (in.is_array) {
            ints.insert(ints.end(), in.stride.begin(), in.stride.end());
            span(in.arr, in.stride);
        } else {
            ints.insert(ints.end(), static_cast<size_t>(nd), 0);
        }
        reals.push_back(in.scalar);
    }
    return py::make_tuple(ptrs, ints, reals, call.kind == 'd', spans);
}

}  // namespace

void bind_elementwise(py::module_& m) {
    m.def("elementwise", &elementwise, py::arg("op"), py::arg("a"), py::arg("b") = py::none(),
          py::arg("c") = py::none(), py::arg("out") = py::none(),
          "y = op(a[, b[, c]]) elementwise with NumPy broadcasting; op an id of EW_OPS. Arrays "
          "of any strides (float32 or float64, one dtype; where's condition a: bool), or Python "
          "numbers; clamp(a, min b, max c) with either bound None; sum_to(a, shape b) sums a "
          "down to a shape that broadcasts to it. Returns a new C-contiguous array, or out.");
    m.def("elementwise_args", &elementwise_args, py::arg("op"), py::arg("a"),
          py::arg("b") = py::none(), py::arg("c") = py::none(), py::arg("out") = py::none(),
          "The checked operands of elementwise(op, a, b, c, out) as gd.compile records them: "
          "(pointers, ints, scalars, float64, spans).");
    py::dict ops;
    for (const EwInfo& e : kEwOps) ops[py::str(e.name)] = static_cast<int>(e.op);
    m.attr("EW_OPS") = ops;
}

}  // namespace bind
}  // namespace gd

// Bindings for elementwise arithmetic: operands are NumPy arrays of any strides (read in place,
// never copied) broadcast together as in NumPy, or Python numbers; float32/float64 (where's
// condition bool). The result is a new C-contiguous array, or `out`.
#include <pybind11/stl.h>

#include <algorithm>
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
// scalar. Fixed-size arrays, not vectors: a call on small arrays must not pay for allocations.
// (py::array's default constructor allocates an empty array: start from None instead)
inline py::array no_array() { return py::reinterpret_borrow<py::array>(py::handle(Py_None)); }

struct Input {
    py::array arr = no_array();
    bool is_array = false;
    double scalar = 0.0;
    int64_t stride[kEwMaxDims];
};

// The call, checked: the iteration shape, the output and every input's strides against it.
struct Call {
    const EwInfo* info = nullptr;
    char kind = 0;  // 'f' float32, 'd' float64
    int64_t nd = 0;
    int64_t shape[kEwMaxDims];
    Input in[3];
    py::array out = no_array();
    int64_t out_stride[kEwMaxDims];
};

// Error messages are built only when raised.
std::string opname(const EwInfo& info) { return std::string("elementwise ") + info.name; }

std::vector<int64_t> shape_vec(const int64_t* s, int64_t nd) { return {s, s + nd}; }

const char* kind_name(char k) { return k == 'f' ? "float32" : "float64"; }

// 'f', 'd', 'b' (bool) or 0 for any other dtype (or a non-native byte order)
char kind_of(const py::array& a) {
    const py::dtype dt = a.dtype();
    const char k = dt.kind();
    if (dt.byteorder() == '>') return 0;
    if (k == 'f') return dt.itemsize() == 4 ? 'f' : dt.itemsize() == 8 ? 'd' : 0;
    return k == 'b' ? 'b' : 0;
}

// Strides in elements of `a` broadcast to shape (nd dims), 0 along broadcast dims; raises when a
// byte stride or the pointer is not a multiple of the element size.
void element_strides(int64_t* st, const py::array& a, int64_t nd, const EwInfo& info,
                     const char* arg) {
    const int64_t item = a.itemsize();
    if (reinterpret_cast<uintptr_t>(a.data()) % static_cast<uintptr_t>(item) != 0)
        value_error(opname(info) + ": argument '" + arg + "' is not aligned to " +
                    std::to_string(item) + " bytes");
    const int64_t an = a.ndim();
    for (int64_t d = 0; d < nd - an; ++d) st[d] = 0;
    for (int64_t d = 0; d < an; ++d) {
        const int64_t n = a.shape(d), bs = a.strides(d);
        int64_t& out = st[nd - an + d];
        out = 0;
        if (n == 1) continue;  // broadcast (or a single index): stride 0
        if (bs % item != 0)
            value_error(opname(info) + ": argument '" + arg + "' has a stride of " +
                        std::to_string(bs) + " bytes, not a multiple of its element size " +
                        std::to_string(item));
        out = bs / item;
    }
}

bool is_number(const py::handle& h) {
    return py::isinstance<py::float_>(h) || py::isinstance<py::int_>(h);
}

[[noreturn]] void broadcast_error(const Call& call, int nin) {
    std::string shapes;
    for (int j = 0; j < nin; ++j)
        if (call.in[j].is_array)
            shapes += std::string(shapes.empty() ? "" : ", ") + "'" + kArgNames[j] + "' " +
                      shape_str(shape_of(call.in[j].arr));
    value_error(opname(*call.info) + ": operands could not be broadcast together: " + shapes);
}

// Parses and checks (op, a, b, c, out) into `call`. For sum_to, b is the output shape.
void parse(Call& call, int64_t op_id, const py::handle& a, const py::handle& b,
           const py::handle& c, const py::handle& out) {
    if (op_id < 0 || op_id >= kEwCount)
        value_error("elementwise: op " + std::to_string(op_id) + " is not an id of EW_OPS (0.." +
                    std::to_string(kEwCount - 1) + ")");
    call.info = &kEwOps[op_id];
    const EwInfo& info = *call.info;
    const py::handle args[3] = {a, b, c};
    const bool sum_to = info.op == Ew::sum_to;
    const int nin = sum_to ? 1 : info.arity;
    for (int k = nin; k < 3; ++k)
        if (!args[k].is_none() && !(sum_to && k == 1))
            type_error(opname(info) + ": takes " + std::to_string(nin) +
                       " input(s), got argument '" + kArgNames[k] + "'");
    // inputs and the dtype: every float array shares one
    for (int k = 0; k < nin; ++k) {
        Input& in = call.in[k];
        const py::handle& h = args[k];
        const bool cond = info.cond_first && k == 0;
        if (py::isinstance<py::array>(h)) {
            in.arr = py::reinterpret_borrow<py::array>(h);
            in.is_array = true;
            const char kd = kind_of(in.arr);
            if (cond) {
                if (kd != 'b')
                    type_error(opname(info) + ": argument '" + kArgNames[k] + "' (the condition) "
                               "must have dtype bool, got " + dtype_str(in.arr));
                continue;
            }
            if (kd != 'f' && kd != 'd')
                type_error(opname(info) + ": argument '" + kArgNames[k] + "' must have dtype "
                           "float32 or float64 (native byte order), got " + dtype_str(in.arr));
            if (call.kind != 0 && kd != call.kind)
                type_error(opname(info) + ": arguments must share one dtype, got " +
                           kind_name(call.kind) + " and " + dtype_str(in.arr) + " for '" +
                           kArgNames[k] + "'");
            call.kind = kd;
        } else if (h.is_none() && info.op == Ew::clamp && k > 0) {
            in.scalar = k == 1 ? -INFINITY : INFINITY;  // no bound
        } else if (is_number(h) && !cond) {
            in.scalar = h.cast<double>();
        } else {
            type_error(opname(info) + ": argument '" + kArgNames[k] + "' must be a numpy.ndarray" +
                       (cond ? std::string(" of bool") : std::string(" or a Python number")) +
                       ", got " + py::str(py::type::of(h)).cast<std::string>());
        }
    }
    if (info.op == Ew::clamp && b.is_none() && c.is_none())
        value_error(opname(info) + ": at least one of 'b' (min) or 'c' (max) must not be None");
    if (call.kind == 0)
        type_error(opname(info) + ": needs at least one float32 or float64 array operand");

    // the iteration shape: NumPy broadcasting of the array inputs (sum_to: the input's shape)
    int64_t& nd = call.nd;
    nd = 0;
    for (int k = 0; k < nin; ++k)
        if (call.in[k].is_array) nd = std::max<int64_t>(nd, call.in[k].arr.ndim());
    for (int64_t d = 0; d < nd; ++d) call.shape[d] = 1;
    for (int k = 0; k < nin; ++k) {
        if (!call.in[k].is_array) continue;
        const py::array& arr = call.in[k].arr;
        const int64_t an = arr.ndim();
        for (int64_t d = 0; d < an; ++d) {
            const int64_t m = arr.shape(d);
            int64_t& n = call.shape[nd - an + d];
            if (m == n || m == 1) continue;
            if (n != 1) broadcast_error(call, nin);
            n = m;
        }
    }
    for (int k = 0; k < nin; ++k)
        if (call.in[k].is_array)
            element_strides(call.in[k].stride, call.in[k].arr, nd, info, kArgNames[k]);

    // the output: its shape (sum_to: b) and strides against the iteration shape
    std::vector<int64_t> out_shape;
    if (sum_to) {
        if (!py::isinstance<py::tuple>(b) && !py::isinstance<py::list>(b))
            type_error(opname(info) + ": argument 'b' must be the output shape (a tuple of "
                       "ints), got " + py::str(py::type::of(b)).cast<std::string>());
        out_shape = b.cast<std::vector<int64_t>>();
        const int64_t on = static_cast<int64_t>(out_shape.size());
        bool ok = on <= nd;
        for (int64_t d = 0; ok && d < on; ++d) {
            const int64_t n = out_shape[d], m = call.shape[nd - on + d];
            ok = n == m || n == 1;
        }
        if (!ok)
            value_error(opname(info) + ": can't sum an array of shape " +
                        shape_str(shape_vec(call.shape, nd)) + " to shape " +
                        shape_str(out_shape) + " (it must broadcast to the input)");
    } else {
        out_shape.assign(call.shape, call.shape + nd);
    }
    const char out_kind = info.bool_out ? 'b' : call.kind;
    if (out.is_none()) {
        call.out = info.bool_out ? py::array(py::dtype("bool"), out_shape)
                   : call.kind == 'f' ? py::array(new_array<float>(out_shape))
                                      : py::array(new_array<double>(out_shape));
    } else {
        if (!py::isinstance<py::array>(out))
            type_error(opname(info) + ": argument 'out' must be a numpy.ndarray, got " +
                       py::str(py::type::of(out)).cast<std::string>());
        call.out = py::reinterpret_borrow<py::array>(out);
        if (kind_of(call.out) != out_kind)
            type_error(opname(info) + ": argument 'out' must have dtype " +
                       (info.bool_out ? "bool" : kind_name(call.kind)) +
                       " (native byte order), got " + dtype_str(call.out));
        check_shape(call.out, opname(info).c_str(), "out", out_shape);
        if (!call.out.writeable())
            value_error(opname(info) + ": argument 'out' is read-only");
        for (py::ssize_t d = 0; d < call.out.ndim(); ++d)
            if (call.out.shape(d) > 1 && call.out.strides(d) == 0)
                value_error(opname(info) + ": argument 'out' has a zero stride (it would write "
                            "one element several times)");
    }
    // y's strides against the iteration shape: 0 along the dims sum_to sums over
    element_strides(call.out_stride, call.out, nd, info, "out");
    if (sum_to) {
        const int64_t lead = nd - static_cast<int64_t>(out_shape.size());
        for (int64_t d = 0; d < nd; ++d) {
            if (d < lead || (out_shape[d - lead] == 1 && call.shape[d] != 1))
                call.out_stride[d] = 0;  // summed
            else if (call.shape[d] == 0)
                call.out_stride[d] = 1;  // an empty output dim is kept (whatever its stride)
        }
    }

    // out may be exactly an input (an in-place op), never overlap one otherwise
    if (!out.is_none()) {
        int64_t olo, ohi;
        if (ew_span(call.shape, call.out_stride, nd, olo, ohi)) {
            const int64_t item = call.out.itemsize();
            const char* o0 = static_cast<const char*>(call.out.data()) + olo * item;
            const char* o1 = static_cast<const char*>(call.out.data()) + (ohi + 1) * item;
            for (int k = 0; k < nin; ++k) {
                const Input& in = call.in[k];
                if (!in.is_array) continue;
                const int64_t it = in.arr.itemsize();
                int64_t lo, hi;
                ew_span(call.shape, in.stride, nd, lo, hi);
                const char* i0 = static_cast<const char*>(in.arr.data()) + lo * it;
                const char* i1 = static_cast<const char*>(in.arr.data()) + (hi + 1) * it;
                bool same = in.arr.data() == call.out.data() && it == item && !sum_to;
                for (int64_t d = 0; same && d < nd; ++d)
                    same = in.stride[d] == call.out_stride[d];
                if (o0 < i1 && i0 < o1 && !same)
                    value_error(opname(info) + ": argument 'out' overlaps argument '" +
                                kArgNames[k] + "' in memory (only exactly the same array is "
                                "allowed)");
            }
        }
    }
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
            xs[k] = in.stride;
        } else {
            sc[k] = T(in.scalar);
        }
    }
    T* y = static_cast<T*>(const_cast<void*>(call.out.data()));
    const Ew op = call.info->op;
    py::gil_scoped_release nogil;
    kernels<T>().elementwise(op, y, call.out_stride, xp, xs, sc, call.shape, call.nd);
}

py::array elementwise(int64_t op, const py::handle& a, const py::handle& b, const py::handle& c,
                      const py::handle& out) {
    Call call;
    parse(call, op, a, b, c, out);
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
    Call call;
    parse(call, op, a, b, c, out);
    const int64_t nd = call.nd;
    std::vector<uintptr_t> ptrs{reinterpret_cast<uintptr_t>(call.out.data())};
    std::vector<int64_t> ints{op, nd};
    ints.insert(ints.end(), call.shape, call.shape + nd);
    ints.insert(ints.end(), call.out_stride, call.out_stride + nd);
    std::vector<double> reals;
    std::vector<std::pair<uintptr_t, int64_t>> spans;
    const auto span = [&](const py::array& arr, const int64_t* st) {
        int64_t lo, hi;
        if (!ew_span(call.shape, st, nd, lo, hi)) return;
        const int64_t item = arr.itemsize();
        spans.emplace_back(reinterpret_cast<uintptr_t>(arr.data()) + uintptr_t(lo * item),
                           (hi - lo + 1) * item);
    };
    span(call.out, call.out_stride);
    for (const Input& in : call.in) {
        ptrs.push_back(in.is_array ? reinterpret_cast<uintptr_t>(in.arr.data()) : 0);
        if (in.is_array) {
            ints.insert(ints.end(), in.stride, in.stride + nd);
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
          "down to a shape that broadcasts to it; eq ne lt le gt ge return bool arrays. "
          "Returns a new C-contiguous array, or out.");
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

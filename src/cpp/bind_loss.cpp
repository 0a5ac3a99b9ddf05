// Bindings for softmax, log-softmax, fused softmax cross-entropy and mean squared error.
#include <string>

#include "bind_common.hpp"
#include "kernels.hpp"

namespace gd {
namespace bind {
namespace {


// x (B, C) -> y (B, C) row-wise; which = "softmax" | "log_softmax"
template <bool Log>
py::array softmax_like_forward(const py::handle& xo) {
    const char* op = Log ? "log_softmax_forward" : "softmax_forward";
    py::array x = as_array(xo, op, "x");
    return dispatch_float(x, op, "x", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "x");
        check_ndim(x, op, "x", 2, 2);
        const int64_t B = x.shape(0), C = x.shape(1);
        py::array y = new_array<T>({B, C});
        T* yp = out_ptr<T>(y);
        const T* xp = in_ptr<T>(x);
        {
            py::gil_scoped_release nogil;
            if (Log) kernels<T>().log_softmax_forward(yp, xp, B, C);
            else kernels<T>().softmax_forward(yp, xp, B, C);
        }
        return y;
    });
}

// dy, y (B, C) -> dx (B, C)
template <bool Log>
py::array softmax_like_backward(const py::handle& dyo, const py::handle& yo) {
    const char* op = Log ? "log_softmax_backward" : "softmax_backward";
    py::array dy = as_array(dyo, op, "dy"), y = as_array(yo, op, "y");
    return dispatch_float(dy, op, "dy", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(dy, op, "dy");
        check_array<T>(y, op, "y");
        check_ndim(dy, op, "dy", 2, 2);
        check_shape(y, op, "y", shape_of(dy));
        const int64_t B = dy.shape(0), C = dy.shape(1);
        py::array dx = new_array<T>({B, C});
        T* dxp = out_ptr<T>(dx);
        const T *dyp = in_ptr<T>(dy), *yp = in_ptr<T>(y);
        {
            py::gil_scoped_release nogil;
            if (Log) kernels<T>().log_softmax_backward(dxp, dyp, yp, B, C);
            else kernels<T>().softmax_backward(dxp, dyp, yp, B, C);
        }
        return dx;
    });
}

// Checks target is int64 (B,) with every entry in [0, C) or equal to ignore_index.
void check_target(const py::array& t, int64_t B, int64_t C, int64_t ignore_index, const char* op) {
    check_array<int64_t>(t, op, "target");
    check_shape(t, op, "target", {B});
    const int64_t* tp = in_ptr<int64_t>(t);
    for (int64_t r = 0; r < B; ++r) {
        if (tp[r] != ignore_index && (tp[r] < 0 || tp[r] >= C))
            value_error(std::string(op) + ": target[" + std::to_string(r) + "] = " +
                        std::to_string(tp[r]) + " is out of range for " + std::to_string(C) +
                        " classes (expected 0 <= target < " + std::to_string(C) + ")");
    }
}

// logits (B, C), target (B,) int64 -> (loss (B,), lse (B,))
py::tuple cross_entropy_forward(const py::handle& lo, const py::handle& to, int64_t ignore_index) {
    const char* op = "cross_entropy_forward";
    py::array logits = as_array(lo, op, "logits"), target = as_array(to, op, "target");
    return dispatch_float(logits, op, "logits", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(logits, op, "logits");
        check_ndim(logits, op, "logits", 2, 2);
        const int64_t B = logits.shape(0), C = logits.shape(1);
        check_target(target, B, C, ignore_index, op);
        py::array loss = new_array<T>({B}), lse = new_array<T>({B});
        T *lp = out_ptr<T>(loss), *sp = out_ptr<T>(lse);
        const T* xp = in_ptr<T>(logits);
        const int64_t* tp = in_ptr<int64_t>(target);
        {
            py::gil_scoped_release nogil;
            kernels<T>().cross_entropy_forward(lp, sp, xp, tp, B, C, ignore_index);
        }
        return py::make_tuple(loss, lse);
    });
}

// dloss () or (B,), logits (B, C), lse (B,), target (B,) -> dlogits (B, C)
py::array cross_entropy_backward(const py::handle& go, const py::handle& lo, const py::handle& so,
                                 const py::handle& to, int64_t ignore_index) {
    const char* op = "cross_entropy_backward";
    py::array g = as_array(go, op, "dloss"), logits = as_array(lo, op, "logits");
    py::array lse = as_array(so, op, "lse"), target = as_array(to, op, "target");
    return dispatch_float(logits, op, "logits", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(logits, op, "logits");
        check_ndim(logits, op, "logits", 2, 2);
        const int64_t B = logits.shape(0), C = logits.shape(1);
        check_array<T>(g, op, "dloss");
        check_array<T>(lse, op, "lse");
        check_shape(lse, op, "lse", {B});
        check_target(target, B, C, ignore_index, op);
        int64_t stride = 1;
        if (g.ndim() == 0) stride = 0;
        else check_shape(g, op, "dloss", {B});
        py::array dx = new_array<T>({B, C});
        T* dxp = out_ptr<T>(dx);
        const T *gp = in_ptr<T>(g), *xp = in_ptr<T>(logits), *sp = in_ptr<T>(lse);
        const int64_t* tp = in_ptr<int64_t>(target);
        {
            py::gil_scoped_release nogil;
            kernels<T>().cross_entropy_backward(dxp, gp, stride, xp, sp, tp, B, C, ignore_index);
        }
        return dx;
    });
}

// a, b (same shape) -> 0-d sum of squared differences
py::array mse_forward(const py::handle& ao, const py::handle& bo) {
    const char* op = "mse_forward";
    py::array a = as_array(ao, op, "input"), b = as_array(bo, op, "target");
    return dispatch_float(a, op, "input", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(a, op, "input");
        check_array<T>(b, op, "target");
        check_shape(b, op, "target", shape_of(a));
        py::array out = new_array<T>({});
        T* op_ = out_ptr<T>(out);
        const T *ap = in_ptr<T>(a), *bp = in_ptr<T>(b);
        const int64_t n = a.size();
        {
            py::gil_scoped_release nogil;
            kernels<T>().mse_forward(op_, ap, bp, n);
        }
        return out;
    });
}

// -> scale * dloss * (a - b), dloss an optional 0-d array (the upstream gradient)
py::array mse_backward(const py::handle& ao, const py::handle& bo, double scale,
                       const py::handle& go) {
    const char* op = "mse_backward";
    py::array a = as_array(ao, op, "input"), b = as_array(bo, op, "target");
    return dispatch_float(a, op, "input", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(a, op, "input");
        check_array<T>(b, op, "target");
        check_shape(b, op, "target", shape_of(a));
        if (!go.is_none()) {
            py::array g = as_array(go, op, "dloss");
            check_array<T>(g, op, "dloss");
            check_shape(g, op, "dloss", {});
            scale = scale * double(*in_ptr<T>(g));
        }
        py::array da = new_array<T>(shape_of(a));
        T* dap = out_ptr<T>(da);
        const T *ap = in_ptr<T>(a), *bp = in_ptr<T>(b);
        const int64_t n = a.size();
        {
            py::gil_scoped_release nogil;
            kernels<T>().mse_backward(dap, ap, bp, n, T(scale));
        }
        return da;
    });
}

}  // namespace

void bind_loss(py::module_& m) {
    m.def("softmax_forward", &softmax_like_forward<false>, py::arg("x"), "Row-wise softmax of x (B, C).");
    m.def("softmax_backward", &softmax_like_backward<false>, py::arg("dy"), py::arg("y"),
          "dx = y * (dy - sum(dy * y)) row-wise, from the saved softmax output y.");
    m.def("log_softmax_forward", &softmax_like_forward<true>, py::arg("x"),
          "Row-wise log-softmax of x (B, C), max-subtracted.");
    m.def("log_softmax_backward", &softmax_like_backward<true>, py::arg("dy"), py::arg("y"),
          "dx = dy - exp(y) * sum(dy) row-wise, from the saved log-softmax output y.");
    m.def("cross_entropy_forward", &cross_entropy_forward, py::arg("logits"), py::arg("target"),
          py::arg("ignore_index") = -100,
          "Per-row softmax cross-entropy from logits (B, C) and int64 targets (B,): (loss, lse).");
    m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("dloss"), py::arg("logits"),
          py::arg("lse"), py::arg("target"), py::arg("ignore_index") = -100,
          "dlogits = dloss * (softmax(logits) - onehot(target)); dloss is 0-d or (B,).");
    m.def("mse_forward", &mse_forward, py::arg("input"), py::arg("target"),
          "0-d sum of (input - target)^2.");
    m.def("mse_backward", &mse_backward, py::arg("input"), py::arg("target"), py::arg("scale"),
          py::arg("dloss") = py::none(),
          "scale * dloss * (input - target); dloss is an optional 0-d array (default 1).");
}

}  // namespace bind
}  // namespace gd

// Bindings for the linear family: gemm (matrix products) and linear forward/backward.
#include "bind_common.hpp"
#include "kernels.hpp"

namespace gd {
namespace bind {
namespace {

// x (IN,) or (B, IN), W (OUT, IN), b (OUT,) or None -> y (OUT,) or (B, OUT)
py::array linear_forward(const py::handle& xo, const py::handle& Wo, const py::handle& bo) {
    const char* op = "linear_forward";
    py::array x = as_array(xo, op, "x"), W = as_array(Wo, op, "weight");
    return dispatch_float(x, op, "x", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "x");
        check_array<T>(W, op, "weight");
        check_ndim(x, op, "x", 1, 2);
        check_ndim(W, op, "weight", 2, 2);
        const int64_t IN = x.shape(x.ndim() - 1), B = x.ndim() == 2 ? x.shape(0) : 1;
        const int64_t OUT = W.shape(0);
        if (W.shape(1) != IN)
            value_error(std::string(op) + ": x has " + std::to_string(IN) +
                        " features, so argument 'weight' must have shape (OUT, " +
                        std::to_string(IN) + "), got " + shape_str(shape_of(W)));
        const T* bp = nullptr;
        py::array b;
        if (!bo.is_none()) {
            b = as_array(bo, op, "bias");
            check_array<T>(b, op, "bias");
            check_shape(b, op, "bias", {OUT});
            bp = in_ptr<T>(b);
        }
        py::array y = x.ndim() == 2 ? new_array<T>({B, OUT}) : new_array<T>({OUT});
        T* yp = out_ptr<T>(y);
        const T *xp = in_ptr<T>(x), *Wp = in_ptr<T>(W);
        {
            py::gil_scoped_release nogil;
            kernels<T>().linear_forward(yp, xp, Wp, bp, B, IN, OUT);
        }
        return y;
    });
}

// dy like y, x, W as in forward -> (dx or None, dW or None, db or None)
py::tuple linear_backward(const py::handle& dyo, const py::handle& xo, const py::handle& Wo,
                          bool need_dx, bool need_dW, bool need_db) {
    const char* op = "linear_backward";
    py::array dy = as_array(dyo, op, "dy"), x = as_array(xo, op, "x"), W = as_array(Wo, op, "weight");
    return dispatch_float(x, op, "x", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "x");
        check_array<T>(W, op, "weight");
        check_array<T>(dy, op, "dy");
        check_ndim(x, op, "x", 1, 2);
        check_ndim(W, op, "weight", 2, 2);
        const int64_t IN = x.shape(x.ndim() - 1), B = x.ndim() == 2 ? x.shape(0) : 1;
        const int64_t OUT = W.shape(0);
        check_shape(W, op, "weight", {OUT, IN});
        if (x.ndim() == 2) check_shape(dy, op, "dy", {B, OUT});
        else check_shape(dy, op, "dy", {OUT});
        py::object dx = py::none(), dW = py::none(), db = py::none();
        T *dxp = nullptr, *dWp = nullptr, *dbp = nullptr;
        if (need_dx) {
            py::array a = new_array<T>(shape_of(x));
            dxp = out_ptr<T>(a);
            dx = a;
        }
        if (need_dW) {
            py::array a = new_array<T>({OUT, IN});
            dWp = out_ptr<T>(a);
            dW = a;
        }
        if (need_db) {
            py::array a = new_array<T>({OUT});
            dbp = out_ptr<T>(a);
            db = a;
        }
        const T *dyp = in_ptr<T>(dy), *xp = in_ptr<T>(x), *Wp = in_ptr<T>(W);
        {
            py::gil_scoped_release nogil;
            kernels<T>().linear_backward(dxp, dWp, dbp, dyp, xp, Wp, B, IN, OUT);
        }
        return py::make_tuple(dx, dW, db);
    });
}

// A (M, K) (or (K, M) if trans_a), B (K, N) (or (N, K) if trans_b) -> alpha op(A) op(B) + beta C
py::array gemm(const py::handle& Ao, const py::handle& Bo, bool ta, bool tb, double alpha,
               double beta, const py::handle& Co) {
    const char* op = "gemm";
    py::array A = as_array(Ao, op, "a"), B = as_array(Bo, op, "b");
    return dispatch_float(A, op, "a", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(A, op, "a");
        check_array<T>(B, op, "b");
        check_ndim(A, op, "a", 2, 2);
        check_ndim(B, op, "b", 2, 2);
        const int64_t M = ta ? A.shape(1) : A.shape(0), K = ta ? A.shape(0) : A.shape(1);
        const int64_t KB = tb ? B.shape(1) : B.shape(0), N = tb ? B.shape(0) : B.shape(1);
        if (K != KB)
            value_error(std::string(op) + ": inner dimensions differ: op(a) is (" +
                        std::to_string(M) + ", " + std::to_string(K) + "), op(b) is (" +
                        std::to_string(KB) + ", " + std::to_string(N) + ")");
        py::array C;
        if (Co.is_none()) {
            if (beta != 0.0) value_error("gemm: beta != 0 needs an output array 'out'");
            C = new_array<T>({M, N});
        } else {
            C = as_array(Co, op, "out");
            check_array<T>(C, op, "out");
            check_shape(C, op, "out", {M, N});
            if (!C.writeable()) value_error("gemm: argument 'out' is read-only");
            check_no_overlap(C, A, op, "out", "a");
            check_no_overlap(C, B, op, "out", "b");
        }
        T* Cp = out_ptr<T>(C);
        const T *Ap = in_ptr<T>(A), *Bp = in_ptr<T>(B);
        const int64_t lda = A.shape(1), ldb = B.shape(1);
        {
            py::gil_scoped_release nogil;
            kernels<T>().gemm(ta, tb, M, N, K, T(alpha), Ap, lda, Bp, ldb, T(beta), Cp, N);
        }
        return C;
    });
}

}  // namespace

void bind_linear(py::module_& m) {
    m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("weight"),
          py::arg("bias") = py::none(),
          "y = x @ weight.T + bias for x (IN,) or (B, IN), weight (OUT, IN), bias (OUT,) or None.");
    m.def("linear_backward", &linear_backward, py::arg("dy"), py::arg("x"), py::arg("weight"),
          py::arg("need_dx") = true, py::arg("need_dw") = true, py::arg("need_db") = true,
          "(dx, dW, db) of y = x @ weight.T + bias; outputs not needed are None.");
    m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
          py::arg("trans_b") = false, py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
          py::arg("out") = py::none(),
          "alpha * op(a) @ op(b) + beta * out for 2-d float32/float64 C-contiguous arrays.");
}

}  // namespace bind
}  // namespace gd

// Bindings for the linear family: gemm (matrix products) and linear forward/backward.
#include <cstdint>
#include <string>
#include <vector>

#include "bind_common.hpp"
#include "bind_instr.hpp"
#include "instr_registry.hpp"
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

// ---- gemm: also a registered instruction kind (instr_registry.hpp), recorded by gemm_args ----
//   gemm  p[C, A, B]  i[ta, tb, M, N, K, lda, ldb, ldc]  d[alpha, beta]   (after the kind id)

int64_t g_gemm_kind = -1;

struct GemmArgs {
    py::array A, B, C;  // C: the given `out`, or none
    bool f64 = false;
    int64_t M = 0, N = 0, K = 0;
};

GemmArgs parse_gemm(const py::handle& Ao, const py::handle& Bo, bool ta, bool tb, double beta,
                    const py::handle& Co) {
    const char* op = "gemm";
    GemmArgs g;
    g.A = as_array(Ao, op, "a");
    g.B = as_array(Bo, op, "b");
    g.f64 = float_kind(g.A, op, "a") == 'd';
    const py::array &A = g.A, &B = g.B;
    instr::check_float_array(A, g.f64, op, "a");
    instr::check_float_array(B, g.f64, op, "b");
    check_ndim(A, op, "a", 2, 2);
    check_ndim(B, op, "b", 2, 2);
    g.M = ta ? A.shape(1) : A.shape(0);
    g.K = ta ? A.shape(0) : A.shape(1);
    const int64_t KB = tb ? B.shape(1) : B.shape(0);
    g.N = tb ? B.shape(0) : B.shape(1);
    if (g.K != KB)
        value_error(std::string(op) + ": inner dimensions differ: op(a) is (" +
                    std::to_string(g.M) + ", " + std::to_string(g.K) + "), op(b) is (" +
                    std::to_string(KB) + ", " + std::to_string(g.N) + ")");
    if (Co.is_none()) {
        if (beta != 0.0) value_error("gemm: beta != 0 needs an output array 'out'");
    } else {
        g.C = as_array(Co, op, "out");
        instr::check_float_array(g.C, g.f64, op, "out");
        check_shape(g.C, op, "out", {g.M, g.N});
        if (!g.C.writeable()) value_error("gemm: argument 'out' is read-only");
        check_no_overlap(g.C, A, op, "out", "a");
        check_no_overlap(g.C, B, op, "out", "b");
    }
    return g;
}

// A (M, K) (or (K, M) if trans_a), B (K, N) (or (N, K) if trans_b) -> alpha op(A) op(B) + beta C
py::array gemm(const py::handle& Ao, const py::handle& Bo, bool ta, bool tb, double alpha,
               double beta, const py::handle& Co) {
    GemmArgs g = parse_gemm(Ao, Bo, ta, tb, beta, Co);
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array C = Co.is_none() ? new_array<T>({g.M, g.N}) : g.C;
        T* Cp = out_ptr<T>(C);
        const T *Ap = in_ptr<T>(g.A), *Bp = in_ptr<T>(g.B);
        const int64_t lda = g.A.shape(1), ldb = g.B.shape(1);
        {
            py::gil_scoped_release nogil;
            kernels<T>().gemm(ta, tb, g.M, g.N, g.K, T(alpha), Ap, lda, Bp, ldb, T(beta), Cp,
                              g.N);
        }
        return C;
    };
    return g.f64 ? go(double{}) : go(float{});
}

py::tuple gemm_args(const py::handle& Ao, const py::handle& Bo, bool ta, bool tb, double alpha,
                    double beta, const py::handle& Co, const py::handle& result) {
    const GemmArgs g = parse_gemm(Ao, Bo, ta, tb, beta, Co);
    py::array C = instr::checked_result(result, "gemm", "result", g.f64, {g.M, g.N});
    if (!Co.is_none() && addr(C) != addr(g.C))
        value_error("gemm: argument 'result' must be argument 'out' when out is given");
    std::vector<py::array> reads{g.A, g.B};
    if (beta != 0.0) reads.push_back(C);  // beta * C: out is read too
    return instr::instr_tuple({addr(C), addr(g.A), addr(g.B)},
                              {g_gemm_kind, ta ? 1 : 0, tb ? 1 : 0, g.M, g.N, g.K,
                               int64_t(g.A.shape(1)), int64_t(g.B.shape(1)), g.N},
                              {alpha, beta}, g.f64, reads);
}

template <class T>
void gemm_run_t(const Instr& in) {
    const int64_t* i = in.i.data() + 1;
    kernels<T>().gemm(i[0] != 0, i[1] != 0, i[2], i[3], i[4], T(in.d[0]), instr::P<T>(in, 1), i[5],
                      instr::P<T>(in, 2), i[6], T(in.d[1]), instr::P<T>(in, 0), i[7]);
}

void gemm_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t e = in.f64 ? 8 : 4;
    const int64_t* i = in.i.data() + 1;
    const int64_t C = e * i[2] * i[3];
    if (in.d[1] != 0.0) ops.push_back({in.p[0], C, true, true, 0});  // beta * C read
    else instr::operand(in, ops, 0, C, true);
    instr::operand(in, ops, 1, e * i[2] * i[4], false);
    instr::operand(in, ops, 2, e * i[4] * i[3], false);
}

int64_t gemm_flops(const Instr& in) { return 2 * in.i[3] * in.i[4] * in.i[5]; }

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
    g_gemm_kind = register_instr_kind({"gemm", &instr::run_by_dtype<gemm_run_t<float>, gemm_run_t<double>>,
                                       &gemm_operands, &gemm_flops,
                                       &instr::layout_valid<3, 9, 2, 1, 9>});
    m.def("gemm_args", &gemm_args, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
          py::arg("trans_b") = false, py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
          py::arg("out") = py::none(), py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for gemm(...) = result: "
          "(pointers, ints, reals, float64, [(address, bytes) read]).");
    add_record_args(m, {{"gemm", "gemm_args"}});
}

}  // namespace bind
}  // namespace gd

// Bindings for softmax, log-softmax, fused softmax cross-entropy and mean squared error.
//
// Every kernel here is also a registered instruction kind (instr_registry.hpp), so gd.compile
// records each call as one `call` instruction laid out by the binding's `<binding>_args` twin;
// a binding and its twin share one parse function (the checks), so a call is recorded exactly
// when it runs eagerly. Layouts (p = pointers, i = ints after the kind id i[0], d = reals):
//   softmax_fwd, log_softmax_fwd  p[y, x]         i[B, C]
//   softmax_bwd, log_softmax_bwd  p[dx, dy, y]    i[B, C]
//   ce_fwd   p[loss, lse, logits, target]           i[B, C, ignore_index]
//   ce_bwd   p[dlogits, dloss, logits, lse, target] i[dloss_stride (0: 0-d), B, C, ignore_index]
//   mse_fwd  p[out, a, b]                           i[N]
//   mse_bwd  p[da, a, b, dloss|0]                   i[N]   d[scale] (times dloss[0] if given)
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "bind_common.hpp"
#include "bind_instr.hpp"
#include "instr_registry.hpp"
#include "kernels.hpp"

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

int64_t g_softmax_fwd_kind = -1, g_softmax_bwd_kind = -1, g_log_softmax_fwd_kind = -1,
        g_log_softmax_bwd_kind = -1;
int64_t g_ce_fwd_kind = -1, g_ce_bwd_kind = -1, g_mse_fwd_kind = -1, g_mse_bwd_kind = -1;

// ---- softmax and log-softmax, row-wise on (B, C) ----

struct Rows {
    py::array x, dy, y;  // forward: x; backward: dy and y
    bool f64 = false;
    int64_t B = 0, C = 0;
};

template <bool Log>
Rows parse_softmax_forward(const py::handle& xo) {
    const char* op = Log ? "log_softmax_forward" : "softmax_forward";
    Rows r;
    r.x = as_array(xo, op, "x");
    r.f64 = float_kind(r.x, op, "x") == 'd';
    check_float_array(r.x, r.f64, op, "x");
    check_ndim(r.x, op, "x", 2, 2);
    r.B = r.x.shape(0);
    r.C = r.x.shape(1);
    return r;
}

template <bool Log>
Rows parse_softmax_backward(const py::handle& dyo, const py::handle& yo) {
    const char* op = Log ? "log_softmax_backward" : "softmax_backward";
    Rows r;
    r.dy = as_array(dyo, op, "dy");
    r.y = as_array(yo, op, "y");
    r.f64 = float_kind(r.dy, op, "dy") == 'd';
    check_float_array(r.dy, r.f64, op, "dy");
    check_float_array(r.y, r.f64, op, "y");
    check_ndim(r.dy, op, "dy", 2, 2);
    check_shape(r.y, op, "y", shape_of(r.dy));
    r.B = r.dy.shape(0);
    r.C = r.dy.shape(1);
    return r;
}

// x (B, C) -> y (B, C) row-wise
template <bool Log>
py::array softmax_like_forward(const py::handle& xo) {
    const Rows r = parse_softmax_forward<Log>(xo);
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array y = new_array<T>({r.B, r.C});
        T* yp = out_ptr<T>(y);
        const T* xp = in_ptr<T>(r.x);
        py::gil_scoped_release nogil;
        if (Log) kernels<T>().log_softmax_forward(yp, xp, r.B, r.C);
        else kernels<T>().softmax_forward(yp, xp, r.B, r.C);
        return y;
    };
    return r.f64 ? go(double{}) : go(float{});
}

// dy, y (B, C) -> dx (B, C)
template <bool Log>
py::array softmax_like_backward(const py::handle& dyo, const py::handle& yo) {
    const Rows r = parse_softmax_backward<Log>(dyo, yo);
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array dx = new_array<T>({r.B, r.C});
        T* dxp = out_ptr<T>(dx);
        const T *dyp = in_ptr<T>(r.dy), *yp = in_ptr<T>(r.y);
        py::gil_scoped_release nogil;
        if (Log) kernels<T>().log_softmax_backward(dxp, dyp, yp, r.B, r.C);
        else kernels<T>().softmax_backward(dxp, dyp, yp, r.B, r.C);
        return dx;
    };
    return r.f64 ? go(double{}) : go(float{});
}

template <bool Log>
py::tuple softmax_like_forward_args(const py::handle& xo, const py::handle& result) {
    const Rows r = parse_softmax_forward<Log>(xo);
    const char* op = Log ? "log_softmax_forward" : "softmax_forward";
    py::array y = checked_result(result, op, "result", r.f64, {r.B, r.C});
    return instr_tuple({addr(y), addr(r.x)},
                       {Log ? g_log_softmax_fwd_kind : g_softmax_fwd_kind, r.B, r.C}, {}, r.f64,
                       {r.x});
}

template <bool Log>
py::tuple softmax_like_backward_args(const py::handle& dyo, const py::handle& yo,
                                     const py::handle& result) {
    const Rows r = parse_softmax_backward<Log>(dyo, yo);
    const char* op = Log ? "log_softmax_backward" : "softmax_backward";
    py::array dx = checked_result(result, op, "result", r.f64, {r.B, r.C});
    return instr_tuple({addr(dx), addr(r.dy), addr(r.y)},
                       {Log ? g_log_softmax_bwd_kind : g_softmax_bwd_kind, r.B, r.C}, {}, r.f64,
                       {r.dy, r.y});
}

template <class T, bool Log>
void softmax_fwd_run_t(const Instr& in) {
    if (Log) kernels<T>().log_softmax_forward(P<T>(in, 0), P<T>(in, 1), in.i[1], in.i[2]);
    else kernels<T>().softmax_forward(P<T>(in, 0), P<T>(in, 1), in.i[1], in.i[2]);
}

template <class T, bool Log>
void softmax_bwd_run_t(const Instr& in) {
    if (Log)
        kernels<T>().log_softmax_backward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), in.i[1], in.i[2]);
    else
        kernels<T>().softmax_backward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), in.i[1], in.i[2]);
}

void softmax_fwd_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t n = (in.f64 ? 8 : 4) * in.i[1] * in.i[2];
    operand(in, ops, 0, n, true);
    operand(in, ops, 1, n, false);
}

void softmax_bwd_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t n = (in.f64 ? 8 : 4) * in.i[1] * in.i[2];
    operand(in, ops, 0, n, true);
    operand(in, ops, 1, n, false);
    operand(in, ops, 2, n, false);
}

// ---- cross-entropy and MSE ----

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

struct CeArgs {
    py::array dloss, logits, lse, target;  // dloss and lse: backward only
    bool f64 = false;
    int64_t B = 0, C = 0, stride = 1;  // stride: dloss's (0 for a 0-d dloss)
};

CeArgs parse_ce_forward(const py::handle& lo, const py::handle& to, int64_t ignore_index) {
    const char* op = "cross_entropy_forward";
    CeArgs c;
    c.logits = as_array(lo, op, "logits");
    c.target = as_array(to, op, "target");
    c.f64 = float_kind(c.logits, op, "logits") == 'd';
    check_float_array(c.logits, c.f64, op, "logits");
    check_ndim(c.logits, op, "logits", 2, 2);
    c.B = c.logits.shape(0);
    c.C = c.logits.shape(1);
    check_target(c.target, c.B, c.C, ignore_index, op);
    return c;
}

CeArgs parse_ce_backward(const py::handle& go, const py::handle& lo, const py::handle& so,
                         const py::handle& to, int64_t ignore_index) {
    const char* op = "cross_entropy_backward";
    CeArgs c;
    c.dloss = as_array(go, op, "dloss");
    c.logits = as_array(lo, op, "logits");
    c.lse = as_array(so, op, "lse");
    c.target = as_array(to, op, "target");
    c.f64 = float_kind(c.logits, op, "logits") == 'd';
    check_float_array(c.logits, c.f64, op, "logits");
    check_ndim(c.logits, op, "logits", 2, 2);
    c.B = c.logits.shape(0);
    c.C = c.logits.shape(1);
    check_float_array(c.dloss, c.f64, op, "dloss");
    check_float_array(c.lse, c.f64, op, "lse");
    check_shape(c.lse, op, "lse", {c.B});
    check_target(c.target, c.B, c.C, ignore_index, op);
    if (c.dloss.ndim() == 0) c.stride = 0;
    else check_shape(c.dloss, op, "dloss", {c.B});
    return c;
}

// logits (B, C), target (B,) int64 -> (loss (B,), lse (B,))
py::tuple cross_entropy_forward(const py::handle& lo, const py::handle& to, int64_t ignore_index) {
    const CeArgs c = parse_ce_forward(lo, to, ignore_index);
    const auto go = [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        py::array loss = new_array<T>({c.B}), lse = new_array<T>({c.B});
        T *lp = out_ptr<T>(loss), *sp = out_ptr<T>(lse);
        const T* xp = in_ptr<T>(c.logits);
        const int64_t* tp = in_ptr<int64_t>(c.target);
        {
            py::gil_scoped_release nogil;
            kernels<T>().cross_entropy_forward(lp, sp, xp, tp, c.B, c.C, ignore_index);
        }
        return py::make_tuple(loss, lse);
    };
    return c.f64 ? go(double{}) : go(float{});
}

// dloss () or (B,), logits (B, C), lse (B,), target (B,) -> dlogits (B, C)
py::array cross_entropy_backward(const py::handle& go, const py::handle& lo, const py::handle& so,
                                 const py::handle& to, int64_t ignore_index) {
    const CeArgs c = parse_ce_backward(go, lo, so, to, ignore_index);
    const auto run = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array dx = new_array<T>({c.B, c.C});
        T* dxp = out_ptr<T>(dx);
        const T *gp = in_ptr<T>(c.dloss), *xp = in_ptr<T>(c.logits), *sp = in_ptr<T>(c.lse);
        const int64_t* tp = in_ptr<int64_t>(c.target);
        py::gil_scoped_release nogil;
        kernels<T>().cross_entropy_backward(dxp, gp, c.stride, xp, sp, tp, c.B, c.C,
                                            ignore_index);
        return dx;
    };
    return c.f64 ? run(double{}) : run(float{});
}

struct MseArgs {
    py::array a, b;
    py::object dloss = py::none();  // backward: the optional 0-d upstream gradient
    bool f64 = false;
};

MseArgs parse_mse(const py::handle& ao, const py::handle& bo, const py::handle& go,
                  const char* op) {
    MseArgs m;
    m.a = as_array(ao, op, "input");
    m.b = as_array(bo, op, "target");
    m.f64 = float_kind(m.a, op, "input") == 'd';
    check_float_array(m.a, m.f64, op, "input");
    check_float_array(m.b, m.f64, op, "target");
    check_shape(m.b, op, "target", shape_of(m.a));
    if (!go.is_none()) {
        py::array g = as_array(go, op, "dloss");
        check_float_array(g, m.f64, op, "dloss");
        check_shape(g, op, "dloss", {});
        m.dloss = g;
    }
    return m;
}

// a, b (same shape) -> 0-d sum of squared differences
py::array mse_forward(const py::handle& ao, const py::handle& bo) {
    const MseArgs m = parse_mse(ao, bo, py::none(), "mse_forward");
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array out = new_array<T>({});
        T* op_ = out_ptr<T>(out);
        const T *ap = in_ptr<T>(m.a), *bp = in_ptr<T>(m.b);
        const int64_t n = m.a.size();
        py::gil_scoped_release nogil;
        kernels<T>().mse_forward(op_, ap, bp, n);
        return out;
    };
    return m.f64 ? go(double{}) : go(float{});
}

// -> scale * dloss * (a - b), dloss an optional 0-d array (the upstream gradient)
py::array mse_backward(const py::handle& ao, const py::handle& bo, double scale,
                       const py::handle& go) {
    const MseArgs m = parse_mse(ao, bo, go, "mse_backward");
    const auto run = [&](auto tag) -> py::array {
        using T = decltype(tag);
        if (!m.dloss.is_none())
            scale = scale * double(*in_ptr<T>(py::reinterpret_borrow<py::array>(m.dloss)));
        py::array da = new_array<T>(shape_of(m.a));
        T* dap = out_ptr<T>(da);
        const T *ap = in_ptr<T>(m.a), *bp = in_ptr<T>(m.b);
        const int64_t n = m.a.size();
        py::gil_scoped_release nogil;
        kernels<T>().mse_backward(dap, ap, bp, n, T(scale));
        return da;
    };
    return m.f64 ? run(double{}) : run(float{});
}

// ---- gd.compile: the losses as registered instruction kinds ----

// The eager binding checks targets before the kernel reads logits[target]; a replay must too.
void check_targets(const int64_t* t, int64_t B, int64_t C, int64_t ignore_index) {
    for (int64_t r = 0; r < B; ++r)
        if (t[r] != ignore_index && (t[r] < 0 || t[r] >= C))
            throw std::invalid_argument("cross_entropy (compiled step): target[" +
                                        std::to_string(r) + "] = " + std::to_string(t[r]) +
                                        " is out of range for " + std::to_string(C) + " classes");
}

template <class T>
void ce_fwd_run_t(const Instr& in) {
    const int64_t* i = in.i.data() + 1;
    check_targets(static_cast<const int64_t*>(in.p[3]), i[0], i[1], i[2]);
    kernels<T>().cross_entropy_forward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2),
                                       static_cast<const int64_t*>(in.p[3]), i[0], i[1], i[2]);
}

template <class T>
void ce_bwd_run_t(const Instr& in) {
    const int64_t* i = in.i.data() + 1;
    kernels<T>().cross_entropy_backward(P<T>(in, 0), P<T>(in, 1), i[0], P<T>(in, 2), P<T>(in, 3),
                                        static_cast<const int64_t*>(in.p[4]), i[1], i[2], i[3]);
}

template <class T>
void mse_fwd_run_t(const Instr& in) {
    kernels<T>().mse_forward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), in.i[1]);
}

template <class T>
void mse_bwd_run_t(const Instr& in) {
    const double s = in.p[3] != nullptr ? in.d[0] * double(*P<T>(in, 3)) : in.d[0];
    kernels<T>().mse_backward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), in.i[1], T(s));
}

void ce_fwd_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t e = in.f64 ? 8 : 4, B = in.i[1], C = in.i[2];
    operand(in, ops, 0, e * B, true);  // the per-row losses
    operand(in, ops, 1, e * B, true);
    operand(in, ops, 2, e * B * C, false);
    operand(in, ops, 3, 8 * B, false);
}

void ce_bwd_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t e = in.f64 ? 8 : 4, B = in.i[2], C = in.i[3];
    operand(in, ops, 0, e * B * C, true);
    operand(in, ops, 1, in.i[1] != 0 ? e * B : e, false);
    operand(in, ops, 2, e * B * C, false);
    operand(in, ops, 3, e * B, false);
    operand(in, ops, 4, 8 * B, false);
}

void mse_fwd_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t e = in.f64 ? 8 : 4, N = in.i[1];
    operand(in, ops, 0, e, true);
    operand(in, ops, 1, e * N, false);
    operand(in, ops, 2, e * N, false);
}

void mse_bwd_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t e = in.f64 ? 8 : 4, N = in.i[1];
    operand(in, ops, 0, e * N, true);
    operand(in, ops, 1, e * N, false);
    operand(in, ops, 2, e * N, false);
    operand(in, ops, 3, e, false);
}

py::tuple cross_entropy_forward_args(const py::handle& lo, const py::handle& to,
                                     int64_t ignore_index, const py::handle& result) {
    const char* op = "cross_entropy_forward";
    const CeArgs c = parse_ce_forward(lo, to, ignore_index);
    if (!py::isinstance<py::tuple>(result) || py::len(result) != 2)
        type_error(std::string(op) + ": argument 'result' must be the (loss, lse) pair");
    py::tuple res = py::reinterpret_borrow<py::tuple>(result);
    py::array loss = checked_result(res[0], op, "result[0]", c.f64, {c.B});
    py::array lse = checked_result(res[1], op, "result[1]", c.f64, {c.B});
    return instr_tuple({addr(loss), addr(lse), addr(c.logits), addr(c.target)},
                       {g_ce_fwd_kind, c.B, c.C, ignore_index}, {}, c.f64, {c.logits, c.target});
}

py::tuple cross_entropy_backward_args(const py::handle& go, const py::handle& lo,
                                      const py::handle& so, const py::handle& to,
                                      int64_t ignore_index, const py::handle& result) {
    const CeArgs c = parse_ce_backward(go, lo, so, to, ignore_index);
    py::array dx = checked_result(result, "cross_entropy_backward", "result", c.f64, {c.B, c.C});
    return instr_tuple({addr(dx), addr(c.dloss), addr(c.logits), addr(c.lse), addr(c.target)},
                       {g_ce_bwd_kind, c.stride, c.B, c.C, ignore_index}, {}, c.f64,
                       {c.dloss, c.logits, c.lse, c.target});
}

py::tuple mse_forward_args(const py::handle& ao, const py::handle& bo, const py::handle& result) {
    const MseArgs m = parse_mse(ao, bo, py::none(), "mse_forward");
    py::array out = checked_result(result, "mse_forward", "result", m.f64, {});
    return instr_tuple({addr(out), addr(m.a), addr(m.b)}, {g_mse_fwd_kind, int64_t(m.a.size())},
                       {}, m.f64, {m.a, m.b});
}

py::tuple mse_backward_args(const py::handle& ao, const py::handle& bo, double scale,
                            const py::handle& go, const py::handle& result) {
    const MseArgs m = parse_mse(ao, bo, go, "mse_backward");
    py::array da = checked_result(result, "mse_backward", "result", m.f64, shape_of(m.a));
    std::vector<py::array> reads{m.a, m.b};
    uintptr_t gp = 0;
    if (!m.dloss.is_none()) {
        reads.push_back(py::reinterpret_borrow<py::array>(m.dloss));
        gp = addr(reads.back());
    }
    return instr_tuple({addr(da), addr(m.a), addr(m.b), gp}, {g_mse_bwd_kind, int64_t(m.a.size())},
                       {scale}, m.f64, reads);
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
    g_softmax_fwd_kind = register_instr_kind(
        {"softmax_fwd",
         &run_by_dtype<softmax_fwd_run_t<float, false>, softmax_fwd_run_t<double, false>>,
         &softmax_fwd_operands, &elems_flops<softmax_fwd_operands>, &layout_valid<2, 3, 0, 1, 3>});
    g_log_softmax_fwd_kind = register_instr_kind(
        {"log_softmax_fwd",
         &run_by_dtype<softmax_fwd_run_t<float, true>, softmax_fwd_run_t<double, true>>,
         &softmax_fwd_operands, &elems_flops<softmax_fwd_operands>, &layout_valid<2, 3, 0, 1, 3>});
    g_softmax_bwd_kind = register_instr_kind(
        {"softmax_bwd",
         &run_by_dtype<softmax_bwd_run_t<float, false>, softmax_bwd_run_t<double, false>>,
         &softmax_bwd_operands, &elems_flops<softmax_bwd_operands>, &layout_valid<3, 3, 0, 1, 3>});
    g_log_softmax_bwd_kind = register_instr_kind(
        {"log_softmax_bwd",
         &run_by_dtype<softmax_bwd_run_t<float, true>, softmax_bwd_run_t<double, true>>,
         &softmax_bwd_operands, &elems_flops<softmax_bwd_operands>, &layout_valid<3, 3, 0, 1, 3>});
    g_ce_fwd_kind = register_instr_kind(
        {"ce_fwd", &run_by_dtype<ce_fwd_run_t<float>, ce_fwd_run_t<double>>, &ce_fwd_operands,
         &elems_flops<ce_fwd_operands>, &layout_valid<4, 4, 0, 1, 3>});
    g_ce_bwd_kind = register_instr_kind(
        {"ce_bwd", &run_by_dtype<ce_bwd_run_t<float>, ce_bwd_run_t<double>>, &ce_bwd_operands,
         &elems_flops<ce_bwd_operands>, &layout_valid<5, 5, 0, 1, 4>});
    g_mse_fwd_kind = register_instr_kind(
        {"mse_fwd", &run_by_dtype<mse_fwd_run_t<float>, mse_fwd_run_t<double>>,
         &mse_fwd_operands, &elems_flops<mse_fwd_operands>, &layout_valid<3, 2, 0, 1, 2>});
    g_mse_bwd_kind = register_instr_kind(
        {"mse_bwd", &run_by_dtype<mse_bwd_run_t<float>, mse_bwd_run_t<double>>,
         &mse_bwd_operands, &elems_flops<mse_bwd_operands>, &layout_valid<4, 2, 1, 1, 2>});
    m.def("softmax_forward_args", &softmax_like_forward_args<false>, py::arg("x"), py::kw_only(),
          py::arg("result"),
          "The instruction gd.compile records for softmax_forward(x) = result: "
          "(pointers, ints, reals, float64, [(address, bytes) read]).");
    m.def("softmax_backward_args", &softmax_like_backward_args<false>, py::arg("dy"),
          py::arg("y"), py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for softmax_backward(dy, y) = result.");
    m.def("log_softmax_forward_args", &softmax_like_forward_args<true>, py::arg("x"),
          py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for log_softmax_forward(x) = result.");
    m.def("log_softmax_backward_args", &softmax_like_backward_args<true>, py::arg("dy"),
          py::arg("y"), py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for log_softmax_backward(dy, y) = result.");
    m.def("cross_entropy_forward_args", &cross_entropy_forward_args, py::arg("logits"),
          py::arg("target"), py::arg("ignore_index") = -100, py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for cross_entropy_forward(...) = result: "
          "(pointers, ints, reals, float64, [(address, bytes) read]).");
    m.def("cross_entropy_backward_args", &cross_entropy_backward_args, py::arg("dloss"),
          py::arg("logits"), py::arg("lse"), py::arg("target"), py::arg("ignore_index") = -100,
          py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for cross_entropy_backward(...) = result.");
    m.def("mse_forward_args", &mse_forward_args, py::arg("input"), py::arg("target"),
          py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for mse_forward(...) = result.");
    m.def("mse_backward_args", &mse_backward_args, py::arg("input"), py::arg("target"),
          py::arg("scale"), py::arg("dloss") = py::none(), py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for mse_backward(...) = result.");
    // binding name -> the twin that lays out its recorded instruction (the module's RECORD_ARGS,
    // which the other binding files add to)
    add_record_args(m, {{"softmax_forward", "softmax_forward_args"},
                        {"softmax_backward", "softmax_backward_args"},
                        {"log_softmax_forward", "log_softmax_forward_args"},
                        {"log_softmax_backward", "log_softmax_backward_args"},
                        {"cross_entropy_forward", "cross_entropy_forward_args"},
                        {"cross_entropy_backward", "cross_entropy_backward_args"},
                        {"mse_forward", "mse_forward_args"},
                        {"mse_backward", "mse_backward_args"}});
}

}  // namespace bind
}  // namespace gd

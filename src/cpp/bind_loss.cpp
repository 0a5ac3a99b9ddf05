// Bindings for softmax, log-softmax, fused softmax cross-entropy and mean squared error.
//
// The cross-entropy and MSE kernels are also registered instruction kinds (instr_registry.hpp),
// so gd.compile records each call as one `call` instruction laid out by the binding's
// `<binding>_args` twin. Layouts (p = pointers, i = ints after the kind id i[0], d = reals):
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
#include "instr_registry.hpp"
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


// ---- gd.compile: the losses as registered instruction kinds ----

int64_t g_ce_fwd_kind = -1, g_ce_bwd_kind = -1, g_mse_fwd_kind = -1, g_mse_bwd_kind = -1;

template <class T>
T* P(const Instr& in, size_t k) {
    return static_cast<T*>(in.p[k]);
}

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

template <void (*F32)(const Instr&), void (*F64)(const Instr&)>
void run_by_dtype(const Instr& in) {
    if (in.f64) F64(in);
    else F32(in);
}

// Operand k: read or written, `bytes` long (skipped when its pointer is null).
void operand(const Instr& in, std::vector<Operand>& ops, int k, int64_t bytes, bool write) {
    if (in.p[k] != nullptr) ops.push_back({in.p[k], bytes, !write, write, k});
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

// One operation per element of the largest operand (how Program::flops counts elementwise and
// reduction work).
template <void (*Ops)(const Instr&, std::vector<Operand>&)>
int64_t elems_flops(const Instr& in) {
    std::vector<Operand> ops;
    Ops(in, ops);
    int64_t elems = 0;
    const int64_t e = in.f64 ? 8 : 4;
    for (const Operand& o : ops) elems = std::max(elems, o.bytes / e);
    return elems;
}

// A layout of `nptrs` pointers, `nints` ints (the kind id included) and `nreals` reals, with
// nonnegative sizes at ints [first, last).
template <size_t Ptrs, size_t Ints, size_t Reals, size_t First, size_t Last>
bool layout_valid(size_t nptrs, const std::vector<int64_t>& i, size_t nreals) {
    if (nptrs != Ptrs || i.size() != Ints || nreals != Reals) return false;
    for (size_t k = First; k < Last; ++k)
        if (i[k] < 0) return false;
    return true;
}

// (pointers, ints, reals, float64, [(address, bytes) read]): what Program.add takes for a `call`
// instruction, and the memory gd.compile checks is known (empty operands are not listed)
py::tuple instr_tuple(std::vector<uintptr_t> ptrs, std::vector<int64_t> ints,
                      std::vector<double> reals, bool f64, const std::vector<py::array>& reads) {
    std::vector<std::pair<uintptr_t, int64_t>> spans;
    for (const py::array& a : reads)
        if (a.nbytes() > 0) spans.push_back(span_of(a));
    return py::make_tuple(ptrs, ints, reals, f64, spans);
}

// The result a twin is given: an array of the dtype and shape the binding returns.
py::array checked_result(const py::handle& r, const char* op, const char* what, bool f64,
                         const std::vector<int64_t>& shape) {
    py::array a = as_array(r, op, what);
    if (f64) check_array<double>(a, op, what);
    else check_array<float>(a, op, what);
    check_shape(a, op, what, shape);
    return a;
}

py::tuple cross_entropy_forward_args(const py::handle& lo, const py::handle& to,
                                     int64_t ignore_index, const py::handle& result) {
    const char* op = "cross_entropy_forward";
    py::array logits = as_array(lo, op, "logits"), target = as_array(to, op, "target");
    const bool f64 = dispatch_float(logits, op, "logits", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(logits, op, "logits");
        check_ndim(logits, op, "logits", 2, 2);
        check_target(target, logits.shape(0), logits.shape(1), ignore_index, op);
        return sizeof(T) == 8;
    });
    const int64_t B = logits.shape(0), C = logits.shape(1);
    if (!py::isinstance<py::tuple>(result) || py::len(result) != 2)
        type_error(std::string(op) + ": argument 'result' must be the (loss, lse) pair");
    py::tuple res = py::reinterpret_borrow<py::tuple>(result);
    py::array loss = checked_result(res[0], op, "result[0]", f64, {B});
    py::array lse = checked_result(res[1], op, "result[1]", f64, {B});
    return instr_tuple({addr(loss), addr(lse), addr(logits), addr(target)},
                       {g_ce_fwd_kind, B, C, ignore_index}, {}, f64, {logits, target});
}

py::tuple cross_entropy_backward_args(const py::handle& go, const py::handle& lo,
                                      const py::handle& so, const py::handle& to,
                                      int64_t ignore_index, const py::handle& result) {
    const char* op = "cross_entropy_backward";
    py::array g = as_array(go, op, "dloss"), logits = as_array(lo, op, "logits");
    py::array lse = as_array(so, op, "lse"), target = as_array(to, op, "target");
    const bool f64 = dispatch_float(logits, op, "logits", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(logits, op, "logits");
        check_ndim(logits, op, "logits", 2, 2);
        const int64_t B = logits.shape(0), C = logits.shape(1);
        check_array<T>(g, op, "dloss");
        check_array<T>(lse, op, "lse");
        check_shape(lse, op, "lse", {B});
        check_target(target, B, C, ignore_index, op);
        if (g.ndim() != 0) check_shape(g, op, "dloss", {B});
        return sizeof(T) == 8;
    });
    const int64_t B = logits.shape(0), C = logits.shape(1);
    py::array dx = checked_result(result, op, "result", f64, {B, C});
    return instr_tuple({addr(dx), addr(g), addr(logits), addr(lse), addr(target)},
                       {g_ce_bwd_kind, g.ndim() == 0 ? 0 : 1, B, C, ignore_index}, {}, f64,
                       {g, logits, lse, target});
}

py::tuple mse_forward_args(const py::handle& ao, const py::handle& bo, const py::handle& result) {
    const char* op = "mse_forward";
    py::array a = as_array(ao, op, "input"), b = as_array(bo, op, "target");
    const bool f64 = dispatch_float(a, op, "input", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(a, op, "input");
        check_array<T>(b, op, "target");
        check_shape(b, op, "target", shape_of(a));
        return sizeof(T) == 8;
    });
    py::array out = checked_result(result, op, "result", f64, {});
    return instr_tuple({addr(out), addr(a), addr(b)}, {g_mse_fwd_kind, int64_t(a.size())}, {},
                       f64, {a, b});
}

py::tuple mse_backward_args(const py::handle& ao, const py::handle& bo, double scale,
                            const py::handle& go, const py::handle& result) {
    const char* op = "mse_backward";
    py::array a = as_array(ao, op, "input"), b = as_array(bo, op, "target");
    py::object g = py::none();
    const bool f64 = dispatch_float(a, op, "input", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(a, op, "input");
        check_array<T>(b, op, "target");
        check_shape(b, op, "target", shape_of(a));
        if (!go.is_none()) {
            py::array ga = as_array(go, op, "dloss");
            check_array<T>(ga, op, "dloss");
            check_shape(ga, op, "dloss", {});
            g = ga;
        }
        return sizeof(T) == 8;
    });
    py::array da = checked_result(result, op, "result", f64, shape_of(a));
    std::vector<py::array> reads{a, b};
    uintptr_t gp = 0;
    if (!g.is_none()) {
        reads.push_back(py::reinterpret_borrow<py::array>(g));
        gp = addr(reads.back());
    }
    return instr_tuple({addr(da), addr(a), addr(b), gp}, {g_mse_bwd_kind, int64_t(a.size())},
                       {scale}, f64, reads);
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
    add_record_args(m, {{"cross_entropy_forward", "cross_entropy_forward_args"},
                        {"cross_entropy_backward", "cross_entropy_backward_args"},
                        {"mse_forward", "mse_forward_args"},
                        {"mse_backward", "mse_backward_args"}});
}

}  // namespace bind
}  // namespace gd

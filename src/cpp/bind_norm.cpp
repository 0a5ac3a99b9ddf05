// Bindings for batch norm, layer norm and embedding (norm.hpp): shapes, dtypes, index ranges.
// Each kernel but embedding_renorm is also a registered instruction kind (instr_registry.hpp):
// gd.compile records a call through its `<binding>_args` twin, which shares the binding's parse.
// Layouts (i[0] is the kind's id; the rest as listed in norm.hpp): batch_norm_fwd,
// batch_norm_bwd, layer_norm_fwd, layer_norm_bwd, embedding_fwd, embedding_bwd.
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bind_common.hpp"
#include "bind_instr.hpp"
#include "instr_registry.hpp"
#include "kernels.hpp"
#include "norm.hpp"
#include "program.hpp"

namespace gd {

// The norm table of the ISA the main kernel table uses (compared by name: building a table
// runs code compiled for its ISA, so only the active one is ever asked for).
const NormTables& active_norm_tables() {
    const char* isa = active_kernels().isa;
#if GD_BUILT_AVX512
    if (std::strcmp(isa, "avx512") == 0) return norm_tables_avx512();
#endif
#if GD_BUILT_AVX2
    if (std::strcmp(isa, "avx2") == 0) return norm_tables_avx2();
#endif
#if GD_BUILT_NEON
    if (std::strcmp(isa, "neon") == 0) return norm_tables_neon();
#endif
    (void)isa;
    return norm_tables_baseline();
}

int64_t first_bad_index(const int64_t* idx, int64_t K, int64_t V) {
    for (int64_t k = 0; k < K; ++k)
        if (idx[k] < 0 || idx[k] >= V) return k;
    return -1;
}

namespace {

template <class T>
T* NP(const Instr& in, size_t k) {
    return static_cast<T*>(in.p[k]);
}

// The kinds' run(): i[0] is the kind's id, i[1...] the sizes and flags of the layouts in norm.hpp.
template <class T, NormOp Op>
void run_norm_typed(const Instr& in) {
    const NormKernels<T>& K = norm_kernels<T>();
    const auto& i = in.i;
    switch (Op) {
        case NormOp::bn_fwd:
            K.batch_norm_forward(NP<T>(in, 0), NP<T>(in, 1), NP<T>(in, 2), NP<T>(in, 3),
                                 NP<T>(in, 4), static_cast<int64_t*>(in.p[5]), NP<T>(in, 6),
                                 NP<T>(in, 7), NP<T>(in, 8), i[1], i[2], i[3], in.d[0], in.d[1],
                                 i[4] != 0);
            break;
        case NormOp::bn_bwd:
            K.batch_norm_backward(NP<T>(in, 0), NP<T>(in, 1), NP<T>(in, 2), NP<T>(in, 3),
                                  NP<T>(in, 4), NP<T>(in, 5), NP<T>(in, 6), NP<T>(in, 7), i[1],
                                  i[2], i[3], i[4] != 0);
            break;
        case NormOp::ln_fwd:
            K.layer_norm_forward(NP<T>(in, 0), NP<T>(in, 1), NP<T>(in, 2), NP<T>(in, 3),
                                 NP<T>(in, 4), NP<T>(in, 5), i[1], i[2], in.d[0]);
            break;
        case NormOp::ln_bwd:
            K.layer_norm_backward(NP<T>(in, 0), NP<T>(in, 1), NP<T>(in, 2), NP<T>(in, 3),
                                  NP<T>(in, 4), NP<T>(in, 5), NP<T>(in, 6), NP<T>(in, 7), i[1],
                                  i[2]);
            break;
        case NormOp::emb_fwd:
        case NormOp::emb_bwd: {
            const int64_t* idx = static_cast<const int64_t*>(in.p[2]);
            const int64_t k = first_bad_index(idx, i[1], i[2]);
            if (k >= 0)
                throw std::invalid_argument(
                    "embedding (compiled step): index " + std::to_string(idx[k]) +
                    " (at flat position " + std::to_string(k) + ") is out of range for " +
                    std::to_string(i[2]) + " embeddings");
            if (Op == NormOp::emb_fwd)
                K.embedding_forward(NP<T>(in, 0), NP<T>(in, 1), idx, i[1], i[2], i[3]);
            else
                K.embedding_backward(NP<T>(in, 0), NP<T>(in, 1), idx, i[1], i[2], i[3], i[4]);
            break;
        }
    }
}

template <NormOp Op>
void run_norm(const Instr& in) {
    if (in.f64) run_norm_typed<double, Op>(in);
    else run_norm_typed<float, Op>(in);
}

template <NormOp Op>
void norm_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t e = in.f64 ? 8 : 4;
    const auto& i = in.i;
    const auto add = [&](int slot, int64_t bytes, bool read, bool write) {
        if (in.p[slot] != nullptr) ops.push_back({in.p[slot], bytes, read, write, slot});
    };
    switch (Op) {
        case NormOp::bn_fwd: {
            const int64_t n = i[1] * i[2] * i[3], C = i[2];
            const bool training = i[4] != 0;
            add(0, e * n, false, true);
            add(1, e * C, false, true);
            add(2, e * C, false, true);
            add(3, e * C, true, training);
            add(4, e * C, true, training);
            add(5, 8, true, true);
            add(6, e * n, true, false);
            add(7, e * C, true, false);
            add(8, e * C, true, false);
            break;
        }
        case NormOp::bn_bwd:
        case NormOp::ln_bwd: {
            const bool bn = Op == NormOp::bn_bwd;
            const int64_t n = bn ? i[1] * i[2] * i[3] : i[1] * i[2];
            const int64_t F = i[2];              // weight: C (batch norm) or D elements
            const int64_t S = bn ? i[2] : i[1];  // statistics: per channel or per row
            add(0, e * n, false, true);
            add(1, e * F, false, true);
            add(2, e * F, false, true);
            add(3, e * n, true, false);
            add(4, e * n, true, false);
            add(5, e * F, true, false);
            add(6, e * S, true, false);
            add(7, e * S, true, false);
            break;
        }
        case NormOp::ln_fwd:
            add(0, e * i[1] * i[2], false, true);
            add(1, e * i[1], false, true);
            add(2, e * i[1], false, true);
            add(3, e * i[1] * i[2], true, false);
            add(4, e * i[2], true, false);
            add(5, e * i[2], true, false);
            break;
        case NormOp::emb_fwd:
            add(0, e * i[1] * i[3], false, true);
            add(1, e * i[2] * i[3], true, false);
            add(2, 8 * i[1], true, false);
            break;
        case NormOp::emb_bwd:
            add(0, e * i[2] * i[3], false, true);
            add(1, e * i[1] * i[3], true, false);
            add(2, 8 * i[1], true, false);
            break;
    }
}

}  // namespace

namespace bind {
namespace {

using instr::checked_result;
using instr::check_float_array;
using instr::instr_tuple;

int64_t g_bn_fwd_kind = -1, g_bn_bwd_kind = -1, g_ln_fwd_kind = -1, g_ln_bwd_kind = -1,
        g_emb_fwd_kind = -1, g_emb_bwd_kind = -1;

// An optional (C,) parameter/statistic array of the float dtype, or None.
py::object opt_vec(const py::handle& o, bool f64, const char* op, const char* arg, int64_t C) {
    if (o.is_none()) return py::none();
    py::array a = as_array(o, op, arg);
    check_float_array(a, f64, op, arg);
    check_shape(a, op, arg, {C});
    return std::move(a);
}

template <class T>
T* ptr_or_null(const py::object& o) {
    return o.is_none() ? nullptr
                       : static_cast<T*>(py::reinterpret_borrow<py::array>(o).mutable_data());
}

inline uintptr_t addr_or_0(const py::object& o) {
    return o.is_none() ? 0 : addr(py::reinterpret_borrow<py::array>(o));
}

// reads: the arrays among `objs` (None skipped)
void add_reads(std::vector<py::array>& reads, std::initializer_list<py::object> objs) {
    for (const py::object& o : objs)
        if (!o.is_none()) reads.push_back(py::reinterpret_borrow<py::array>(o));
}

// The (a, b, c) triple a binding returned: each an array of `shape`, or None where not needed.
py::object result_item(const py::handle& result, size_t k, const char* op, const char* what,
                       bool f64, const std::vector<int64_t>& shape, bool may_be_none) {
    if (!py::isinstance<py::tuple>(result) || py::len(result) != 3)
        type_error(std::string(op) + ": argument 'result' must be the triple the binding returned");
    py::object r = result.cast<py::tuple>()[k];
    if (may_be_none && r.is_none()) return r;
    return checked_result(r, op, what, f64, shape);
}

// ---- batch norm ----

struct BnArgs {
    py::array x, dy;
    py::object w, b, rm, rv, nb, mean, inv;
    bool f64 = false;
    int64_t N = 0, C = 0, L = 1;
};

BnArgs parse_bn_forward(const py::handle& xo, const py::handle& wo, const py::handle& bo,
                        const py::handle& rmo, const py::handle& rvo, const py::handle& nbo,
                        bool training, double momentum, double eps) {
    const char* op = "batch_norm";
    BnArgs a;
    a.x = as_array(xo, op, "input");
    a.f64 = float_kind(a.x, op, "input") == 'd';
    const py::array& x = a.x;
    check_float_array(x, a.f64, op, "input");
    check_ndim(x, op, "input", 2, 3);
    a.N = x.shape(0);
    a.C = x.shape(1);
    a.L = x.ndim() == 3 ? x.shape(2) : 1;
    a.w = opt_vec(wo, a.f64, op, "weight", a.C);
    a.b = opt_vec(bo, a.f64, op, "bias", a.C);
    a.rm = opt_vec(rmo, a.f64, op, "running_mean", a.C);
    a.rv = opt_vec(rvo, a.f64, op, "running_var", a.C);
    if (a.rm.is_none() != a.rv.is_none())
        value_error("batch_norm: running_mean and running_var must both be arrays or both None");
    if (!a.rm.is_none()) {
        if (!py::reinterpret_borrow<py::array>(a.rm).writeable() ||
            !py::reinterpret_borrow<py::array>(a.rv).writeable())
            value_error("batch_norm: running_mean and running_var must be writeable");
    }
    if (!training && a.rm.is_none())
        value_error("batch_norm: running_mean and running_var are required when training=False");
    if (training && a.N * a.L <= 1)
        value_error("batch_norm: expected more than 1 value per channel when training, got "
                    "input of shape " + shape_str(shape_of(x)));
    if (!(eps >= 0)) value_error("batch_norm: eps must be >= 0, got " + std::to_string(eps));
    a.nb = py::none();
    if (!nbo.is_none()) {
        py::array nb = as_array(nbo, op, "num_batches_tracked");
        check_array<int64_t>(nb, op, "num_batches_tracked");
        if (nb.size() != 1)
            value_error("batch_norm: num_batches_tracked must hold one element, got shape " +
                        shape_str(shape_of(nb)));
        if (!nb.writeable()) value_error("batch_norm: num_batches_tracked must be writeable");
        a.nb = nb;
    }
    if (training && momentum < 0 && a.nb.is_none())
        value_error("batch_norm: momentum=None (a cumulative average) needs num_batches_tracked");
    if (!training) a.nb = py::none();  // (only training counts batches)
    return a;
}

// x (N, C) or (N, C, L) -> (y, mean (C,), invstd (C,)); running_mean/var and
// num_batches_tracked (int64, 0-d or (1,)) are updated in place in training
py::tuple batch_norm_forward(const py::handle& xo, const py::handle& wo, const py::handle& bo,
                             const py::handle& rmo, const py::handle& rvo, const py::handle& nbo,
                             bool training, double momentum, double eps) {
    const BnArgs a = parse_bn_forward(xo, wo, bo, rmo, rvo, nbo, training, momentum, eps);
    const auto go = [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        py::array y = new_array<T>(shape_of(a.x)), mean = new_array<T>({a.C}),
                  inv = new_array<T>({a.C});
        T *yp = out_ptr<T>(y), *mp = out_ptr<T>(mean), *ip = out_ptr<T>(inv);
        const T* xp = in_ptr<T>(a.x);
        T *rm = ptr_or_null<T>(a.rm), *rv = ptr_or_null<T>(a.rv);
        const T *w = ptr_or_null<T>(a.w), *b = ptr_or_null<T>(a.b);
        int64_t* nbt = ptr_or_null<int64_t>(a.nb);
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().batch_norm_forward(yp, mp, ip, rm, rv, nbt, xp, w, b, a.N, a.C, a.L,
                                                 eps, momentum, training);
        }
        return py::make_tuple(y, mean, inv);
    };
    return a.f64 ? go(double{}) : go(float{});
}

py::tuple batch_norm_forward_args(const py::handle& xo, const py::handle& wo,
                                  const py::handle& bo, const py::handle& rmo,
                                  const py::handle& rvo, const py::handle& nbo, bool training,
                                  double momentum, double eps, const py::handle& result) {
    const char* op = "batch_norm";
    const BnArgs a = parse_bn_forward(xo, wo, bo, rmo, rvo, nbo, training, momentum, eps);
    const py::object y = result_item(result, 0, op, "result[0]", a.f64, shape_of(a.x), false);
    const py::object mean = result_item(result, 1, op, "result[1]", a.f64, {a.C}, false);
    const py::object inv = result_item(result, 2, op, "result[2]", a.f64, {a.C}, false);
    std::vector<py::array> reads{a.x};
    add_reads(reads, {a.w, a.b, a.rm, a.rv, a.nb});
    return instr_tuple({addr_or_0(y), addr_or_0(mean), addr_or_0(inv), addr_or_0(a.rm),
                        addr_or_0(a.rv), addr_or_0(a.nb), addr(a.x), addr_or_0(a.w),
                        addr_or_0(a.b)},
                       {g_bn_fwd_kind, a.N, a.C, a.L, training ? 1 : 0}, {eps, momentum}, a.f64,
                       reads);
}

BnArgs parse_bn_backward(const py::handle& dyo, const py::handle& xo, const py::handle& wo,
                         const py::handle& mo, const py::handle& io) {
    const char* op = "batch_norm_backward";
    BnArgs a;
    a.dy = as_array(dyo, op, "dy");
    a.x = as_array(xo, op, "x");
    a.f64 = float_kind(a.x, op, "x") == 'd';
    check_float_array(a.x, a.f64, op, "x");
    check_float_array(a.dy, a.f64, op, "dy");
    check_ndim(a.x, op, "x", 2, 3);
    check_shape(a.dy, op, "dy", shape_of(a.x));
    a.N = a.x.shape(0);
    a.C = a.x.shape(1);
    a.L = a.x.ndim() == 3 ? a.x.shape(2) : 1;
    a.w = opt_vec(wo, a.f64, op, "weight", a.C);
    a.mean = opt_vec(mo, a.f64, op, "mean", a.C);
    a.inv = opt_vec(io, a.f64, op, "invstd", a.C);
    if (a.mean.is_none() || a.inv.is_none())
        value_error("batch_norm_backward: mean and invstd are required");
    return a;
}

// (dx, dweight, dbias) arrays of a backward, None where not needed
template <class T>
py::tuple grads_of(bool need_dx, bool need_dw, bool need_db, const std::vector<int64_t>& xs,
                   int64_t F, T*& dxp, T*& dwp, T*& dbp) {
    py::object dx = py::none(), dw = py::none(), db = py::none();
    dxp = dwp = dbp = nullptr;
    if (need_dx) { py::array a = new_array<T>(xs); dxp = out_ptr<T>(a); dx = a; }
    if (need_dw) { py::array a = new_array<T>({F}); dwp = out_ptr<T>(a); dw = a; }
    if (need_db) { py::array a = new_array<T>({F}); dbp = out_ptr<T>(a); db = a; }
    return py::make_tuple(dx, dw, db);
}

// dy, x (N, C[, L]), weight (C,) or None, mean, invstd (C,) -> (dx, dweight, dbias), None where
// not needed
py::tuple batch_norm_backward(const py::handle& dyo, const py::handle& xo, const py::handle& wo,
                              const py::handle& mo, const py::handle& io, bool training,
                              bool need_dx, bool need_dw, bool need_db) {
    const BnArgs a = parse_bn_backward(dyo, xo, wo, mo, io);
    const auto go = [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        T *dxp, *dwp, *dbp;
        py::tuple out = grads_of<T>(need_dx, need_dw, need_db, shape_of(a.x), a.C, dxp, dwp, dbp);
        const T *dyp = in_ptr<T>(a.dy), *xp = in_ptr<T>(a.x), *w = ptr_or_null<T>(a.w),
                *m = ptr_or_null<T>(a.mean), *inv = ptr_or_null<T>(a.inv);
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().batch_norm_backward(dxp, dwp, dbp, dyp, xp, w, m, inv, a.N, a.C, a.L,
                                                  training);
        }
        return out;
    };
    return a.f64 ? go(double{}) : go(float{});
}

// the (dx, dweight, dbias) result of a backward and the instruction's first three pointers
std::vector<uintptr_t> grad_ptrs(const py::handle& result, const char* op, bool f64,
                                 const std::vector<int64_t>& xs, int64_t F) {
    return {addr_or_0(result_item(result, 0, op, "result[0]", f64, xs, true)),
            addr_or_0(result_item(result, 1, op, "result[1]", f64, {F}, true)),
            addr_or_0(result_item(result, 2, op, "result[2]", f64, {F}, true))};
}

py::tuple batch_norm_backward_args(const py::handle& dyo, const py::handle& xo,
                                   const py::handle& wo, const py::handle& mo,
                                   const py::handle& io, bool training, bool need_dx,
                                   bool need_dw, bool need_db, const py::handle& result) {
    (void)need_dx, (void)need_dw, (void)need_db;  // (the result says which were made)
    const BnArgs a = parse_bn_backward(dyo, xo, wo, mo, io);
    std::vector<uintptr_t> ptrs =
        grad_ptrs(result, "batch_norm_backward", a.f64, shape_of(a.x), a.C);
    for (uintptr_t p : {addr(a.dy), addr(a.x), addr_or_0(a.w), addr_or_0(a.mean),
                        addr_or_0(a.inv)})
        ptrs.push_back(p);
    std::vector<py::array> reads{a.dy, a.x};
    add_reads(reads, {a.w, a.mean, a.inv});
    return instr_tuple(ptrs, {g_bn_bwd_kind, a.N, a.C, a.L, training ? 1 : 0}, {}, a.f64, reads);
}

// ---- layer norm ----

struct LnArgs {
    py::array x, dy;
    py::object w, b, mean, rstd;
    bool f64 = false;
    int64_t M = 0, D = 0;
};

LnArgs parse_ln_forward(const py::handle& xo, const py::handle& wo, const py::handle& bo,
                        double eps) {
    const char* op = "layer_norm";
    LnArgs a;
    a.x = as_array(xo, op, "input");
    a.f64 = float_kind(a.x, op, "input") == 'd';
    check_float_array(a.x, a.f64, op, "input");
    check_ndim(a.x, op, "input", 2, 2);
    a.M = a.x.shape(0);
    a.D = a.x.shape(1);
    a.w = opt_vec(wo, a.f64, op, "weight", a.D);
    a.b = opt_vec(bo, a.f64, op, "bias", a.D);
    if (!(eps >= 0)) value_error("layer_norm: eps must be >= 0, got " + std::to_string(eps));
    return a;
}

// x (M, D), weight/bias (D,) or None -> (y (M, D), mean (M,), rstd (M,))
py::tuple layer_norm_forward(const py::handle& xo, const py::handle& wo, const py::handle& bo,
                             double eps) {
    const LnArgs a = parse_ln_forward(xo, wo, bo, eps);
    const auto go = [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        py::array y = new_array<T>({a.M, a.D}), mean = new_array<T>({a.M}),
                  rstd = new_array<T>({a.M});
        T *yp = out_ptr<T>(y), *mp = out_ptr<T>(mean), *rp = out_ptr<T>(rstd);
        const T *xp = in_ptr<T>(a.x), *w = ptr_or_null<T>(a.w), *b = ptr_or_null<T>(a.b);
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().layer_norm_forward(yp, mp, rp, xp, w, b, a.M, a.D, eps);
        }
        return py::make_tuple(y, mean, rstd);
    };
    return a.f64 ? go(double{}) : go(float{});
}

py::tuple layer_norm_forward_args(const py::handle& xo, const py::handle& wo,
                                  const py::handle& bo, double eps, const py::handle& result) {
    const char* op = "layer_norm";
    const LnArgs a = parse_ln_forward(xo, wo, bo, eps);
    const py::object y = result_item(result, 0, op, "result[0]", a.f64, {a.M, a.D}, false);
    const py::object mean = result_item(result, 1, op, "result[1]", a.f64, {a.M}, false);
    const py::object rstd = result_item(result, 2, op, "result[2]", a.f64, {a.M}, false);
    std::vector<py::array> reads{a.x};
    add_reads(reads, {a.w, a.b});
    return instr_tuple({addr_or_0(y), addr_or_0(mean), addr_or_0(rstd), addr(a.x),
                        addr_or_0(a.w), addr_or_0(a.b)},
                       {g_ln_fwd_kind, a.M, a.D}, {eps}, a.f64, reads);
}

LnArgs parse_ln_backward(const py::handle& dyo, const py::handle& xo, const py::handle& wo,
                         const py::handle& mo, const py::handle& ro) {
    const char* op = "layer_norm_backward";
    LnArgs a;
    a.dy = as_array(dyo, op, "dy");
    a.x = as_array(xo, op, "x");
    a.f64 = float_kind(a.x, op, "x") == 'd';
    check_float_array(a.x, a.f64, op, "x");
    check_float_array(a.dy, a.f64, op, "dy");
    check_ndim(a.x, op, "x", 2, 2);
    check_shape(a.dy, op, "dy", shape_of(a.x));
    a.M = a.x.shape(0);
    a.D = a.x.shape(1);
    a.w = opt_vec(wo, a.f64, op, "weight", a.D);
    a.mean = opt_vec(mo, a.f64, op, "mean", a.M);
    a.rstd = opt_vec(ro, a.f64, op, "rstd", a.M);
    if (a.mean.is_none() || a.rstd.is_none())
        value_error("layer_norm_backward: mean and rstd are required");
    return a;
}

// dy, x (M, D), weight (D,) or None, mean, rstd (M,) -> (dx, dweight, dbias)
py::tuple layer_norm_backward(const py::handle& dyo, const py::handle& xo, const py::handle& wo,
                              const py::handle& mo, const py::handle& ro, bool need_dx,
                              bool need_dw, bool need_db) {
    const LnArgs a = parse_ln_backward(dyo, xo, wo, mo, ro);
    const auto go = [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        T *dxp, *dwp, *dbp;
        py::tuple out = grads_of<T>(need_dx, need_dw, need_db, {a.M, a.D}, a.D, dxp, dwp, dbp);
        const T *dyp = in_ptr<T>(a.dy), *xp = in_ptr<T>(a.x), *w = ptr_or_null<T>(a.w),
                *m = ptr_or_null<T>(a.mean), *r = ptr_or_null<T>(a.rstd);
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().layer_norm_backward(dxp, dwp, dbp, dyp, xp, w, m, r, a.M, a.D);
        }
        return out;
    };
    return a.f64 ? go(double{}) : go(float{});
}

py::tuple layer_norm_backward_args(const py::handle& dyo, const py::handle& xo,
                                   const py::handle& wo, const py::handle& mo,
                                   const py::handle& ro, bool need_dx, bool need_dw,
                                   bool need_db, const py::handle& result) {
    (void)need_dx, (void)need_dw, (void)need_db;  // (the result says which were made)
    const LnArgs a = parse_ln_backward(dyo, xo, wo, mo, ro);
    std::vector<uintptr_t> ptrs = grad_ptrs(result, "layer_norm_backward", a.f64, {a.M, a.D}, a.D);
    for (uintptr_t p : {addr(a.dy), addr(a.x), addr_or_0(a.w), addr_or_0(a.mean),
                        addr_or_0(a.rstd)})
        ptrs.push_back(p);
    std::vector<py::array> reads{a.dy, a.x};
    add_reads(reads, {a.w, a.mean, a.rstd});
    return instr_tuple(ptrs, {g_ln_bwd_kind, a.M, a.D}, {}, a.f64, reads);
}

// ---- embedding ----

// Checks indices are int64 and every entry lies in [0, V).
void check_indices(const py::array& idx, int64_t V, const char* op) {
    if (!idx.dtype().equal(py::dtype::of<int64_t>()))
        type_error(std::string(op) + ": argument 'input' (the indices) must have dtype int64, got " +
                   dtype_str(idx));
    check_array<int64_t>(idx, op, "input");
    const int64_t K = idx.size();
    const int64_t k = first_bad_index(in_ptr<int64_t>(idx), K, V);
    if (k >= 0)
        value_error(std::string(op) + ": index " + std::to_string(in_ptr<int64_t>(idx)[k]) +
                    " (at flat position " + std::to_string(k) + ") is out of range for " +
                    std::to_string(V) + " embeddings (expected 0 <= index < " + std::to_string(V) +
                    ")");
}

struct EmbArgs {
    py::array W, dy, idx;  // forward: W; backward: dy
    bool f64 = false;
    int64_t V = 0, D = 0;
    std::vector<int64_t> out_shape;
};

EmbArgs parse_emb_forward(const py::handle& wo, const py::handle& io) {
    const char* op = "embedding";
    EmbArgs a;
    a.W = as_array(wo, op, "weight");
    a.idx = as_array(io, op, "input");
    a.f64 = float_kind(a.W, op, "weight") == 'd';
    check_float_array(a.W, a.f64, op, "weight");
    check_ndim(a.W, op, "weight", 2, 2);
    a.V = a.W.shape(0);
    a.D = a.W.shape(1);
    check_indices(a.idx, a.V, op);
    a.out_shape = shape_of(a.idx);
    a.out_shape.push_back(a.D);
    return a;
}

// weight (V, D), indices (any shape) int64 -> (*indices.shape, D)
py::array embedding_forward(const py::handle& wo, const py::handle& io) {
    const EmbArgs a = parse_emb_forward(wo, io);
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array y = new_array<T>(a.out_shape);
        T* yp = out_ptr<T>(y);
        const T* wp = in_ptr<T>(a.W);
        const int64_t* ip = in_ptr<int64_t>(a.idx);
        const int64_t K = a.idx.size();
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().embedding_forward(yp, wp, ip, K, a.V, a.D);
        }
        return y;
    };
    return a.f64 ? go(double{}) : go(float{});
}

py::tuple embedding_forward_args(const py::handle& wo, const py::handle& io,
                                 const py::handle& result) {
    const EmbArgs a = parse_emb_forward(wo, io);
    py::array y = checked_result(result, "embedding", "result", a.f64, a.out_shape);
    return instr_tuple({addr(y), addr(a.W), addr(a.idx)},
                       {g_emb_fwd_kind, int64_t(a.idx.size()), a.V, a.D}, {}, a.f64,
                       {a.W, a.idx});
}

EmbArgs parse_emb_backward(const py::handle& go, const py::handle& io, int64_t num_weights) {
    const char* op = "embedding_backward";
    EmbArgs a;
    a.dy = as_array(go, op, "dy");
    a.idx = as_array(io, op, "input");
    a.f64 = float_kind(a.dy, op, "dy") == 'd';
    check_float_array(a.dy, a.f64, op, "dy");
    if (num_weights < 0) value_error("embedding_backward: num_weights must be >= 0");
    check_indices(a.idx, num_weights, op);
    if (a.dy.ndim() != a.idx.ndim() + 1)
        value_error("embedding_backward: dy must have shape indices.shape + (D,), got " +
                    shape_str(shape_of(a.dy)) + " for indices of shape " +
                    shape_str(shape_of(a.idx)));
    a.V = num_weights;
    a.D = a.dy.shape(a.dy.ndim() - 1);
    std::vector<int64_t> want = shape_of(a.idx);
    want.push_back(a.D);
    check_shape(a.dy, op, "dy", want);
    a.out_shape = {num_weights, a.D};
    return a;
}

// dy (*indices.shape, D), indices int64 -> dweight (num_weights, D)
py::array embedding_backward(const py::handle& go, const py::handle& io, int64_t num_weights,
                             int64_t padding_idx) {
    const EmbArgs a = parse_emb_backward(go, io, num_weights);
    const auto run = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array dW = new_array<T>(a.out_shape);
        T* dwp = out_ptr<T>(dW);
        const T* gp = in_ptr<T>(a.dy);
        const int64_t* ip = in_ptr<int64_t>(a.idx);
        const int64_t K = a.idx.size();
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().embedding_backward(dwp, gp, ip, K, num_weights, a.D, padding_idx);
        }
        return dW;
    };
    return a.f64 ? run(double{}) : run(float{});
}

py::tuple embedding_backward_args(const py::handle& go, const py::handle& io,
                                  int64_t num_weights, int64_t padding_idx,
                                  const py::handle& result) {
    const EmbArgs a = parse_emb_backward(go, io, num_weights);
    py::array dW = checked_result(result, "embedding_backward", "result", a.f64, a.out_shape);
    return instr_tuple({addr(dW), addr(a.dy), addr(a.idx)},
                       {g_emb_bwd_kind, int64_t(a.idx.size()), a.V, a.D, padding_idx}, {}, a.f64,
                       {a.dy, a.idx});
}

// weight (V, D) renormalized in place at the rows named by indices
void embedding_renorm(const py::handle& wo, const py::handle& io, double max_norm,
                      double norm_type) {
    const char* op = "embedding_renorm";
    py::array W = as_array(wo, op, "weight"), idx = as_array(io, op, "input");
    dispatch_float(W, op, "weight", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(W, op, "weight");
        check_ndim(W, op, "weight", 2, 2);
        if (!W.writeable()) value_error("embedding_renorm: weight must be writeable");
        const int64_t V = W.shape(0), D = W.shape(1);
        check_indices(idx, V, op);
        if (!(max_norm >= 0)) value_error("embedding: max_norm must be >= 0");
        if (!(norm_type > 0)) value_error("embedding: norm_type must be > 0");
        T* wp = out_ptr<T>(W);
        const int64_t* ip = in_ptr<int64_t>(idx);
        const int64_t K = idx.size();
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().embedding_renorm(wp, ip, K, V, D, max_norm, norm_type);
        }
        return 0;
    });
}

}  // namespace

void bind_norm(py::module_& m) {
    m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("weight"),
          py::arg("bias"), py::arg("running_mean"), py::arg("running_var"),
          py::arg("num_batches_tracked"), py::arg("training"), py::arg("momentum"), py::arg("eps"),
          "Batch norm over (N, C) or (N, C, L): (y, mean, invstd); running statistics updated "
          "in place in training (momentum < 0: cumulative average).");
    m.def("batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("x"),
          py::arg("weight"), py::arg("mean"), py::arg("invstd"), py::arg("training"),
          py::arg("need_dx") = true, py::arg("need_dw") = true, py::arg("need_db") = true,
          "(dx, dweight, dbias) of batch norm, None where not needed.");
    m.def("layer_norm_forward", &layer_norm_forward, py::arg("x"), py::arg("weight"),
          py::arg("bias"), py::arg("eps"),
          "Layer norm of the rows of x (M, D): (y, mean, rstd).");
    m.def("layer_norm_backward", &layer_norm_backward, py::arg("dy"), py::arg("x"),
          py::arg("weight"), py::arg("mean"), py::arg("rstd"), py::arg("need_dx") = true,
          py::arg("need_dw") = true, py::arg("need_db") = true,
          "(dx, dweight, dbias) of layer norm, None where not needed.");
    m.def("embedding_forward", &embedding_forward, py::arg("weight"), py::arg("indices"),
          "weight[indices]: (*indices.shape, D) rows of weight (V, D).");
    m.def("embedding_backward", &embedding_backward, py::arg("dy"), py::arg("indices"),
          py::arg("num_weights"), py::arg("padding_idx") = -1,
          "Scatter-add of dy rows into a zero (num_weights, D) gradient, indices in order; the "
          "row padding_idx stays zero.");
    g_bn_fwd_kind = register_instr_kind(
        {"batch_norm_fwd", &run_norm<NormOp::bn_fwd>, &norm_operands<NormOp::bn_fwd>,
         &instr::elems_flops<norm_operands<NormOp::bn_fwd>>, &instr::layout_valid<9, 5, 2, 1, 4>});
    g_bn_bwd_kind = register_instr_kind(
        {"batch_norm_bwd", &run_norm<NormOp::bn_bwd>, &norm_operands<NormOp::bn_bwd>,
         &instr::elems_flops<norm_operands<NormOp::bn_bwd>>, &instr::layout_valid<8, 5, 0, 1, 4>});
    g_ln_fwd_kind = register_instr_kind(
        {"layer_norm_fwd", &run_norm<NormOp::ln_fwd>, &norm_operands<NormOp::ln_fwd>,
         &instr::elems_flops<norm_operands<NormOp::ln_fwd>>, &instr::layout_valid<6, 3, 1, 1, 3>});
    g_ln_bwd_kind = register_instr_kind(
        {"layer_norm_bwd", &run_norm<NormOp::ln_bwd>, &norm_operands<NormOp::ln_bwd>,
         &instr::elems_flops<norm_operands<NormOp::ln_bwd>>, &instr::layout_valid<8, 3, 0, 1, 3>});
    g_emb_fwd_kind = register_instr_kind(
        {"embedding_fwd", &run_norm<NormOp::emb_fwd>, &norm_operands<NormOp::emb_fwd>,
         &instr::elems_flops<norm_operands<NormOp::emb_fwd>>, &instr::layout_valid<3, 4, 0, 1, 4>});
    g_emb_bwd_kind = register_instr_kind(
        {"embedding_bwd", &run_norm<NormOp::emb_bwd>, &norm_operands<NormOp::emb_bwd>,
         &instr::elems_flops<norm_operands<NormOp::emb_bwd>>, &instr::layout_valid<3, 5, 0, 1, 4>});
    m.def("batch_norm_forward_args", &batch_norm_forward_args, py::arg("x"), py::arg("weight"),
          py::arg("bias"), py::arg("running_mean"), py::arg("running_var"),
          py::arg("num_batches_tracked"), py::arg("training"), py::arg("momentum"), py::arg("eps"),
          py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for batch_norm_forward(...) = result: "
          "(pointers, ints, reals, float64, [(address, bytes) read]).");
    m.def("batch_norm_backward_args", &batch_norm_backward_args, py::arg("dy"), py::arg("x"),
          py::arg("weight"), py::arg("mean"), py::arg("invstd"), py::arg("training"),
          py::arg("need_dx") = true, py::arg("need_dw") = true, py::arg("need_db") = true,
          py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for batch_norm_backward(...) = result.");
    m.def("layer_norm_forward_args", &layer_norm_forward_args, py::arg("x"), py::arg("weight"),
          py::arg("bias"), py::arg("eps"), py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for layer_norm_forward(...) = result.");
    m.def("layer_norm_backward_args", &layer_norm_backward_args, py::arg("dy"), py::arg("x"),
          py::arg("weight"), py::arg("mean"), py::arg("rstd"), py::arg("need_dx") = true,
          py::arg("need_dw") = true, py::arg("need_db") = true, py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for layer_norm_backward(...) = result.");
    m.def("embedding_forward_args", &embedding_forward_args, py::arg("weight"),
          py::arg("indices"), py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for embedding_forward(...) = result.");
    m.def("embedding_backward_args", &embedding_backward_args, py::arg("dy"), py::arg("indices"),
          py::arg("num_weights"), py::arg("padding_idx") = -1, py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for embedding_backward(...) = result.");
    add_record_args(m, {{"batch_norm_forward", "batch_norm_forward_args"},
                        {"batch_norm_backward", "batch_norm_backward_args"},
                        {"layer_norm_forward", "layer_norm_forward_args"},
                        {"layer_norm_backward", "layer_norm_backward_args"},
                        {"embedding_forward", "embedding_forward_args"},
                        {"embedding_backward", "embedding_backward_args"}});
    m.def("embedding_renorm", &embedding_renorm, py::arg("weight"), py::arg("indices"),
          py::arg("max_norm"), py::arg("norm_type"),
          "Scales the rows of weight named by indices whose norm exceeds max_norm, in place.");
}

}  // namespace bind
}  // namespace gd

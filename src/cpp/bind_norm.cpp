// Bindings for batch norm, layer norm and embedding (norm.hpp): shapes, dtypes, index ranges.
#include <cstring>
#include <stdexcept>
#include <string>

#include "bind_common.hpp"
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

template <class T>
void run_norm_typed(const Instr& in) {
    const NormKernels<T>& K = norm_kernels<T>();
    const auto& i = in.i;
    switch (static_cast<NormOp>(i[0])) {
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
            if (static_cast<NormOp>(i[0]) == NormOp::emb_fwd)
                K.embedding_forward(NP<T>(in, 0), NP<T>(in, 1), idx, i[1], i[2], i[3]);
            else
                K.embedding_backward(NP<T>(in, 0), NP<T>(in, 1), idx, i[1], i[2], i[3], i[4]);
            break;
        }
    }
}

}  // namespace

void run_norm_instr(const Instr& in) {
    if (in.f64) run_norm_typed<double>(in);
    else run_norm_typed<float>(in);
}

void norm_instr_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t e = in.f64 ? 8 : 4;
    const auto& i = in.i;
    const auto add = [&](int slot, int64_t bytes, bool read, bool write) {
        if (in.p[slot] != nullptr) ops.push_back({in.p[slot], bytes, read, write, slot});
    };
    switch (static_cast<NormOp>(i[0])) {
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
            const bool bn = static_cast<NormOp>(i[0]) == NormOp::bn_bwd;
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

namespace bind {
namespace {

// An optional (C,) parameter/statistic array of dtype T, or null for None.
template <class T>
const T* opt_vec(const py::handle& o, const char* op, const char* arg, int64_t C) {
    if (o.is_none()) return nullptr;
    py::array a = as_array(o, op, arg);
    check_array<T>(a, op, arg);
    check_shape(a, op, arg, {C});
    return in_ptr<T>(a);
}

// x (N, C) or (N, C, L) -> (y, mean (C,), invstd (C,)); running_mean/var and
// num_batches_tracked (int64, 0-d or (1,)) are updated in place in training
py::tuple batch_norm_forward(const py::handle& xo, const py::handle& wo, const py::handle& bo,
                             const py::handle& rmo, const py::handle& rvo, const py::handle& nbo,
                             bool training, double momentum, double eps) {
    const char* op = "batch_norm";
    py::array x = as_array(xo, op, "input");
    return dispatch_float(x, op, "input", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "input");
        check_ndim(x, op, "input", 2, 3);
        const int64_t N = x.shape(0), C = x.shape(1), L = x.ndim() == 3 ? x.shape(2) : 1;
        const T* w = opt_vec<T>(wo, op, "weight", C);
        const T* b = opt_vec<T>(bo, op, "bias", C);
        T* rm = const_cast<T*>(opt_vec<T>(rmo, op, "running_mean", C));
        T* rv = const_cast<T*>(opt_vec<T>(rvo, op, "running_var", C));
        if ((rm == nullptr) != (rv == nullptr))
            value_error("batch_norm: running_mean and running_var must both be arrays or both None");
        if (rm != nullptr) {
            if (!py::reinterpret_borrow<py::array>(rmo).writeable() ||
                !py::reinterpret_borrow<py::array>(rvo).writeable())
                value_error("batch_norm: running_mean and running_var must be writeable");
        }
        if (!training && rm == nullptr)
            value_error("batch_norm: running_mean and running_var are required when training=False");
        if (training && N * L <= 1)
            value_error("batch_norm: expected more than 1 value per channel when training, got "
                        "input of shape " + shape_str(shape_of(x)));
        if (!(eps >= 0)) value_error("batch_norm: eps must be >= 0, got " + std::to_string(eps));
        int64_t* nbt = nullptr;
        if (!nbo.is_none()) {
            py::array nb = as_array(nbo, op, "num_batches_tracked");
            check_array<int64_t>(nb, op, "num_batches_tracked");
            if (nb.size() != 1)
                value_error("batch_norm: num_batches_tracked must hold one element, got shape " +
                            shape_str(shape_of(nb)));
            if (!nb.writeable()) value_error("batch_norm: num_batches_tracked must be writeable");
            nbt = static_cast<int64_t*>(nb.mutable_data());
        }
        if (training && momentum < 0 && nbt == nullptr)
            value_error("batch_norm: momentum=None (a cumulative average) needs num_batches_tracked");
        py::array y = new_array<T>(shape_of(x)), mean = new_array<T>({C}), inv = new_array<T>({C});
        T *yp = out_ptr<T>(y), *mp = out_ptr<T>(mean), *ip = out_ptr<T>(inv);
        const T* xp = in_ptr<T>(x);
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().batch_norm_forward(yp, mp, ip, rm, rv, training ? nbt : nullptr, xp, w,
                                                 b, N, C, L, eps, momentum, training);
        }
        return py::make_tuple(y, mean, inv);
    });
}

// dy, x (N, C[, L]), weight (C,) or None, mean, invstd (C,) -> (dx, dweight, dbias), None where
// not needed
py::tuple batch_norm_backward(const py::handle& dyo, const py::handle& xo, const py::handle& wo,
                              const py::handle& mo, const py::handle& io, bool training,
                              bool need_dx, bool need_dw, bool need_db) {
    const char* op = "batch_norm_backward";
    py::array dy = as_array(dyo, op, "dy"), x = as_array(xo, op, "x");
    return dispatch_float(x, op, "x", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "x");
        check_array<T>(dy, op, "dy");
        check_ndim(x, op, "x", 2, 3);
        check_shape(dy, op, "dy", shape_of(x));
        const int64_t N = x.shape(0), C = x.shape(1), L = x.ndim() == 3 ? x.shape(2) : 1;
        const T* w = opt_vec<T>(wo, op, "weight", C);
        const T* m = opt_vec<T>(mo, op, "mean", C);
        const T* inv = opt_vec<T>(io, op, "invstd", C);
        if (m == nullptr || inv == nullptr) value_error("batch_norm_backward: mean and invstd are required");
        py::object dx = py::none(), dw = py::none(), db = py::none();
        T *dxp = nullptr, *dwp = nullptr, *dbp = nullptr;
        if (need_dx) { py::array a = new_array<T>(shape_of(x)); dxp = out_ptr<T>(a); dx = a; }
        if (need_dw) { py::array a = new_array<T>({C}); dwp = out_ptr<T>(a); dw = a; }
        if (need_db) { py::array a = new_array<T>({C}); dbp = out_ptr<T>(a); db = a; }
        const T *dyp = in_ptr<T>(dy), *xp = in_ptr<T>(x);
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().batch_norm_backward(dxp, dwp, dbp, dyp, xp, w, m, inv, N, C, L,
                                                  training);
        }
        return py::make_tuple(dx, dw, db);
    });
}

// x (M, D), weight/bias (D,) or None -> (y (M, D), mean (M,), rstd (M,))
py::tuple layer_norm_forward(const py::handle& xo, const py::handle& wo, const py::handle& bo,
                             double eps) {
    const char* op = "layer_norm";
    py::array x = as_array(xo, op, "input");
    return dispatch_float(x, op, "input", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "input");
        check_ndim(x, op, "input", 2, 2);
        const int64_t M = x.shape(0), D = x.shape(1);
        const T* w = opt_vec<T>(wo, op, "weight", D);
        const T* b = opt_vec<T>(bo, op, "bias", D);
        if (!(eps >= 0)) value_error("layer_norm: eps must be >= 0, got " + std::to_string(eps));
        py::array y = new_array<T>({M, D}), mean = new_array<T>({M}), rstd = new_array<T>({M});
        T *yp = out_ptr<T>(y), *mp = out_ptr<T>(mean), *rp = out_ptr<T>(rstd);
        const T* xp = in_ptr<T>(x);
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().layer_norm_forward(yp, mp, rp, xp, w, b, M, D, eps);
        }
        return py::make_tuple(y, mean, rstd);
    });
}

// dy, x (M, D), weight (D,) or None, mean, rstd (M,) -> (dx, dweight, dbias)
py::tuple layer_norm_backward(const py::handle& dyo, const py::handle& xo, const py::handle& wo,
                              const py::handle& mo, const py::handle& ro, bool need_dx,
                              bool need_dw, bool need_db) {
    const char* op = "layer_norm_backward";
    py::array dy = as_array(dyo, op, "dy"), x = as_array(xo, op, "x");
    return dispatch_float(x, op, "x", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "x");
        check_array<T>(dy, op, "dy");
        check_ndim(x, op, "x", 2, 2);
        check_shape(dy, op, "dy", shape_of(x));
        const int64_t M = x.shape(0), D = x.shape(1);
        const T* w = opt_vec<T>(wo, op, "weight", D);
        const T* m = opt_vec<T>(mo, op, "mean", M);
        const T* r = opt_vec<T>(ro, op, "rstd", M);
        if (m == nullptr || r == nullptr) value_error("layer_norm_backward: mean and rstd are required");
        py::object dx = py::none(), dw = py::none(), db = py::none();
        T *dxp = nullptr, *dwp = nullptr, *dbp = nullptr;
        if (need_dx) { py::array a = new_array<T>({M, D}); dxp = out_ptr<T>(a); dx = a; }
        if (need_dw) { py::array a = new_array<T>({D}); dwp = out_ptr<T>(a); dw = a; }
        if (need_db) { py::array a = new_array<T>({D}); dbp = out_ptr<T>(a); db = a; }
        const T *dyp = in_ptr<T>(dy), *xp = in_ptr<T>(x);
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().layer_norm_backward(dxp, dwp, dbp, dyp, xp, w, m, r, M, D);
        }
        return py::make_tuple(dx, dw, db);
    });
}

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

// weight (V, D), indices (any shape) int64 -> (*indices.shape, D)
py::array embedding_forward(const py::handle& wo, const py::handle& io) {
    const char* op = "embedding";
    py::array W = as_array(wo, op, "weight"), idx = as_array(io, op, "input");
    return dispatch_float(W, op, "weight", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(W, op, "weight");
        check_ndim(W, op, "weight", 2, 2);
        const int64_t V = W.shape(0), D = W.shape(1);
        check_indices(idx, V, op);
        std::vector<int64_t> shape = shape_of(idx);
        shape.push_back(D);
        py::array y = new_array<T>(shape);
        T* yp = out_ptr<T>(y);
        const T* wp = in_ptr<T>(W);
        const int64_t* ip = in_ptr<int64_t>(idx);
        const int64_t K = idx.size();
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().embedding_forward(yp, wp, ip, K, V, D);
        }
        return y;
    });
}

// dy (*indices.shape, D), indices int64 -> dweight (num_weights, D)
py::array embedding_backward(const py::handle& go, const py::handle& io, int64_t num_weights,
                             int64_t padding_idx) {
    const char* op = "embedding_backward";
    py::array dy = as_array(go, op, "dy"), idx = as_array(io, op, "input");
    return dispatch_float(dy, op, "dy", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(dy, op, "dy");
        if (num_weights < 0) value_error("embedding_backward: num_weights must be >= 0");
        check_indices(idx, num_weights, op);
        if (dy.ndim() != idx.ndim() + 1)
            value_error("embedding_backward: dy must have shape indices.shape + (D,), got " +
                        shape_str(shape_of(dy)) + " for indices of shape " + shape_str(shape_of(idx)));
        const int64_t D = dy.shape(dy.ndim() - 1);
        std::vector<int64_t> want = shape_of(idx);
        want.push_back(D);
        check_shape(dy, op, "dy", want);
        py::array dW = new_array<T>({num_weights, D});
        T* dwp = out_ptr<T>(dW);
        const T* gp = in_ptr<T>(dy);
        const int64_t* ip = in_ptr<int64_t>(idx);
        const int64_t K = idx.size();
        {
            py::gil_scoped_release nogil;
            norm_kernels<T>().embedding_backward(dwp, gp, ip, K, num_weights, D, padding_idx);
        }
        return dW;
    });
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
    m.def("embedding_renorm", &embedding_renorm, py::arg("weight"), py::arg("indices"),
          py::arg("max_norm"), py::arg("norm_type"),
          "Scales the rows of weight named by indices whose norm exceeds max_norm, in place.");
}

}  // namespace bind
}  // namespace gd

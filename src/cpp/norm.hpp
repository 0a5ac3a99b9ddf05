// Normalization layers and embedding lookup: BatchNorm1d, LayerNorm, Embedding.
// Shape legend: x, y, dx, dy (N, C, L) for batch norm (a 2-d input (N, C) is L = 1), statistics
// per channel C; (M, D) for layer norm (M rows normalized over their last D elements), statistics
// per row; embedding weight W (V, D), indices (K) int64, output (K, D).
//
// These kernels have their own small table (NormKernels below) instead of entries in
// kernels.hpp's KernelTable: norm.cpp is compiled once per ISA like every kernel source, and
// norm_kernels<T>() picks the copy of the ISA the main table uses, so the dispatch is the same.
#pragma once
#include <cstdint>
#include <vector>

#include "common.hpp"

namespace gd {

template <class T>
struct NormKernels {
    // Training (training = true): per channel mean and 1 / sqrt(biased var + eps) of x into
    // mean, invstd (C); when run_mean/run_var are not null they become
    // momentum * stat + (1 - momentum) * running (var unbiased), with momentum < 0 meaning a
    // cumulative average, 1 / num_batches_tracked; num_batches_tracked (a 1-element int64, or
    // null) is incremented first. Evaluation: mean = run_mean, invstd = 1 / sqrt(run_var + eps)
    // (written to mean, invstd for the backward pass). Then y = (x - mean) * invstd * w + b; w, b
    // may be null (1 and 0).
    void (*batch_norm_forward)(T* y, T* mean, T* invstd, T* run_mean, T* run_var,
                               int64_t* num_batches_tracked, const T* x, const T* w, const T* b,
                               int64_t N, int64_t C, int64_t L, double eps, double momentum,
                               bool training);
    // dy (N, C, L) -> dx (N, C, L), dw (C), db (C); null outputs are skipped. training: the
    // statistics depended on x (mean and invstd from the forward pass); else they are constants.
    void (*batch_norm_backward)(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w,
                                const T* mean, const T* invstd, int64_t N, int64_t C, int64_t L,
                                bool training);
    // x (M, D), w, b (D) or null -> y (M, D), mean (M), rstd (M) = 1 / sqrt(biased var + eps)
    void (*layer_norm_forward)(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b,
                               int64_t M, int64_t D, double eps);
    // dy (M, D) -> dx (M, D), dw (D), db (D); null outputs are skipped
    void (*layer_norm_backward)(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w,
                                const T* mean, const T* rstd, int64_t M, int64_t D);
    // W (V, D), idx (K) (each in [0, V): the caller checks) -> y (K, D) = W[idx]
    void (*embedding_forward)(T* y, const T* W, const int64_t* idx, int64_t K, int64_t V,
                              int64_t D);
    // dy (K, D) -> dW (V, D) = sum over k with idx[k] = v (k ascending) of dy[k], the row
    // padding_idx (if in [0, V)) left zero
    void (*embedding_backward)(T* dW, const T* dy, const int64_t* idx, int64_t K, int64_t V,
                               int64_t D, int64_t padding_idx);
    // W (V, D) in place: each row idx[k] whose norm of order p exceeds max_norm is scaled by
    // max_norm / (norm + 1e-7) (PyTorch's embedding_renorm_), rows in order of first occurrence
    void (*embedding_renorm)(T* W, const int64_t* idx, int64_t K, int64_t V, int64_t D,
                             double max_norm, double p);
};

struct NormTables {
    const char* isa;
    NormKernels<float> f32;
    NormKernels<double> f64;
};

const NormTables& norm_tables_baseline();
const NormTables& norm_tables_avx2();
const NormTables& norm_tables_avx512();
const NormTables& norm_tables_neon();

// The table of the ISA that active_kernels() uses (bind_norm.cpp).
const NormTables& active_norm_tables();
template <class T>
const NormKernels<T>& norm_kernels();
template <>
inline const NormKernels<float>& norm_kernels<float>() { return active_norm_tables().f32; }
template <>
inline const NormKernels<double>& norm_kernels<double>() { return active_norm_tables().f64; }

// The first k with idx[k] outside [0, V), or -1 (the bindings and a replay check indices before
// a kernel reads W[idx]).
int64_t first_bad_index(const int64_t* idx, int64_t K, int64_t V);

// gd.compile: the family's registered instruction kinds (bind_norm.cpp), one per NormOp
// (batch_norm_fwd, ...). i[0] is the kind's id, the rest mirrors the eager binding's kernel call
// (the `op` slot below is that id):
//   bn_fwd  p[y, mean, invstd, run_mean|0, run_var|0, nbt|0, x, w|0, b|0]
//           i[op, N, C, L, training]  d[eps, momentum]
//   bn_bwd  p[dx|0, dw|0, db|0, dy, x, w|0, mean, invstd]  i[op, N, C, L, training]
//   ln_fwd  p[y, mean, rstd, x, w|0, b|0]  i[op, M, D]  d[eps]
//   ln_bwd  p[dx|0, dw|0, db|0, dy, x, w|0, mean, rstd]  i[op, M, D]
//   emb_fwd p[y, W, idx]  i[op, K, V, D]  (indices checked on every run, as the binding does)
//   emb_bwd p[dW, dy, idx]  i[op, K, V, D, padding_idx]
enum class NormOp : int { bn_fwd = 0, bn_bwd, ln_fwd, ln_bwd, emb_fwd, emb_bwd };

}  // namespace gd

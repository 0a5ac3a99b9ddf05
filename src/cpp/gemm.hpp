// The matrix-product interface every other kernel calls: a packed BLIS-style GEMM (gemm.cpp, with
// its micro-kernels and packing in src/cpp/gemm/), bitwise identical for any thread count.
#pragma once
#include "common.hpp"

namespace gd {
namespace GD_NS {

// A (M, K) or (K, M) if ta; B (K, N) or (N, K) if tb; C (M, N); all row-major with leading dims.
// C = alpha * op(A) op(B) + beta * C. beta == 0 never reads C (so NaN in C does not leak).
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// y[j] = alpha * (row j of W) . x + beta * y[j] for rows [j0, j1) of W (K values each, rows ldw
// apart), on the calling thread: per row exactly the arithmetic of gemm with M = 1 and op(B) =
// B^T, K >= 2 (a batch-1 linear_forward), however the rows are grouped.
template <class T>
void gemv_rows(int64_t j0, int64_t j1, int64_t K, const T* x, const T* W, int64_t ldw, T alpha,
               T beta, T* y);

// Whether gemm(false, true, M, N, K, ...) takes the row-dot path (C elements as dot products of
// rows of A and rows of B: a Linear forward at a small batch), and columns [j0, j1) of that
// product with alpha = 1 (then C = relu(C) if relu), on the calling thread: per element its bits.
template <class T>
bool gemm_uses_dots(int64_t M, int64_t N, int64_t K);
template <class T>
void gemm_dots_cols(int64_t j0, int64_t j1, int64_t M, int64_t K, const T* A, int64_t lda,
                    const T* B, int64_t ldb, T beta, T* C, int64_t ldc, bool relu);

// gemm with alpha = 1, then C = relu(C) (x <= 0 -> +0, NaN kept), the ReLU of each thread's slab
// done by that thread right after its product: the bits of gemm followed by a ReLU pass.
template <class T>
void gemm_relu(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
               const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// The same product as three plain loops: the readable reference the fast path is checked against.
template <class T>
void gemm_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace GD_NS
}  // namespace gd

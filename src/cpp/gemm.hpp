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

// The same product as three plain loops: the readable reference the fast path is checked against.
template <class T>
void gemm_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace GD_NS
}  // namespace gd

// The matrix-product interface every other kernel calls. This is the blocked reference
// implementation; the packed BLIS-style GEMM (src/cpp/gemm/) replaces the body, not the signature.
#pragma once
#include "common.hpp"

namespace gd {
namespace GD_NS {

// A (M, K) or (K, M) if ta; B (K, N) or (N, K) if tb; C (M, N); all row-major with leading dims.
// C = alpha * op(A) op(B) + beta * C. beta == 0 never reads C (so NaN in C does not leak).
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace GD_NS
}  // namespace gd

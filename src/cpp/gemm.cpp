// Blocked reference GEMM.
// Every C element is a sum over k in increasing order computed by one thread; work is split in
// fixed 4-row blocks of C, so results do not depend on the thread count.
#include "gemm.hpp"

#include <algorithm>
#include <vector>

#include "parallel.hpp"

namespace gd {
namespace GD_NS {
namespace {

constexpr int64_t kRowBlock = 4;    // rows of C updated together: one load of B feeds four FMAs
constexpr int64_t kKc = 256;        // depth of a K block: a B panel of kKc x kNc stays in L2
constexpr int64_t kNc = 512;

// C[i, j] = sum_k A[i, k] * B[j, k]: dot products of contiguous rows (matrix-vector, small M).
template <class T>
void gemm_dots(int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
               int64_t ldb, T beta, T* C, int64_t ldc) {
    parallel_chunks(N, 64, 2 * M * N * K, [&](int64_t j0, int64_t j1) {
        for (int64_t i = 0; i < M; ++i) {
            const T* a = A + i * lda;
            for (int64_t j = j0; j < j1; ++j) {
                const T* b = B + j * ldb;
                T acc = 0;
#pragma omp simd reduction(+ : acc)
                for (int64_t k = 0; k < K; ++k) acc += a[k] * b[k];
                T* c = C + i * ldc + j;
                *c = beta == T(0) ? alpha * acc : alpha * acc + beta * *c;
            }
        }
    });
}

}  // namespace

template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == T(0)) {
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
        return;
    }
    if (!ta && tb && M <= 4) {
        gemm_dots(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    // op(B) as a (K, N) row-major panel: used in place when it already is one, packed otherwise.
    std::vector<T> packed;
    const T* Bp = B;
    int64_t ldbp = ldb;
    if (tb) {
        packed.resize(static_cast<size_t>(K * N));
        for (int64_t j = 0; j < N; ++j)
            for (int64_t k = 0; k < K; ++k) packed[k * N + j] = B[j * ldb + k];
        Bp = packed.data();
        ldbp = N;
    }
    auto a_at = [&](int64_t i, int64_t k) { return ta ? A[k * lda + i] : A[i * lda + k]; };

    parallel_chunks(M, kRowBlock, 2 * M * N * K, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            T* c = C + i * ldc;
            if (beta == T(0)) {
                for (int64_t j = 0; j < N; ++j) c[j] = T(0);
            } else if (beta != T(1)) {
                for (int64_t j = 0; j < N; ++j) c[j] *= beta;
            }
        }
        const int64_t rows = i1 - i0;
        T* GD_RESTRICT c0 = C + i0 * ldc;
        T* GD_RESTRICT c1 = C + (i0 + std::min<int64_t>(1, rows - 1)) * ldc;
        T* GD_RESTRICT c2 = C + (i0 + std::min<int64_t>(2, rows - 1)) * ldc;
        T* GD_RESTRICT c3 = C + (i0 + std::min<int64_t>(3, rows - 1)) * ldc;
        for (int64_t k0 = 0; k0 < K; k0 += kKc) {
            const int64_t k1 = std::min(K, k0 + kKc);
            for (int64_t j0 = 0; j0 < N; j0 += kNc) {
                const int64_t j1 = std::min(N, j0 + kNc);
                for (int64_t k = k0; k < k1; ++k) {
                    const T* GD_RESTRICT b = Bp + k * ldbp;
                    if (rows == 4) {
                        const T a0 = alpha * a_at(i0, k), a1 = alpha * a_at(i0 + 1, k);
                        const T a2 = alpha * a_at(i0 + 2, k), a3 = alpha * a_at(i0 + 3, k);
#pragma omp simd
                        for (int64_t j = j0; j < j1; ++j) {
                            c0[j] += a0 * b[j];
                            c1[j] += a1 * b[j];
                            c2[j] += a2 * b[j];
                            c3[j] += a3 * b[j];
                        }
                    } else {
                        for (int64_t r = 0; r < rows; ++r) {
                            T* GD_RESTRICT c = C + (i0 + r) * ldc;
                            const T a = alpha * a_at(i0 + r, k);
#pragma omp simd
                            for (int64_t j = j0; j < j1; ++j) c[j] += a * b[j];
                        }
                    }
                }
            }
        }
    });
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace GD_NS
}  // namespace gd

// BatchNorm, LayerNorm and Embedding kernels (norm.hpp has the shape legend and contracts).
// Determinism: every sum over a channel, a row or a vocabulary row is taken by one thread in a
// fixed order (channels / rows / vocabulary rows are cut into chunks whose size depends only on
// the problem size), so results are bitwise identical for any thread count.
#include "norm.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "parallel.hpp"

namespace gd {
namespace GD_NS {
namespace {

// Channels (or layer-norm columns) per chunk of a column sum: a block of columns summed down
// the rows, four cache lines of floats wide, so the inner loop over the block vectorizes.
constexpr int64_t kCols = 64;
constexpr int64_t kRows = 8;  // rows per chunk of a row-wise pass

// s[c - c0] = sum_n f(n, c) for c in [c0, c1), n ascending (x is (N, C), L = 1)
template <class T, class F>
void column_sums(T* s, int64_t c0, int64_t c1, int64_t N, const F& f) {
    for (int64_t c = c0; c < c1; ++c) s[c - c0] = T(0);
    for (int64_t n = 0; n < N; ++n) {
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) s[c - c0] += f(n, c);
    }
}

// For x (N, C, L) with L > 1, read in memory order: s1[c] (and s2[c] when not null) = the sum
// over n of a, b from row(n, c, a, b) (the sums over one row of L). The rows are cut into fixed
// chunks of kStatRows; each chunk keeps partial sums per channel, and the partials are added in
// chunk order, so the result is the same for any thread count. (A walk channel by channel
// would jump C * L elements per step: a new page for every row of a large input.)
constexpr int64_t kStatRows = 16;
template <class T, class F>
void channel_sums(T* s1, T* s2, int64_t N, int64_t C, int64_t work, const F& row) {
    const int64_t nchunks = (N + kStatRows - 1) / kStatRows;
    std::vector<T> p1(static_cast<size_t>(nchunks * C), T(0));
    std::vector<T> p2(s2 != nullptr ? static_cast<size_t>(nchunks * C) : 0, T(0));
    parallel_chunks(N, kStatRows, work, [&](int64_t n0, int64_t n1) {
        T* q1 = p1.data() + (n0 / kStatRows) * C;
        T* q2 = s2 != nullptr ? p2.data() + (n0 / kStatRows) * C : nullptr;
        for (int64_t n = n0; n < n1; ++n)
            for (int64_t c = 0; c < C; ++c) {
                T a = 0, b = 0;
                row(n, c, a, b);
                q1[c] += a;
                if (q2 != nullptr) q2[c] += b;
            }
    });
    for (int64_t c = 0; c < C; ++c) {
        s1[c] = T(0);
        if (s2 != nullptr) s2[c] = T(0);
    }
    for (int64_t k = 0; k < nchunks; ++k)
        for (int64_t c = 0; c < C; ++c) {
            s1[c] += p1[k * C + c];
            if (s2 != nullptr) s2[c] += p2[k * C + c];
        }
}

}  // namespace

// x (N, C, L) -> y, mean, invstd; running statistics updated in training (norm.hpp)
template <class T>
void batch_norm_forward(T* y, T* mean, T* invstd, T* run_mean, T* run_var,
                        int64_t* num_batches_tracked, const T* x, const T* w, const T* b,
                        int64_t N, int64_t C, int64_t L, double eps, double momentum,
                        bool training) {
    const int64_t M = N * L;  // values per channel
    const int64_t work = 8 * N * C * L;
    if (training) {
        if (num_batches_tracked != nullptr) ++*num_batches_tracked;
        const double factor = momentum >= 0 || num_batches_tracked == nullptr
                                  ? momentum
                                  : 1.0 / double(*num_batches_tracked);
        const T f = T(factor), keep = T(1) - T(factor);
        // two passes: the mean per channel, then the sum of squared deviations from it
        std::vector<T> var_sum(static_cast<size_t>(C));
        if (L == 1) {
            parallel_chunks(C, kCols, work, [&](int64_t c0, int64_t c1) {
                column_sums(mean + c0, c0, c1, N, [&](int64_t n, int64_t c) { return x[n * C + c]; });
                for (int64_t c = c0; c < c1; ++c) mean[c] /= T(M);
                column_sums(var_sum.data() + c0, c0, c1, N, [&](int64_t n, int64_t c) {
                    const T d = x[n * C + c] - mean[c];
                    return d * d;
                });
            });
        } else {
            // per row of L a vector reduction (its order depends on the ISA's vector width,
            // never on the thread count)
            channel_sums(mean, static_cast<T*>(nullptr), N, C, work,
                         [&](int64_t n, int64_t c, T& a, T&) {
                             const T* GD_RESTRICT xr = x + (n * C + c) * L;
                             T r = 0;
#pragma omp simd reduction(+ : r)
                             for (int64_t l = 0; l < L; ++l) r += xr[l];
                             a = r;
                         });
            for (int64_t c = 0; c < C; ++c) mean[c] /= T(M);
            channel_sums(var_sum.data(), static_cast<T*>(nullptr), N, C, work,
                         [&](int64_t n, int64_t c, T& a, T&) {
                             const T* GD_RESTRICT xr = x + (n * C + c) * L;
                             const T m = mean[c];
                             T r = 0;
#pragma omp simd reduction(+ : r)
                             for (int64_t l = 0; l < L; ++l) r += (xr[l] - m) * (xr[l] - m);
                             a = r;
                         });
        }
        for (int64_t c = 0; c < C; ++c) {
            const T vs = var_sum[c];
            invstd[c] = T(1) / std::sqrt(vs / T(M) + T(eps));
            if (run_mean != nullptr) run_mean[c] = f * mean[c] + keep * run_mean[c];
            // M = 1 is refused by the binding (an unbiased variance needs two values)
            if (run_var != nullptr) run_var[c] = f * (vs / T(M - 1)) + keep * run_var[c];
        }
    } else {
        for (int64_t c = 0; c < C; ++c) {
            mean[c] = run_mean[c];
            invstd[c] = T(1) / std::sqrt(run_var[c] + T(eps));
        }
    }
    // y = (x - mean) * (invstd * w) + b, with scale = invstd * w and shift = b per channel
    std::vector<T> scale_v(static_cast<size_t>(C)), shift_v(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
        scale_v[c] = w != nullptr ? invstd[c] * w[c] : invstd[c];
        shift_v[c] = b != nullptr ? b[c] : T(0);
    }
    const T* GD_RESTRICT sc = scale_v.data();
    const T* GD_RESTRICT sh = shift_v.data();
    if (L == 1) {
        parallel_chunks(N, kRows, work, [&](int64_t n0, int64_t n1) {
            for (int64_t n = n0; n < n1; ++n) {
                const T* GD_RESTRICT xr = x + n * C;
                T* GD_RESTRICT yr = y + n * C;
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - mean[c]) * sc[c] + sh[c];
            }
        });
    } else {
        parallel_chunks(N * C, kRows, work, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t c = r % C;
                const T m = mean[c], scale = sc[c], shift = sh[c];
                const T* GD_RESTRICT xr = x + r * L;
                T* GD_RESTRICT yr = y + r * L;
#pragma omp simd
                for (int64_t l = 0; l < L; ++l) yr[l] = (xr[l] - m) * scale + shift;
            }
        });
    }
}

// Per channel c, with xc = x - mean, M = N * L:
//   db = sum dy,  dw = invstd * sum(dy * xc)
//   training:   dx = w * invstd * (dy - db / M - xc * invstd^2 * sum(dy * xc) / M)
//               (the derivative through mean and invstd: d xhat / dx projected off 1 and xhat)
//   evaluation: dx = w * invstd * dy
template <class T>
void batch_norm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean,
                         const T* invstd, int64_t N, int64_t C, int64_t L, bool training) {
    const int64_t M = N * L;
    const int64_t work = 8 * N * C * L;
    const bool need_sums = dw != nullptr || db != nullptr || (dx != nullptr && training);
    // sums per channel: sdy = sum dy, sdx = sum dy * (x - mean)
    std::vector<T> sdy, sdx;
    if (need_sums) {
        sdy.assign(static_cast<size_t>(C), T(0));
        sdx.assign(static_cast<size_t>(C), T(0));
        if (L == 1) {
            parallel_chunks(C, kCols, work, [&](int64_t c0, int64_t c1) {
                column_sums(sdy.data() + c0, c0, c1, N,
                            [&](int64_t n, int64_t c) { return dy[n * C + c]; });
                column_sums(sdx.data() + c0, c0, c1, N, [&](int64_t n, int64_t c) {
                    return dy[n * C + c] * (x[n * C + c] - mean[c]);
                });
            });
        } else {
            channel_sums(sdy.data(), sdx.data(), N, C, work,
                         [&](int64_t n, int64_t c, T& a, T& b) {
                             const int64_t o = (n * C + c) * L;
                             const T m = mean[c];
                             T rs = 0, rq = 0;
#pragma omp simd reduction(+ : rs, rq)
                             for (int64_t l = 0; l < L; ++l) {
                                 rs += dy[o + l];
                                 rq += dy[o + l] * (x[o + l] - m);
                             }
                             a = rs;
                             b = rq;
                         });
        }
        for (int64_t c = 0; c < C; ++c) {
            if (db != nullptr) db[c] = sdy[c];
            if (dw != nullptr) dw[c] = sdx[c] * invstd[c];
        }
    }
    if (dx == nullptr) return;
    // dx = k * (dy - a - (x - mean) * q) per channel
    std::vector<T> k(static_cast<size_t>(C)), a(static_cast<size_t>(C)), q(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
        k[c] = w != nullptr ? w[c] * invstd[c] : invstd[c];
        a[c] = training ? sdy[c] / T(M) : T(0);
        q[c] = training ? invstd[c] * invstd[c] * sdx[c] / T(M) : T(0);
    }
    const T *kp = k.data(), *ap = a.data(), *qp = q.data();
    if (L == 1) {
        parallel_chunks(N, kRows, work, [&](int64_t n0, int64_t n1) {
            for (int64_t n = n0; n < n1; ++n) {
                const T* GD_RESTRICT xr = x + n * C;
                const T* GD_RESTRICT gr = dy + n * C;
                T* GD_RESTRICT dr = dx + n * C;
#pragma omp simd
                for (int64_t c = 0; c < C; ++c)
                    dr[c] = kp[c] * (gr[c] - ap[c] - (xr[c] - mean[c]) * qp[c]);
            }
        });
    } else {
        parallel_chunks(N * C, kRows, work, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t c = r % C;
                const T kc = kp[c], ac = ap[c], qc = qp[c], m = mean[c];
                const int64_t o = r * L;
#pragma omp simd
                for (int64_t l = 0; l < L; ++l)
                    dx[o + l] = kc * (dy[o + l] - ac - (x[o + l] - m) * qc);
            }
        });
    }
}

// x (M, D) -> y, mean, rstd, one row per iteration
template <class T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t M,
                        int64_t D, double eps) {
    parallel_chunks(M, kRows, 8 * M * D, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* GD_RESTRICT xr = x + r * D;
            T* GD_RESTRICT yr = y + r * D;
            T s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t d = 0; d < D; ++d) s += xr[d];
            const T m = s / T(D);
            T q = 0;
#pragma omp simd reduction(+ : q)
            for (int64_t d = 0; d < D; ++d) q += (xr[d] - m) * (xr[d] - m);
            const T rs = T(1) / std::sqrt(q / T(D) + T(eps));
            mean[r] = m;
            rstd[r] = rs;
            if (w != nullptr && b != nullptr) {
#pragma omp simd
                for (int64_t d = 0; d < D; ++d) yr[d] = (xr[d] - m) * rs * w[d] + b[d];
            } else if (w != nullptr) {
#pragma omp simd
                for (int64_t d = 0; d < D; ++d) yr[d] = (xr[d] - m) * rs * w[d];
            } else if (b != nullptr) {
#pragma omp simd
                for (int64_t d = 0; d < D; ++d) yr[d] = (xr[d] - m) * rs + b[d];
            } else {
#pragma omp simd
                for (int64_t d = 0; d < D; ++d) yr[d] = (xr[d] - m) * rs;
            }
        }
    });
}

// Per row, with xhat = (x - mean) * rstd and g = dy * w:
//   dx = rstd * (g - sum(g) / D - xhat * sum(g * xhat) / D)
// and per column dw = sum over rows of dy * xhat, db = sum over rows of dy (rows ascending).
template <class T>
void layer_norm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean,
                         const T* rstd, int64_t M, int64_t D) {
    if (dx != nullptr) {
        // g = dy * w in a per-chunk scratch row, so the loops below have no branch per element
        parallel_chunks(M, kRows, 8 * M * D, [&](int64_t r0, int64_t r1) {
            std::vector<T> gbuf(w != nullptr ? static_cast<size_t>(D) : 0);
            for (int64_t r = r0; r < r1; ++r) {
                const T* GD_RESTRICT xr = x + r * D;
                const T* GD_RESTRICT g = dy + r * D;
                T* GD_RESTRICT dr = dx + r * D;
                if (w != nullptr) {
                    T* GD_RESTRICT gb = gbuf.data();
#pragma omp simd
                    for (int64_t d = 0; d < D; ++d) gb[d] = g[d] * w[d];
                    g = gb;
                }
                const T m = mean[r], rs = rstd[r];
                T sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
                for (int64_t d = 0; d < D; ++d) {
                    sg += g[d];
                    sgx += g[d] * ((xr[d] - m) * rs);
                }
                const T a = sg / T(D), c = sgx / T(D);
#pragma omp simd
                for (int64_t d = 0; d < D; ++d) dr[d] = rs * (g[d] - a - ((xr[d] - m) * rs) * c);
            }
        });
    }
    if (dw == nullptr && db == nullptr) return;
    // column chunks, each summed down the rows in order into registers-sized local arrays
    parallel_chunks(D, kCols, 4 * M * D, [&](int64_t d0, int64_t d1) {
        T aw[kCols] = {}, ab[kCols] = {};
        const int64_t n = d1 - d0;
        for (int64_t r = 0; r < M; ++r) {
            const T* GD_RESTRICT xr = x + r * D + d0;
            const T* GD_RESTRICT gr = dy + r * D + d0;
            const T m = mean[r], rs = rstd[r];
#pragma omp simd
            for (int64_t d = 0; d < n; ++d) {
                aw[d] += gr[d] * ((xr[d] - m) * rs);
                ab[d] += gr[d];
            }
        }
        for (int64_t d = 0; d < n; ++d) {
            if (dw != nullptr) dw[d0 + d] = aw[d];
            if (db != nullptr) db[d0 + d] = ab[d];
        }
    });
}

// W (V, D), idx (K) -> y (K, D)
template <class T>
void embedding_forward(T* y, const T* W, const int64_t* idx, int64_t K, int64_t /*V*/,
                       int64_t D) {
    parallel_chunks(K, kRows, 2 * K * D, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) std::copy(W + idx[k] * D, W + (idx[k] + 1) * D, y + k * D);
    });
}

// dy (K, D) -> dW (V, D). The vocabulary is cut into at most 16 fixed ranges; each range's
// thread zeroes its rows and scans every index in order, adding the rows that fall in it: each
// dW[v] is a sum in ascending k whatever the thread count.
template <class T>
void embedding_backward(T* dW, const T* dy, const int64_t* idx, int64_t K, int64_t V, int64_t D,
                        int64_t padding_idx) {
    const int64_t chunk = std::max<int64_t>(64, (V + 15) / 16);
    parallel_chunks(V, chunk, 2 * (K + V) * D, [&](int64_t v0, int64_t v1) {
        std::fill(dW + v0 * D, dW + v1 * D, T(0));
        for (int64_t k = 0; k < K; ++k) {
            const int64_t v = idx[k];
            if (v < v0 || v >= v1 || v == padding_idx) continue;
            T* dr = dW + v * D;
            const T* gr = dy + k * D;
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) dr[d] += gr[d];
        }
    });
}

// W (V, D) in place, rows idx[k] in order of first occurrence (serial: a lookup's rows are few)
template <class T>
void embedding_renorm(T* W, const int64_t* idx, int64_t K, int64_t V, int64_t D, double max_norm,
                      double p) {
    std::vector<bool> seen(static_cast<size_t>(V), false);
    for (int64_t k = 0; k < K; ++k) {
        const int64_t v = idx[k];
        if (seen[static_cast<size_t>(v)]) continue;
        seen[static_cast<size_t>(v)] = true;
        T* row = W + v * D;
        double norm = 0;
        if (p == 1) {
            for (int64_t d = 0; d < D; ++d) norm += std::fabs(double(row[d]));
        } else if (p == 2) {
            for (int64_t d = 0; d < D; ++d) norm += double(row[d]) * double(row[d]);
            norm = std::sqrt(norm);
        } else if (std::isinf(p)) {
            for (int64_t d = 0; d < D; ++d) norm = std::max(norm, std::fabs(double(row[d])));
        } else {
            for (int64_t d = 0; d < D; ++d) norm += std::pow(std::fabs(double(row[d])), p);
            norm = std::pow(norm, 1.0 / p);
        }
        if (norm > max_norm) {
            const T scale = T(max_norm / (norm + 1e-7));
            for (int64_t d = 0; d < D; ++d) row[d] *= scale;
        }
    }
}

namespace {
template <class T>
NormKernels<T> make_norm_table() {
    NormKernels<T> t{};
    t.batch_norm_forward = &batch_norm_forward<T>;
    t.batch_norm_backward = &batch_norm_backward<T>;
    t.layer_norm_forward = &layer_norm_forward<T>;
    t.layer_norm_backward = &layer_norm_backward<T>;
    t.embedding_forward = &embedding_forward<T>;
    t.embedding_backward = &embedding_backward<T>;
    t.embedding_renorm = &embedding_renorm<T>;
    return t;
}
}  // namespace

}  // namespace GD_NS

const NormTables& GD_CONCAT(norm_tables_, GD_ISA)() {
    static const NormTables t{GD_STR(GD_ISA), GD_NS::make_norm_table<float>(),
                              GD_NS::make_norm_table<double>()};
    return t;
}

}  // namespace gd

// Softmax, log-softmax, fused softmax cross-entropy and mean squared error.
// Shape legend: x, y, dx, dy, logits (B, C) row-major; target, loss, lse (B); a, b (N).
// Every row is handled by one thread, so results do not depend on the thread count.
#include "loss.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "parallel.hpp"

namespace gd {
namespace GD_NS {
namespace {

template <class T>
T row_max(const T* x, int64_t C) {
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t c = 0; c < C; ++c) {
        if (x[c] > m || std::isnan(x[c])) m = x[c];
        if (std::isnan(m)) break;
    }
    return m;
}

// log sum_c exp(x_c - m) for m = row_max(x): the logsumexp is m + this, max-subtracted so it
// never overflows. Callers subtract m from x before adding this term, so that log-probabilities
// and losses much smaller than |m| (logits ~1e4 in float32) are not rounded to a multiple of
// ulp(m). A row of -inf or with a NaN gives 0, so m alone decides the result (NaN); a row with
// +inf gives NaN, as NumPy's and PyTorch's max-shifted formula do (exp(inf - inf) is NaN).
template <class T>
T row_log_sum_exp_shifted(const T* x, int64_t C, T m) {
    if (!std::isfinite(m)) return m > T(0) ? std::numeric_limits<T>::quiet_NaN() : T(0);
    T s = 0;
    for (int64_t c = 0; c < C; ++c) s += std::exp(x[c] - m);
    return std::log(s);
}

constexpr int64_t kRows = 8;  // rows per parallel chunk

// Work estimate per element of a kernel that takes an exp or a log of it, in the flop-like units
// of kParallelWork (calibrated on memory-bound elementwise passes, ~8 per element): a scalar exp
// costs about as much as 50 such elements. The batch-256 MLP's cross-entropy (256 x 10 logits)
// then runs on both threads of a 2-thread step.
constexpr int64_t kExpWork = 400;

}  // namespace

// x (B, C) -> y (B, C) = exp(x - lse(x)) row-wise
template <class T>
void softmax_forward(T* y, const T* x, int64_t B, int64_t C) {
    parallel_chunks(B, kRows, kExpWork * B * C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* xr = x + r * C;
            T* yr = y + r * C;
            const T m = row_max(xr, C);
            T s = 0;
            for (int64_t c = 0; c < C; ++c) {
                yr[c] = std::exp(xr[c] - m);
                s += yr[c];
            }
            const T inv = T(1) / s;
            for (int64_t c = 0; c < C; ++c) yr[c] *= inv;
        }
    });
}

// dx = y * (dy - sum_c dy_c y_c): the softmax Jacobian diag(y) - y y^T applied to dy
template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t B, int64_t C) {
    parallel_chunks(B, kRows, 4 * B * C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* dyr = dy + r * C;
            const T* yr = y + r * C;
            T dot = 0;
            for (int64_t c = 0; c < C; ++c) dot += dyr[c] * yr[c];
            for (int64_t c = 0; c < C; ++c) dx[r * C + c] = yr[c] * (dyr[c] - dot);
        }
    });
}

// x (B, C) -> y = (x - max) - log sum exp(x - max) row-wise
template <class T>
void log_softmax_forward(T* y, const T* x, int64_t B, int64_t C) {
    parallel_chunks(B, kRows, kExpWork * B * C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* xr = x + r * C;
            const T m = row_max(xr, C);
            const T ls = row_log_sum_exp_shifted(xr, C, m);
            for (int64_t c = 0; c < C; ++c) y[r * C + c] = (xr[c] - m) - ls;
        }
    });
}

// dx = dy - softmax(x) * sum_c dy_c, with softmax(x) = exp(y) from the saved output
template <class T>
void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t B, int64_t C) {
    parallel_chunks(B, kRows, kExpWork * B * C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* dyr = dy + r * C;
            T s = 0;
            for (int64_t c = 0; c < C; ++c) s += dyr[c];
            for (int64_t c = 0; c < C; ++c) dx[r * C + c] = dyr[c] - std::exp(y[r * C + c]) * s;
        }
    });
}

// logits (B, C), target (B) -> loss (B) = lse(logits_b) - logits_b[target_b], lse (B).
// Rows whose target equals ignore_index get loss 0. Targets are validated by the binding.
template <class T>
void cross_entropy_forward(T* loss, T* lse, const T* logits, const int64_t* target, int64_t B,
                           int64_t C, int64_t ignore_index) {
    parallel_chunks(B, kRows, kExpWork * B * C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* xr = logits + r * C;
            const T m = row_max(xr, C);
            const T ls = row_log_sum_exp_shifted(xr, C, m);
            lse[r] = m + ls;
            loss[r] = target[r] == ignore_index ? T(0) : (m - xr[target[r]]) + ls;
        }
    });
}

// dlogits_bc = dloss_b * (softmax(logits_b)_c - [c == target_b]), one pass over the logits.
// The probabilities come from the max-shifted logits, exp(x_c - m) / sum_k exp(x_k - m), as in
// PyTorch, not from exp(x_c - lse) with the saved lse: lse = m + log(sum) is rounded to T, and
// an error of ulp(lse) in the exponent is a relative error of ulp(lse) in every probability
// (2e-4 at logits of 1e4 in float32, 6e-3 at 1e6), so the row no longer summed to 0. The lse
// argument is kept (the binding and recorded programs pass it) but its values are not read.
template <class T>
void cross_entropy_backward(T* dlogits, const T* dloss, int64_t dloss_stride, const T* logits,
                            const T* /*lse*/, const int64_t* target, int64_t B, int64_t C,
                            int64_t ignore_index) {
    parallel_chunks(B, kRows, kExpWork * B * C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            T* dr = dlogits + r * C;
            const T* xr = logits + r * C;
            if (target[r] == ignore_index) {
                for (int64_t c = 0; c < C; ++c) dr[c] = T(0);
                continue;
            }
            const T g = dloss[r * dloss_stride];
            const T m = row_max(xr, C);
            T s = 0;
            for (int64_t c = 0; c < C; ++c) {
                dr[c] = std::exp(xr[c] - m);
                s += dr[c];
            }
            // g / s once per row; a row with +inf or NaN gives NaN as exp(inf - inf) does
            const T gs = g / s;
            for (int64_t c = 0; c < C; ++c) dr[c] *= gs;
            dr[target[r]] -= g;
        }
    });
}

// a, b (N) -> out[0] = sum (a - b)^2, fixed chunks added in order. Inside a chunk, element i
// goes to lane i mod kLanes (one running sum per lane, the lanes then added in order), so the
// result depends on N alone, not on the ISA; GCC had left the `omp simd` reduction scalar, one
// dependent add per element.
template <class T>
void mse_forward(T* out, const T* a, const T* b, int64_t N) {
    constexpr int64_t kChunk = 1 << 14;
    constexpr int kLanes = 32;
    const int64_t nchunks = (N + kChunk - 1) / kChunk;
    std::vector<T> partial(static_cast<size_t>(nchunks > 0 ? nchunks : 1), T(0));
    parallel_chunks(N, kChunk, 3 * N, [&](int64_t i0, int64_t i1) {
        T lane[kLanes] = {};
        int64_t i = i0;
        for (; i + kLanes <= i1; i += kLanes)
            for (int j = 0; j < kLanes; ++j) {
                const T d = a[i + j] - b[i + j];
                lane[j] += d * d;
            }
        for (int j = 0; i < i1; ++i, ++j) {
            const T d = a[i] - b[i];
            lane[j] += d * d;
        }
        T acc = 0;
        for (int j = 0; j < kLanes; ++j) acc += lane[j];
        partial[i0 / kChunk] = acc;
    });
    T acc = 0;
    for (int64_t c = 0; c < nchunks; ++c) acc += partial[c];
    out[0] = acc;
}

// da (N) = scale * (a - b); for the mean, scale = 2 * dloss / N
template <class T>
void mse_backward(T* da, const T* a, const T* b, int64_t N, T scale) {
    parallel_chunks(N, 1 << 14, 2 * N, [&](int64_t i0, int64_t i1) {
#pragma omp simd
        for (int64_t i = i0; i < i1; ++i) da[i] = scale * (a[i] - b[i]);
    });
}

#define GD_INSTANTIATE(T)                                                                          \
    template void softmax_forward<T>(T*, const T*, int64_t, int64_t);                              \
    template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);                   \
    template void log_softmax_forward<T>(T*, const T*, int64_t, int64_t);                          \
    template void log_softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);               \
    template void cross_entropy_forward<T>(T*, T*, const T*, const int64_t*, int64_t, int64_t,     \
                                           int64_t);                                               \
    template void cross_entropy_backward<T>(T*, const T*, int64_t, const T*, const T*,             \
                                            const int64_t*, int64_t, int64_t, int64_t);            \
    template void mse_forward<T>(T*, const T*, const T*, int64_t);                                 \
    template void mse_backward<T>(T*, const T*, const T*, int64_t, T);
GD_INSTANTIATE(float)
GD_INSTANTIATE(double)
#undef GD_INSTANTIATE

}  // namespace GD_NS
}  // namespace gd

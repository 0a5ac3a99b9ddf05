// Sums. Shape legend: x (outer, R, inner) with R the reduced axis; N a flat length.
// Determinism: each output element is summed by one thread in a fixed order; sum_all adds
// fixed-size chunk partials in chunk order, independent of the thread count.
#include "reduce.hpp"

#include <vector>

#include "parallel.hpp"

namespace gd {
namespace GD_NS {

namespace {
constexpr int64_t kSumChunk = 1 << 14;  // elements per partial in sum_all

// Sum of a contiguous run, vectorised with a fixed lane order.
template <class T>
T sum_contiguous(const T* x, int64_t n) {
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; ++i) acc += x[i];
    return acc;
}
}  // namespace

// x (outer, R, inner) -> y (outer, inner)
template <class T>
void sum_axis(T* y, const T* x, int64_t outer, int64_t R, int64_t inner) {
    if (inner == 1) {
        parallel_chunks(outer, 16, outer * R, [&](int64_t o0, int64_t o1) {
            for (int64_t o = o0; o < o1; ++o) y[o] = sum_contiguous(x + o * R, R);
        });
        return;
    }
    // Columns: accumulate rows in order, vectorised across the contiguous inner axis.
    if (inner < 256 && outer > 1) {
        parallel_chunks(outer, 8, outer * R * inner, [&](int64_t o0, int64_t o1) {
            for (int64_t o = o0; o < o1; ++o) {
                T* GD_RESTRICT yo = y + o * inner;
                for (int64_t i = 0; i < inner; ++i) yo[i] = T(0);
                for (int64_t r = 0; r < R; ++r) {
                    const T* GD_RESTRICT xr = x + (o * R + r) * inner;
#pragma omp simd
                    for (int64_t i = 0; i < inner; ++i) yo[i] += xr[i];
                }
            }
        });
        return;
    }
    const int64_t chunk = 256;
    for (int64_t o = 0; o < outer; ++o) {
        const T* xo = x + o * R * inner;
        T* yo = y + o * inner;
        parallel_chunks(inner, chunk, R * inner, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) yo[i] = T(0);
            for (int64_t r = 0; r < R; ++r) {
                const T* GD_RESTRICT xr = xo + r * inner;
#pragma omp simd
                for (int64_t i = i0; i < i1; ++i) yo[i] += xr[i];
            }
        });
    }
}

// x (N) -> out[0]
template <class T>
void sum_all(T* out, const T* x, int64_t N) {
    const int64_t nchunks = (N + kSumChunk - 1) / kSumChunk;
    if (nchunks <= 1) {
        out[0] = sum_contiguous(x, N);
        return;
    }
    std::vector<T> partial(static_cast<size_t>(nchunks));
    parallel_chunks(nchunks, 1, N, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            const int64_t begin = c * kSumChunk;
            const int64_t len = (begin + kSumChunk <= N) ? kSumChunk : N - begin;
            partial[c] = sum_contiguous(x + begin, len);
        }
    });
    T acc = 0;
    for (int64_t c = 0; c < nchunks; ++c) acc += partial[c];
    out[0] = acc;
}

template void sum_axis<float>(float*, const float*, int64_t, int64_t, int64_t);
template void sum_axis<double>(double*, const double*, int64_t, int64_t, int64_t);
template void sum_all<float>(float*, const float*, int64_t);
template void sum_all<double>(double*, const double*, int64_t);

}  // namespace GD_NS
}  // namespace gd

// Averaging the ranks' buffers for DistributedDataParallel's shared-memory reduction: one pass
// that reads every rank's buffer once and writes the average (what NumPy did in three: add,
// add, scale). Blocks of kBlock elements keep the running sum in L1 between the loops, each of
// which vectorizes. Each element is computed by one thread from its own inputs only, so the
// result does not depend on the thread count.
#include "collective.hpp"

#include <algorithm>

#include "parallel.hpp"

namespace gd {
namespace GD_NS {
namespace {

constexpr int64_t kBlock = 2048;

bool power_of_two(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

// y[0..n) = x0 + x1 (or x0 when x1 is null)
template <class T>
void first_sum(T* GD_RESTRICT y, const T* GD_RESTRICT x0, const T* GD_RESTRICT x1, int64_t n) {
    if (x1 == nullptr) {
        for (int64_t i = 0; i < n; ++i) y[i] = x0[i];
        return;
    }
    for (int64_t i = 0; i < n; ++i) y[i] = x0[i] + x1[i];
}

template <class T>
void add_into(T* GD_RESTRICT y, const T* GD_RESTRICT x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] + x[i];
}

template <class T>
void scale_into(T* GD_RESTRICT y, T* GD_RESTRICT y2, int64_t n, T c, bool divide) {
    if (divide) {
        for (int64_t i = 0; i < n; ++i) y[i] = y[i] / c;
    } else {
        for (int64_t i = 0; i < n; ++i) y[i] = y[i] * c;
    }
    if (y2 != nullptr)
        for (int64_t i = 0; i < n; ++i) y2[i] = y[i];
}

}  // namespace

template <class T>
void average_ranks(T* y, T* y2, const T* const* x, int64_t count, int64_t N) {
    const bool divide = !power_of_two(count);
    const T c = divide ? static_cast<T>(count) : static_cast<T>(1.0 / static_cast<double>(count));
    const bool one = count == 1;
    parallel_chunks(N, kBlock, N * (count + 1), [&](int64_t b, int64_t e) {
        const int64_t n = e - b;
        first_sum(y + b, x[0] + b, one ? nullptr : x[1] + b, n);
        for (int64_t k = 2; k < count; ++k) add_into(y + b, x[k] + b, n);
        scale_into(y + b, y2 == nullptr ? nullptr : y2 + b, n, c, divide);
    });
}

#define GD_COLLECTIVE_INSTANTIATE(T)                                                  \
    template void average_ranks<T>(T*, T*, const T* const*, int64_t, int64_t);
GD_COLLECTIVE_INSTANTIATE(float)
GD_COLLECTIVE_INSTANTIATE(double)
#undef GD_COLLECTIVE_INSTANTIATE

}  // namespace GD_NS
}  // namespace gd

// Linear layer: the lecture's weighted sum s[i] = sum_j w[i, j] z[j] (+ bias), batched.
// Shape legend: x (B, IN), W (OUT, IN), b (OUT), y and dy (B, OUT).
#include "linear.hpp"

#include "gemm.hpp"
#include "parallel.hpp"
#include "reduce.hpp"

namespace gd {
namespace GD_NS {

namespace {

// y (B, OUT) = b in every row (the GEMM then adds x W^T with beta = 1); beta for that GEMM
template <class T>
T fill_bias(T* y, const T* b, int64_t B, int64_t OUT) {
    if (b == nullptr) return T(0);
    for (int64_t r = 0; r < B; ++r)
        for (int64_t o = 0; o < OUT; ++o) y[r * OUT + o] = b[o];
    return T(1);
}

}  // namespace

// x (B, IN), W (OUT, IN), b (OUT) or null -> y (B, OUT)
template <class T>
void linear_forward(T* y, const T* x, const T* W, const T* b, int64_t B, int64_t IN, int64_t OUT) {
    // y = x W^T (+ y when a bias was broadcast into it)
    const T beta = fill_bias(y, b, B, OUT);
    gemm<T>(false, true, B, OUT, IN, T(1), x, IN, W, IN, beta, y, OUT);
}

template <class T>
void linear_forward_relu(T* y, const T* x, const T* W, const T* b, int64_t B, int64_t IN,
                         int64_t OUT) {
    const T beta = fill_bias(y, b, B, OUT);
    gemm_relu<T>(false, true, B, OUT, IN, x, IN, W, IN, beta, y, OUT);
}

// Backward of y = x W^T + b:
//   dx = dy W        (B, OUT) (OUT, IN)
//   dW = dy^T x      (OUT, B) (B, IN)   -- for B = 1 an outer product (K = 1)
//   db = sum_b dy    (OUT)
// On 2 threads, dx and dW (the same flops: 2 B IN OUT each) are computed at the same time, one
// per thread, when both are asked for and the pair is worth a parallel region; each product's
// bits do not depend on the thread that computes it.
template <class T>
void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t B,
                     int64_t IN, int64_t OUT) {
    const auto do_dx = [&] {
        if (dx != nullptr) gemm<T>(false, false, B, IN, OUT, T(1), dy, OUT, W, IN, T(0), dx, IN);
    };
    const auto do_dw = [&] {
        if (dW != nullptr) gemm<T>(true, false, OUT, IN, B, T(1), dy, OUT, x, IN, T(0), dW, IN);
        if (db != nullptr) sum_axis<T>(db, dy, 1, B, OUT);
    };
    if (dx != nullptr && dW != nullptr && 2 * B * IN * OUT >= kParallelWork && B > 1) {
        parallel_pair(do_dx, do_dw);
        return;
    }
    do_dx();
    do_dw();
}

template <class T>
void linear_forward_naive(T* y, const T* x, const T* W, const T* b, int64_t B, int64_t IN,
                          int64_t OUT) {
    for (int64_t r = 0; r < B; ++r)
        for (int64_t o = 0; o < OUT; ++o) {
            T acc = b != nullptr ? b[o] : T(0);
            for (int64_t i = 0; i < IN; ++i) acc += x[r * IN + i] * W[o * IN + i];
            y[r * OUT + o] = acc;
        }
}

#define GD_INSTANTIATE(T)                                                                        \
    template void linear_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t); \
    template void linear_forward_relu<T>(T*, const T*, const T*, const T*, int64_t, int64_t,      \
                                         int64_t);                                                \
    template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t,  \
                                     int64_t);                                                    \
    template void linear_forward_naive<T>(T*, const T*, const T*, const T*, int64_t, int64_t,     \
                                          int64_t);
GD_INSTANTIATE(float)
GD_INSTANTIATE(double)
#undef GD_INSTANTIATE

}  // namespace GD_NS
}  // namespace gd

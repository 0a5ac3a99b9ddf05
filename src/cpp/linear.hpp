// Linear layer kernels. Shape legend: x (B, IN), W (OUT, IN) (PyTorch layout), b (OUT), y (B, OUT).
#pragma once
#include "common.hpp"

namespace gd {
namespace GD_NS {

// x (B, IN), W (OUT, IN), b (OUT) or null -> y (B, OUT)
template <class T>
void linear_forward(T* y, const T* x, const T* W, const T* b, int64_t B, int64_t IN, int64_t OUT);

// linear_forward, then y = relu(y): what the two kernels write one after the other (gd.compile
// fuses them when nothing else reads the pre-activation)
template <class T>
void linear_forward_relu(T* y, const T* x, const T* W, const T* b, int64_t B, int64_t IN,
                         int64_t OUT);

// dy (B, OUT) -> dx (B, IN), dW (OUT, IN), db (OUT); null outputs are not computed
template <class T>
void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t B,
                     int64_t IN, int64_t OUT);

// Readable reference for tests and for whoever replaces the fast path.
template <class T>
void linear_forward_naive(T* y, const T* x, const T* W, const T* b, int64_t B, int64_t IN,
                          int64_t OUT);

}  // namespace GD_NS
}  // namespace gd

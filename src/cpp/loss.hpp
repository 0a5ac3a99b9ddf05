// Softmax family and losses. Shape legend: x, y, logits (B, C) row-major; target (B) int64.
#pragma once
#include "common.hpp"

namespace gd {
namespace GD_NS {

template <class T> void softmax_forward(T* y, const T* x, int64_t B, int64_t C);
template <class T> void softmax_backward(T* dx, const T* dy, const T* y, int64_t B, int64_t C);
template <class T> void log_softmax_forward(T* y, const T* x, int64_t B, int64_t C);
template <class T> void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t B, int64_t C);
template <class T>
void cross_entropy_forward(T* loss, T* lse, const T* logits, const int64_t* target, int64_t B,
                           int64_t C, int64_t ignore_index);
template <class T>
void cross_entropy_backward(T* dlogits, const T* dloss, int64_t dloss_stride, const T* logits,
                            const T* lse, const int64_t* target, int64_t B, int64_t C,
                            int64_t ignore_index);
template <class T> void mse_forward(T* out, const T* a, const T* b, int64_t N);
template <class T> void mse_backward(T* da, const T* a, const T* b, int64_t N, T scale);

}  // namespace GD_NS
}  // namespace gd

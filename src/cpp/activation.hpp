// Elementwise nonlinearities. Shape legend: x, y, dx, dy (N), flat and contiguous.
#pragma once
#include "common.hpp"
#include "kernels.hpp"

namespace gd {
namespace GD_NS {

// x (N) -> y (N)
template <class T>
void activation_forward(Act op, T* y, const T* x, int64_t N, T alpha);

// dy (N) and the saved x or y (N) -> dx (N)
template <class T>
void activation_backward(Act op, T* dx, const T* dy, const T* x, const T* y, int64_t N, T alpha);

}  // namespace GD_NS
}  // namespace gd

// Reductions with fixed partitions: bitwise identical for any thread count.
#pragma once
#include "common.hpp"

namespace gd {
namespace GD_NS {

// x (outer, R, inner) -> y (outer, inner) = sum over R
template <class T>
void sum_axis(T* y, const T* x, int64_t outer, int64_t R, int64_t inner);

// x (N) -> out[0] = sum of all elements
template <class T>
void sum_all(T* out, const T* x, int64_t N);

}  // namespace GD_NS
}  // namespace gd

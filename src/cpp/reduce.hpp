// Reductions with fixed partitions: bitwise identical for any thread count.
#pragma once
#include "common.hpp"
#include "reduce_ops.hpp"

namespace gd {
namespace GD_NS {

// x (outer, R, inner) -> y (outer, inner) = sum over R
template <class T>
void sum_axis(T* y, const T* x, int64_t outer, int64_t R, int64_t inner);

// x (N) -> out[0] = sum of all elements
template <class T>
void sum_all(T* out, const T* x, int64_t N);

// x (dims `shape`, element `strides`, read in place) -> y and/or idx over the dims not in the
// bit mask `axes` (C-contiguous); op and param as in reduce_ops.hpp. A null output is skipped.
template <class T>
void reduce_axes(Red op, T* y, int64_t* idx, const T* x, const int64_t* shape,
                 const int64_t* strides, int64_t nd, uint64_t axes, double param);

}  // namespace GD_NS
}  // namespace gd

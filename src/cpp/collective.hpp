// The arithmetic of graddesc.distributed's reductions on this side of the boundary (the bytes
// themselves move through MPI or MPI shared-memory windows, in Python).
// Shape legend: N elements; x[k] (N) is rank k's buffer, count ranks.
#pragma once
#include "common.hpp"
#include "kernels.hpp"

namespace gd {
namespace GD_NS {

// x[0..count) (N each) -> y (N) = (((x[0] + x[1]) + x[2]) + ... + x[count-1]) / count, added in
// rank order (the same bits on every rank that calls it with the same inputs); the division is
// a multiplication by 1 / count when count is a power of two (the same bits: both round the
// same real number). y2 (N), when not null, receives the same values (one read of the inputs
// for two destinations). y and y2 must not overlap any x[k] or each other. count >= 1.
template <class T>
void average_ranks(T* y, T* y2, const T* const* x, int64_t count, int64_t N);

}  // namespace GD_NS
}  // namespace gd

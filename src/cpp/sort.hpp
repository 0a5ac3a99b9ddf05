// Sorting, selection and scans along one dimension (gd.sort / argsort / topk / kthvalue,
// cumsum / cumprod and their backward passes). Plain C++ on C-contiguous arrays viewed as
// (outer, n, inner), n the size of the dimension; compiled once (not per instruction set): they
// compare and add in a fixed order, so their bits are the same on every ISA and thread count.
#pragma once
#include <cstdint>

namespace gd {

// Which of the k first entries of the sorted order a selection writes, and in what order.
enum class SortOrder : int64_t {
    sorted = 0,    // the first k of the sorted order, in that order (sort: k = n; topk)
    by_index = 1,  // the same k entries in the order of their position along dim (topk,
                   // sorted=False)
    kth = 2,       // only the k-th (1-based) of the sorted order (kthvalue): m = 1
};

// x (outer, n, inner) -> values, indices (outer, m, inner), m = k (1 for kth).
// The sorted order is ascending (descending when `descending`), NaN the largest value (last
// ascending, first descending), -0.0 equal to +0.0, and stable: equal values keep their
// positions. T is float, double, int32_t or int64_t; 0 <= k <= n (1 <= k for kth).
template <class T>
void sort_select(T* values, int64_t* indices, const T* x, int64_t outer, int64_t n, int64_t inner,
                 int64_t k, bool descending, SortOrder order);

// x (outer, n, inner) -> y (outer, n, inner): the running sum (prod=false) or product along the
// dimension, from its start, or from its end (reverse: y_j = x_j + ... + x_{n-1}). Each y is
// accumulated one element after the other in that order. T is float, double or int64_t (which
// wraps around, as NumPy and PyTorch do).
template <class T>
void scan(T* y, const T* x, int64_t outer, int64_t n, int64_t inner, bool prod, bool reverse);

// g, x, y = cumprod(x) (outer, n, inner) -> dx (outer, n, inner): the gradient of sum(g * y)
// with respect to x, exact with zeros in x (see sort.cpp).
template <class T>
void cumprod_backward(T* dx, const T* g, const T* x, const T* y, int64_t outer, int64_t n,
                      int64_t inner);

}  // namespace gd

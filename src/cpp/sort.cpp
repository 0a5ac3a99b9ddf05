// Sorting, selection and scans along one dimension. Shape legend: x viewed as (outer, n, inner)
// around the dimension; a "line" is the n elements x[o, :, i] (stride inner). Lines are
// independent, so OpenMP takes whole lines (or, for scans, whole blocks of lines) in fixed
// chunks: no result depends on the thread count.
#include "sort.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "parallel.hpp"

namespace gd {
namespace {

// ---- sort keys ------------------------------------------------------------------------------
// Each value becomes an unsigned key whose integer order is the order we promise: floats by
// their bits with the sign folded (negatives reversed), -0.0 as +0.0, every NaN the largest key;
// integers with the sign bit flipped. Sorting (key, position) pairs lexicographically gives the
// stable order with any algorithm (positions are distinct, so no two pairs are equal).
inline uint64_t key_of(float v) {
    if (std::isnan(v)) return UINT64_MAX;
    if (v == 0.0f) v = 0.0f;
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    return (u & 0x80000000u) ? uint64_t(~u) : uint64_t(u | 0x80000000u);
}

inline uint64_t key_of(double v) {
    if (std::isnan(v)) return UINT64_MAX;
    if (v == 0.0) v = 0.0;
    uint64_t u;
    std::memcpy(&u, &v, sizeof u);
    // (+inf is 0xFFF0..., below UINT64_MAX: NaN stays the largest)
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

inline uint64_t key_of(int32_t v) { return uint64_t(uint32_t(v) ^ 0x80000000u); }
inline uint64_t key_of(int64_t v) { return uint64_t(v) ^ 0x8000000000000000ull; }

struct Entry {
    uint64_t key;
    int64_t pos;
};

inline bool before(const Entry& a, const Entry& b) {
    return a.key < b.key || (a.key == b.key && a.pos < b.pos);
}

inline bool by_pos(const Entry& a, const Entry& b) { return a.pos < b.pos; }

// Operations per line, roughly, for the parallel threshold.
int64_t sort_work(int64_t n) {
    int64_t lg = 1;
    while ((int64_t(1) << lg) < n) ++lg;
    return n * lg * 4;
}

}  // namespace

// Per line: the (key, position) pairs, then a full sort (k = n), or a selection of the k first
// pairs (nth_element) sorted by pair or by position, or only the k-th pair.
template <class T>
void sort_select(T* values, int64_t* indices, const T* x, int64_t outer, int64_t n, int64_t inner,
                 int64_t k, bool descending, SortOrder order) {
    const int64_t lines = outer * inner;
    const int64_t m = order == SortOrder::kth ? 1 : k;
    if (lines == 0 || m == 0) return;
    if (n == 1) {  // (m = 1 too: a copy, same layout; no per-line scratch)
        for (int64_t l = 0; l < lines; ++l) {
            values[l] = x[l];
            indices[l] = 0;
        }
        return;
    }
    const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, sort_work(n)));
    parallel_chunks(lines, grain, lines * sort_work(n), [&](int64_t b, int64_t e) {
        std::vector<Entry> buf(static_cast<size_t>(n));
        for (int64_t l = b; l < e; ++l) {
            const int64_t o = l / inner, i = l % inner;
            const T* xl = x + o * n * inner + i;
            for (int64_t j = 0; j < n; ++j) {
                const uint64_t key = key_of(xl[j * inner]);
                buf[static_cast<size_t>(j)] = {descending ? ~key : key, j};
            }
            Entry* first = buf.data();
            if (order == SortOrder::kth) {
                std::nth_element(first, first + (k - 1), first + n, before);
                first += k - 1;
            } else if (k == n) {
                if (order == SortOrder::sorted) std::sort(first, first + n, before);
            } else {
                std::nth_element(first, first + k, first + n, before);
                if (order == SortOrder::sorted) std::sort(first, first + k, before);
                else std::sort(first, first + k, by_pos);
            }
            T* vl = values + o * m * inner + i;
            int64_t* il = indices + o * m * inner + i;
            for (int64_t j = 0; j < m; ++j) {
                const int64_t p = first[j].pos;
                vl[j * inner] = xl[p * inner];
                il[j * inner] = p;
            }
        }
    });
}

namespace {

// Integers wrap around (computed in uint64_t: no signed overflow); floats round as written.
template <class T>
inline T op_add(T a, T b) {
    if constexpr (std::is_integral<T>::value)
        return static_cast<T>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
    else
        return a + b;
}

template <class T>
inline T op_mul(T a, T b) {
    if constexpr (std::is_integral<T>::value)
        return static_cast<T>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
    else
        return a * b;
}

// y[j] = y[j -/+ 1] op x[j] over the columns [c0, c1) of one (n, inner) block, in the order of
// j: each column's chain is sequential; the loop over columns is the vectorizable one.
template <class T, bool Prod>
void scan_block(T* y, const T* x, int64_t n, int64_t inner, int64_t c0, int64_t c1, bool reverse) {
    const int64_t j0 = reverse ? n - 1 : 0, step = reverse ? -1 : 1;
    for (int64_t c = c0; c < c1; ++c) y[j0 * inner + c] = x[j0 * inner + c];
    for (int64_t t = 1; t < n; ++t) {
        const int64_t j = j0 + t * step;
        T* yj = y + j * inner;
        const T* yp = y + (j - step) * inner;
        const T* xj = x + j * inner;
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) yj[c] = Prod ? op_mul(yp[c], xj[c]) : op_add(yp[c], xj[c]);
    }
}

}  // namespace

// Work units: (o, column block) pairs, the columns cut into blocks of kCols, so a long dim-0 scan
// of a wide array and many short last-dim scans both split among threads.
template <class T>
void scan(T* y, const T* x, int64_t outer, int64_t n, int64_t inner, bool prod, bool reverse) {
    if (outer == 0 || n == 0 || inner == 0) return;
    constexpr int64_t kCols = 256;
    const int64_t blocks = (inner + kCols - 1) / kCols;
    const int64_t units = outer * blocks;
    const int64_t per_unit = n * std::min(inner, kCols);
    const int64_t grain = std::max<int64_t>(1, 16384 / per_unit);
    parallel_chunks(units, grain, outer * n * inner * 8, [&](int64_t b, int64_t e) {
        for (int64_t u = b; u < e; ++u) {
            const int64_t o = u / blocks, c0 = (u % blocks) * kCols;
            const int64_t c1 = std::min(inner, c0 + kCols);
            const T* xo = x + o * n * inner;
            T* yo = y + o * n * inner;
            if (prod) scan_block<T, true>(yo, xo, n, inner, c0, c1, reverse);
            else scan_block<T, false>(yo, xo, n, inner, c0, c1, reverse);
        }
    });
}

// d/dx_j of sum_i g_i y_i with y_i = x_0 ... x_i, per line, z the first zero of x (n if none):
//   j < z:  sum_{i >= j} g_i y_i / x_j = (sum_{j <= i < z} g_i y_i) / x_j   (y_i = 0 for i >= z;
//           x_j != 0), a reversed running sum from z - 1 down to 0;
//   j = z:  sum_{i >= z} g_i prod_{m <= i, m != z} x_m = sum_i g_i p_i with p_z = y_{z-1}
//           (1 for z = 0) and p_i = p_{i-1} x_i, a forward running sum;
//   j > z:  0 (every such product keeps the factor x_z = 0).
// (PyTorch's formula; without zeros it is the reversed cumsum of g * y divided by x.)
template <class T>
void cumprod_backward(T* dx, const T* g, const T* x, const T* y, int64_t outer, int64_t n,
                      int64_t inner) {
    const int64_t lines = outer * inner;
    if (lines == 0 || n == 0) return;
    const int64_t grain = std::max<int64_t>(1, 16384 / n);
    parallel_chunks(lines, grain, lines * n * 8, [&](int64_t b, int64_t e) {
        for (int64_t l = b; l < e; ++l) {
            const int64_t base = (l / inner) * n * inner + l % inner;
            const T* gl = g + base;
            const T* xl = x + base;
            const T* yl = y + base;
            T* dl = dx + base;
            int64_t z = n;
            for (int64_t j = 0; j < n; ++j)
                if (xl[j * inner] == T(0)) {
                    z = j;
                    break;
                }
            T acc = T(0);
            for (int64_t j = z - 1; j >= 0; --j) {
                acc = acc + gl[j * inner] * yl[j * inner];
                dl[j * inner] = acc / xl[j * inner];
            }
            if (z == n) continue;
            T p = z > 0 ? yl[(z - 1) * inner] : T(1);
            T s = gl[z * inner] * p;
            for (int64_t i = z + 1; i < n; ++i) {
                p = p * xl[i * inner];
                s = s + gl[i * inner] * p;
            }
            dl[z * inner] = s;
            for (int64_t j = z + 1; j < n; ++j) dl[j * inner] = T(0);
        }
    });
}

#define GD_SORT_INST(T)                                                                        \
    template void sort_select<T>(T*, int64_t*, const T*, int64_t, int64_t, int64_t, int64_t, bool, \
                                 SortOrder);
GD_SORT_INST(float)
GD_SORT_INST(double)
GD_SORT_INST(int32_t)
GD_SORT_INST(int64_t)
#undef GD_SORT_INST
template void scan<float>(float*, const float*, int64_t, int64_t, int64_t, bool, bool);
template void scan<double>(double*, const double*, int64_t, int64_t, int64_t, bool, bool);
template void scan<int64_t>(int64_t*, const int64_t*, int64_t, int64_t, int64_t, bool, bool);
template void cumprod_backward<float>(float*, const float*, const float*, const float*, int64_t,
                                      int64_t, int64_t);
template void cumprod_backward<double>(double*, const double*, const double*, const double*,
                                       int64_t, int64_t, int64_t);

}  // namespace gd

// Reductions. sum_axis / sum_all: x (outer, R, inner) with R the reduced axis; N a flat length.
// reduce_axes (below): every reduction of reduce_ops.hpp over any set of axes, any strides.
// Determinism: each output element is reduced in an order fixed by the shape (and strides), never
// by the thread count; sum_all adds fixed-size chunk partials in chunk order.
#include "reduce.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "parallel.hpp"

namespace gd {
namespace GD_NS {

namespace {
constexpr int64_t kSumChunk = 1 << 14;  // elements per partial in sum_all

// Sum of a contiguous run, vectorised with a fixed lane order.
template <class T>
T sum_contiguous(const T* x, int64_t n) {
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; ++i) acc += x[i];
    return acc;
}
}  // namespace

// x (outer, R, inner) -> y (outer, inner)
template <class T>
void sum_axis(T* y, const T* x, int64_t outer, int64_t R, int64_t inner) {
    if (inner == 1) {
        parallel_chunks(outer, 16, outer * R, [&](int64_t o0, int64_t o1) {
            for (int64_t o = o0; o < o1; ++o) y[o] = sum_contiguous(x + o * R, R);
        });
        return;
    }
    // Columns: accumulate rows in order, vectorised across the contiguous inner axis.
    if (inner < 256 && outer > 1) {
        parallel_chunks(outer, 8, outer * R * inner, [&](int64_t o0, int64_t o1) {
            for (int64_t o = o0; o < o1; ++o) {
                T* GD_RESTRICT yo = y + o * inner;
                for (int64_t i = 0; i < inner; ++i) yo[i] = T(0);
                for (int64_t r = 0; r < R; ++r) {
                    const T* GD_RESTRICT xr = x + (o * R + r) * inner;
#pragma omp simd
                    for (int64_t i = 0; i < inner; ++i) yo[i] += xr[i];
                }
            }
        });
        return;
    }
    const int64_t chunk = 256;
    for (int64_t o = 0; o < outer; ++o) {
        const T* xo = x + o * R * inner;
        T* yo = y + o * inner;
        parallel_chunks(inner, chunk, R * inner, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) yo[i] = T(0);
            for (int64_t r = 0; r < R; ++r) {
                const T* GD_RESTRICT xr = xo + r * inner;
#pragma omp simd
                for (int64_t i = i0; i < i1; ++i) yo[i] += xr[i];
            }
        });
    }
}

// x (N) -> out[0]
template <class T>
void sum_all(T* out, const T* x, int64_t N) {
    const int64_t nchunks = (N + kSumChunk - 1) / kSumChunk;
    if (nchunks <= 1) {
        out[0] = sum_contiguous(x, N);
        return;
    }
    std::vector<T> partial(static_cast<size_t>(nchunks));
    parallel_chunks(nchunks, 1, N, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            const int64_t begin = c * kSumChunk;
            const int64_t len = (begin + kSumChunk <= N) ? kSumChunk : N - begin;
            partial[c] = sum_contiguous(x + begin, len);
        }
    });
    T acc = 0;
    for (int64_t c = 0; c < nchunks; ++c) acc += partial[c];
    out[0] = acc;
}


// ---- Reductions over any set of axes (reduce_axes) ----------------------------------------
// x: nd dims with sizes and element strides (any sign, read in place); `axes` bit d set: dim d
// is reduced. y (and idx): C-contiguous over the kept dims, keepdim is only a shape (binding).
// After dropping size-1 dims and merging dims whose strides chain, the kept dims give O outputs
// and the reduced dims R elements each, enumerated in C order over the reduced dims: idx is a
// position in that order (the flat index PyTorch gives).
//
// Order of operations, fixed by shape and strides alone (never by the thread count):
// - rows path (the innermost reduced dim is contiguous, or nothing else is): each output's
//   elements fall into blocks (runs of the innermost reduced dim cut at kBlock, or whole runs
//   packed up to kBlock); inside a block, element j of a run goes to lane j % L of L independent
//   accumulators (the vector dimension), the lanes are combined by a fixed halving tree, and the
//   block partials are combined in block order. Blocks may run on different threads.
// - columns path (the innermost kept dim is contiguous, the reduced one is not, e.g. a sum over
//   the rows of a matrix): a task owns up to kColChunk consecutive outputs, vectorised across
//   them, and a group of kRowGroup reduced positions; each output takes its elements in order,
//   kRowBlock at a time into a partial, adds the partials in order within the group, and the
//   group totals in group order.
// Two-pass ops (var/std: the mean, then squared deviations; logsumexp: the max, then exp of the
// shifted values) run the first pass into y and the second one reads it back.
namespace {

constexpr int64_t kBlock = 4096;    // reduced elements per partial on the rows path
constexpr int64_t kRowBlock = 256;  // reduced elements per partial on the columns path
constexpr int64_t kColChunk = 1024;  // outputs per task on the columns path (4 KiB of a float row)
constexpr int64_t kRowGroup = 4 * kRowBlock;  // reduced positions per task on the columns path

// Independent accumulators per run: 128 bytes, i.e. 2 AVX-512, 4 AVX2 or 8 SSE registers, so
// the adds of one lane do not wait for each other; every ISA computes the same lanes.
template <class T>
constexpr int kLanes = int(128 / sizeof(T));

struct Dim {
    int64_t n, s;
};

struct Geometry {
    std::vector<Dim> keep, red;  // merged, every size > 1, in C order
    int64_t O = 1, R = 1;
    int64_t n0 = 1, s0 = 0;  // the innermost reduced dim (1, 0 if none)
    int64_t nruns = 1;       // R / n0
};

Geometry make_geometry(const int64_t* shape, const int64_t* strides, int64_t nd, uint64_t axes) {
    Geometry g;
    for (int64_t d = 0; d < nd; ++d) {
        const bool r = (axes >> d) & 1u;
        (r ? g.R : g.O) *= shape[d];
        if (shape[d] == 1) continue;
        std::vector<Dim>& v = r ? g.red : g.keep;
        // merging keeps the C order of the group: offset i * s_prev + j * s = (i n + j) s
        if (!v.empty() && shape[d] != 0 && v.back().n != 0 && v.back().s == shape[d] * strides[d])
            v.back() = {v.back().n * shape[d], strides[d]};
        else
            v.push_back({shape[d], strides[d]});
    }
    if (!g.red.empty()) {
        g.n0 = g.red.back().n;
        g.s0 = g.red.back().s;
        g.nruns = g.n0 > 0 ? g.R / g.n0 : 0;
    }
    return g;
}

// Offset of position k (C order) in dims[0, count)
inline int64_t offset_of(const std::vector<Dim>& dims, size_t count, int64_t k) {
    int64_t off = 0;
    for (size_t d = count; d-- > 0;) {
        off += (k % dims[d].n) * dims[d].s;
        k /= dims[d].n;
    }
    return off;
}

// ---- policies: identity, add one element (x, the output's centre c, its position i), merge
// two partials (b may hold earlier or later positions), finish -------------------------------
template <class T>
struct SumP {
    using A = T;
    A id() const { return T(0); }
    void add(A& a, T x, T, int64_t) const { a += x; }
    void merge(A& a, const A& b) const { a += b; }
};
template <class T>
struct SqDevP {  // squared deviations from the centre (the mean)
    using A = T;
    A id() const { return T(0); }
    void add(A& a, T x, T c, int64_t) const {
        const T d = x - c;
        a += d * d;
    }
    void merge(A& a, const A& b) const { a += b; }
};
template <class T>
struct ExpP {  // sum of exp(x - c), c the max (or 0 when it is infinite)
    using A = T;
    A id() const { return T(0); }
    void add(A& a, T x, T c, int64_t) const { a += std::exp(x - c); }
    void merge(A& a, const A& b) const { a += b; }
};
template <class T>
struct AbsP {
    using A = T;
    A id() const { return T(0); }
    void add(A& a, T x, T, int64_t) const { a += std::fabs(x); }
    void merge(A& a, const A& b) const { a += b; }
};
template <class T>
struct SqP {
    using A = T;
    A id() const { return T(0); }
    void add(A& a, T x, T, int64_t) const { a += x * x; }
    void merge(A& a, const A& b) const { a += b; }
};
template <class T>
struct PowP {
    using A = T;
    T p;
    A id() const { return T(0); }
    void add(A& a, T x, T, int64_t) const { a += std::pow(std::fabs(x), p); }
    void merge(A& a, const A& b) const { a += b; }
};
template <class T>
struct NonzeroP {
    using A = T;
    A id() const { return T(0); }
    void add(A& a, T x, T, int64_t) const { a += x != T(0) ? T(1) : T(0); }
    void merge(A& a, const A& b) const { a += b; }
};
template <class T>
struct ProdP {
    using A = T;
    A id() const { return T(1); }
    void add(A& a, T x, T, int64_t) const { a *= x; }
    void merge(A& a, const A& b) const { a *= b; }
};
// The extreme value; a NaN wins and stays (x != x is true only for NaN)
template <class T, bool IsMax, bool Abs>
struct ExtremeP {
    using A = T;
    A id() const {
        return IsMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
    }
    void add(A& a, T x, T, int64_t) const {
        if (Abs) x = std::fabs(x);
        a = ((IsMax ? x > a : x < a) || x != x) ? x : a;
    }
    void merge(A& a, const A& b) const { a = ((IsMax ? b > a : b < a) || b != b) ? b : a; }
};
// The extreme value and its first position; the first NaN wins over everything
template <class T>
struct ValIdx {
    T v;
    int64_t i;  // -1: no element yet
};
template <class T, bool IsMax>
struct ArgP {
    using A = ValIdx<T>;
    A id() const { return {T(0), -1}; }
    void add(A& a, T x, T, int64_t i) const {
        // positions reach a lane in increasing order: strict comparisons keep the first
        const bool take = a.i < 0 || (IsMax ? x > a.v : x < a.v) || (x != x && a.v == a.v);
        if (take) a = {x, i};
    }
    void merge(A& a, const A& b) const {
        if (b.i < 0) return;
        if (a.i < 0) {
            a = b;
            return;
        }
        const bool an = a.v != a.v, bn = b.v != b.v;
        if (an || bn) {
            if (bn && (!an || b.i < a.i)) a = b;
            return;
        }
        if ((IsMax ? b.v > a.v : b.v < a.v) || (b.v == a.v && b.i < a.i)) a = b;
    }
};

// One run piece: n elements from x with stride s (positions i0, i0 + 1, ...) into the lanes
template <int L, class T, class P>
inline void run_lanes(const P& pol, typename P::A* lanes, const T* x, int64_t n, int64_t s, T c,
                      int64_t i0) {
    int64_t j = 0;
    if (L > 1 && s == 1) {
        for (; j + L <= n; j += L) {
            const T* GD_RESTRICT xj = x + j;
#pragma omp simd
            for (int l = 0; l < L; ++l) pol.add(lanes[l], xj[l], c, i0 + j + l);
        }
        for (int l = 0; j < n; ++j, ++l) pol.add(lanes[l], x[j], c, i0 + j);
        return;
    }
    for (; j < n; ++j) pol.add(lanes[L > 1 ? j % L : 0], x[j * s], c, i0 + j);
}

// Partial of block b of the output whose first element is at xo (rows path)
template <int L, class T, class P>
typename P::A block_partial(const P& pol, const Geometry& g, const T* xo, int64_t b, T c) {
    using A = typename P::A;
    A lanes[L];
    for (int l = 0; l < L; ++l) lanes[l] = pol.id();
    const size_t outer = g.red.empty() ? 0 : g.red.size() - 1;
    if (g.n0 >= kBlock) {
        const int64_t segs = (g.n0 + kBlock - 1) / kBlock;
        const int64_t run = b / segs, start = (b % segs) * kBlock;
        const int64_t len = std::min(kBlock, g.n0 - start);
        run_lanes<L>(pol, lanes, xo + offset_of(g.red, outer, run) + start * g.s0, len, g.s0, c,
                     run * g.n0 + start);
    } else {
        const int64_t per = kBlock / g.n0;
        const int64_t r1 = std::min(g.nruns, (b + 1) * per);
        for (int64_t run = b * per; run < r1; ++run)
            run_lanes<L>(pol, lanes, xo + offset_of(g.red, outer, run), g.n0, g.s0, c,
                         run * g.n0);
    }
    for (int w = L / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; ++l) pol.merge(lanes[l], lanes[l + w]);
    return lanes[0];
}

inline int64_t blocks_per_output(const Geometry& g) {
    if (g.n0 >= kBlock) return g.nruns * ((g.n0 + kBlock - 1) / kBlock);
    const int64_t per = kBlock / g.n0;
    return (g.nruns + per - 1) / per;
}

// emit(o, A) once per output o with its reduction under `pol`; center(o) is that output's centre
template <class T, class P, class C, class E>
void sweep_rows(const P& pol, const Geometry& g, const T* x, int64_t work, const C& center,
                const E& emit) {
    using A = typename P::A;
    const int64_t nb = blocks_per_output(g);
    const auto base = [&](int64_t o) { return x + offset_of(g.keep, g.keep.size(), o); };
    const auto partial = [&](int64_t o, int64_t b) {
        // short runs take one accumulator (lanes would stay empty), fixed by shape
        return g.n0 >= kLanes<T> ? block_partial<kLanes<T>>(pol, g, base(o), b, center(o))
                                 : block_partial<1>(pol, g, base(o), b, center(o));
    };
    if (nb == 1) {
        const int64_t per = std::max<int64_t>(1, kBlock / std::max<int64_t>(g.R, 1));
        parallel_chunks(g.O, per, work, [&](int64_t o0, int64_t o1) {
            for (int64_t o = o0; o < o1; ++o) emit(o, partial(o, 0));
        });
        return;
    }
    std::vector<A> part(static_cast<size_t>(g.O * nb));
    parallel_chunks(g.O * nb, 1, work, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) part[t] = partial(t / nb, t % nb);
    });
    for (int64_t o = 0; o < g.O; ++o) {
        A acc = part[o * nb];
        for (int64_t b = 1; b < nb; ++b) pol.merge(acc, part[o * nb + b]);
        emit(o, acc);
    }
}

// Reduced positions [r0, r1) of the columns [0, w) at xo into acc; off and ix: the position
// r0's offset and multi-index, advanced to r1. Wc > 0 is w known at compile time (a full chunk:
// the accumulators can live in registers).
template <int64_t Wc, class T, class P>
inline void column_rows(const P& pol, typename P::A* acc, const T* xo, const T* cen, int64_t w,
                        const Geometry& g, int64_t r0, int64_t r1, int64_t& off,
                        std::vector<int64_t>& ix) {
    const int64_t n = Wc > 0 ? Wc : w;
    const size_t nr = g.red.size();
    for (int64_t r = r0; r < r1; ++r) {
        const T* GD_RESTRICT xr = xo + off;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) pol.add(acc[j], xr[j], cen[j], r);
        for (size_t d = nr; d-- > 0;) {  // next reduced position
            off += g.red[d].s;
            if (++ix[d] < g.red[d].n) break;
            off -= g.red[d].s * g.red[d].n;
            ix[d] = 0;
        }
    }
}

// Columns path: the innermost kept dim (k0 outputs) is contiguous in x and in y. A task owns up
// to kColChunk columns and one group of kRowGroup reduced positions (all of them when there are
// fewer): a long reduction (many rows, few columns) still spreads over the threads. A group adds
// its row blocks' partials in order, and the groups' totals are added in group order.
template <class T, class P, class C, class E>
void sweep_columns(const P& pol, const Geometry& g, const T* x, int64_t work, const C& center,
                   const E& emit) {
    using A = typename P::A;
    const int64_t k0 = g.keep.back().n;
    const int64_t chunks = (k0 + kColChunk - 1) / kColChunk;
    const int64_t groups = (g.R + kRowGroup - 1) / kRowGroup;
    const size_t nk = g.keep.size() - 1, nr = g.red.size();
    // group totals, [group][output], when there is more than one group
    std::vector<A> part(groups > 1 ? static_cast<size_t>(groups * g.O) : 0);
    parallel_chunks(g.O / k0 * chunks * groups, 1, work, [&](int64_t t0, int64_t t1) {
        A acc[kColChunk], tot[kColChunk];
        T cen[kColChunk];
        std::vector<int64_t> ix(nr);
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t grp = t % groups, ct = t / groups;
            const int64_t oo = ct / chunks, c0 = (ct % chunks) * kColChunk;
            const int64_t w = std::min(kColChunk, k0 - c0);
            const int64_t o0 = oo * k0 + c0;  // first output of the task
            const T* xo = x + offset_of(g.keep, nk, oo) + c0;
            for (int64_t j = 0; j < w; ++j) cen[j] = center(o0 + j);
            const int64_t g0 = grp * kRowGroup, g1 = std::min(g.R, g0 + kRowGroup);
            int64_t off = 0;  // offset and multi-index of reduced position g0
            for (size_t d = nr, k = static_cast<size_t>(g0); d-- > 0;) {
                ix[d] = static_cast<int64_t>(k) % g.red[d].n;
                off += ix[d] * g.red[d].s;
                k /= static_cast<size_t>(g.red[d].n);
            }
            for (int64_t r0 = g0; r0 < g1; r0 += kRowBlock) {
                for (int64_t j = 0; j < w; ++j) acc[j] = pol.id();
                const int64_t r1 = std::min(g1, r0 + kRowBlock);
                if (w == kColChunk)
                    column_rows<kColChunk>(pol, acc, xo, cen, w, g, r0, r1, off, ix);
                else
                    column_rows<0>(pol, acc, xo, cen, w, g, r0, r1, off, ix);
                if (r0 == g0)
                    for (int64_t j = 0; j < w; ++j) tot[j] = acc[j];
                else
                    for (int64_t j = 0; j < w; ++j) pol.merge(tot[j], acc[j]);
            }
            if (groups == 1)
                for (int64_t j = 0; j < w; ++j) emit(o0 + j, tot[j]);
            else
                for (int64_t j = 0; j < w; ++j) part[grp * g.O + o0 + j] = tot[j];
        }
    });
    for (int64_t o = 0; groups > 1 && o < g.O; ++o) {
        A a = part[o];
        for (int64_t grp = 1; grp < groups; ++grp) pol.merge(a, part[grp * g.O + o]);
        emit(o, a);
    }
}

template <class T, class P, class C, class E>
void sweep(const P& pol, const Geometry& g, const T* x, int64_t work, const C& center,
           const E& emit) {
    if (g.O == 0) return;
    if (g.R == 0) {  // nothing to reduce: every output is the identity
        for (int64_t o = 0; o < g.O; ++o) emit(o, pol.id());
        return;
    }
    const bool columns = !g.keep.empty() && !g.red.empty() && g.keep.back().s == 1 &&
                         g.s0 != 1 && g.keep.back().n >= 4;
    if (columns) sweep_columns(pol, g, x, work, center, emit);
    else sweep_rows(pol, g, x, work, center, emit);
}

}  // namespace

// float32 var/std accumulate in float64, as PyTorch does (the squares of 1e30 must not
// overflow): x is widened into a C-order float64 copy, reduced as float64 and rounded back to
// float32 (beyond its range: +-inf, as a float64 -> float32 cast rounds).
template <class T>
void reduce_axes(Red op, T* y, int64_t* idx, const T* x, const int64_t* shape,
                 const int64_t* strides, int64_t nd, uint64_t axes, double param);

static void var_std_wide(Red op, float* y, const float* x, const int64_t* shape,
                         const int64_t* strides, int64_t nd, uint64_t axes, double param) {
    int64_t n = 1, outs = 1;
    for (int64_t d = 0; d < nd; ++d) {
        n *= shape[d];
        if (!((axes >> d) & 1u)) outs *= shape[d];
    }
    std::vector<double> wide(static_cast<size_t>(std::max<int64_t>(n, 1)));
    std::vector<double> out(static_cast<size_t>(std::max<int64_t>(outs, 1)));
    std::vector<int64_t> cst(static_cast<size_t>(std::max<int64_t>(nd, 1)), 1);
    for (int64_t d = nd - 1; d > 0; --d) cst[d - 1] = cst[d] * shape[d];
    if (n > 0) {
        std::vector<int64_t> at(static_cast<size_t>(std::max<int64_t>(nd, 1)), 0);
        int64_t off = 0;
        for (int64_t k = 0; k < n; ++k) {  // C order; the offset advances like an odometer
            wide[k] = double(x[off]);
            for (int64_t d = nd - 1; d >= 0; --d) {
                off += strides[d];
                if (++at[d] < shape[d]) break;
                off -= at[d] * strides[d];
                at[d] = 0;
            }
        }
    }
    reduce_axes<double>(op, out.data(), nullptr, wide.data(), shape, cst.data(), nd, axes, param);
    constexpr double kRoundsToInf = 3.4028235677973366e38;  // FLT_MAX + half an ulp
    for (int64_t o = 0; o < outs; ++o) {
        const double v = out[o];
        const float inf = std::numeric_limits<float>::infinity();
        y[o] = std::isnan(v) || std::fabs(v) < kRoundsToInf ? float(v) : (v > 0 ? inf : -inf);
    }
}

// x (shape, strides) -> y and/or idx over the kept dims (see above and reduce_ops.hpp)
template <class T>
void reduce_axes(Red op, T* y, int64_t* idx, const T* x, const int64_t* shape,
                 const int64_t* strides, int64_t nd, uint64_t axes, double param) {
    if constexpr (std::is_same_v<T, float>) {
        if (op == Red::var || op == Red::std_)
            return var_std_wide(op, y, x, shape, strides, nd, axes, param);
    }
    const Geometry g = make_geometry(shape, strides, nd, axes);
    const T n = T(g.R);
    const bool heavy = op == Red::logsumexp || (op == Red::norm && param != 0 && param != 1 &&
                                                 param != 2 && !std::isinf(param));
    // flop-like units of kParallelWork: a memory-bound pass ~8 per element, exp or pow far more
    const int64_t work = g.O * g.R * (heavy ? 64 : 8) * red_flops_per_element(op);
    const auto none = [](int64_t) { return T(0); };
    const auto from_y = [&](int64_t o) { return y[o]; };
    const auto put = [&](auto finish) { return [&, finish](int64_t o, T a) { y[o] = finish(a); }; };
    const auto same = [](T a) { return a; };
    switch (op) {
        case Red::sum: sweep(SumP<T>{}, g, x, work, none, put(same)); break;
        case Red::mean: sweep(SumP<T>{}, g, x, work, none, put([n](T a) { return a / n; })); break;
        case Red::var:
        case Red::std_: {
            sweep(SumP<T>{}, g, x, work, none, put([n](T a) { return a / n; }));
            const double dof = double(g.R) > param ? double(g.R) - param : 0.0;
            const T div = T(dof);
            if (op == Red::var)
                sweep(SqDevP<T>{}, g, x, work, from_y, put([div](T a) { return a / div; }));
            else
                sweep(SqDevP<T>{}, g, x, work, from_y,
                      put([div](T a) { return std::sqrt(a / div); }));
            break;
        }
        case Red::amax: sweep(ExtremeP<T, true, false>{}, g, x, work, none, put(same)); break;
        case Red::amin: sweep(ExtremeP<T, false, false>{}, g, x, work, none, put(same)); break;
        case Red::max:
        case Red::min:
        case Red::argmax:
        case Red::argmin: {
            const auto emit = [&](int64_t o, const ValIdx<T>& a) {
                if (y != nullptr) y[o] = a.v;
                if (idx != nullptr) idx[o] = a.i;
            };
            if (op == Red::max || op == Red::argmax) sweep(ArgP<T, true>{}, g, x, work, none, emit);
            else sweep(ArgP<T, false>{}, g, x, work, none, emit);
            break;
        }
        case Red::logsumexp: {
            // shift by the max unless it is infinite (PyTorch): all -inf gives log(0) = -inf,
            // a +inf gives inf, a NaN gives NaN
            sweep(ExtremeP<T, true, false>{}, g, x, work, none,
                  put([](T m) { return std::isinf(m) ? T(0) : m; }));
            sweep(ExpP<T>{}, g, x, work, from_y, [&](int64_t o, T a) { y[o] = std::log(a) + y[o]; });
            break;
        }
        case Red::norm:
            if (param == 2) sweep(SqP<T>{}, g, x, work, none, put([](T a) { return std::sqrt(a); }));
            else if (param == 1) sweep(AbsP<T>{}, g, x, work, none, put(same));
            else if (param == 0) sweep(NonzeroP<T>{}, g, x, work, none, put(same));
            else if (std::isinf(param) && param > 0)
                sweep(ExtremeP<T, true, true>{}, g, x, work, none, put(same));
            else if (std::isinf(param))
                sweep(ExtremeP<T, false, true>{}, g, x, work, none, put(same));
            else {
                const T p = T(param), inv = T(1.0 / param);
                sweep(PowP<T>{p}, g, x, work, none,
                      put([inv](T a) { return std::pow(a, inv); }));
            }
            break;
        case Red::prod: sweep(ProdP<T>{}, g, x, work, none, put(same)); break;
    }
}

template void sum_axis<float>(float*, const float*, int64_t, int64_t, int64_t);
template void sum_axis<double>(double*, const double*, int64_t, int64_t, int64_t);
template void sum_all<float>(float*, const float*, int64_t);
template void sum_all<double>(double*, const double*, int64_t);
template void reduce_axes<float>(Red, float*, int64_t*, const float*, const int64_t*,
                                 const int64_t*, int64_t, uint64_t, double);
template void reduce_axes<double>(Red, double*, int64_t*, const double*, const int64_t*,
                                  const int64_t*, int64_t, uint64_t, double);

}  // namespace GD_NS
}  // namespace gd

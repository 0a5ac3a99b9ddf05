// Gather and scatter along one dimension (torch.gather / scatter / scatter_add, and the backward
// of max/min over a dimension). They move values without arithmetic except scatter_add's sums,
// which run in the index array's C order on one thread, so every result is deterministic and
// identical on every ISA: the kernels are compiled once, not per ISA.
//
// Shape legend (nd >= 1 dimensions, dimension `dim`): the index array idx (int64) has shape I;
// gather reads x of shape X (I[k] <= X[k] for k != dim) and writes out of shape I; scatter writes
// out of shape O (I[k] <= O[k] for k != dim), reading src of shape S (I[k] <= S[k] for every k)
// or one scalar. An index j selects position j (j >= 0) or n + j (-n <= j < 0) along dim, n the
// size of X or O there; anything else is refused before a value is written.
//
// Each kernel is also a registered instruction kind (instr_registry.hpp), so gd.compile records
// it with no edit elsewhere: `<binding>_args` lays out the instruction of a call.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bind_common.hpp"
#include "instr_registry.hpp"

namespace gd {
namespace {

constexpr int64_t kMaxDims = 16;

int64_t prod(const int64_t* s, int64_t nd) {
    int64_t n = 1;
    for (int64_t k = 0; k < nd; ++k) n *= s[k];
    return n;
}

// Row-major element strides of shape s.
void strides_of(const int64_t* s, int64_t nd, int64_t* st) {
    int64_t acc = 1;
    for (int64_t k = nd - 1; k >= 0; --k) {
        st[k] = acc;
        acc *= s[k];
    }
}

// The first index outside [-n, n), as its flat position, or -1.
int64_t first_bad(const int64_t* idx, int64_t count, int64_t n) {
    for (int64_t k = 0; k < count; ++k)
        if (idx[k] < -n || idx[k] >= n) return k;
    return -1;
}

int64_t first_negative(const int64_t* idx, int64_t count) {
    for (int64_t k = 0; k < count; ++k)
        if (idx[k] < 0) return k;
    return -1;
}

std::string bad_select_message(const int64_t* idx, int64_t at, int64_t n) {
    return "index_select: index " + std::to_string(idx[at]) + " (at position " +
           std::to_string(at) + ") is out of range for a dimension of size " + std::to_string(n) +
           " (expected 0 <= index < " + std::to_string(n) + ")";
}

std::string bad_index_message(const char* op, const int64_t* idx, int64_t at, int64_t dim,
                              int64_t n) {
    return std::string(op) + ": index " + std::to_string(idx[at]) + " (at flat position " +
           std::to_string(at) + ") is out of bounds for dimension " + std::to_string(dim) +
           " with size " + std::to_string(n);
}

// Calls f(position in idx, offset in the dim-target array without dim's term, offset in a second
// array) for every position of idx in C order; `a` and `b` are the element strides of the two
// arrays (b may be all zero).
template <class F>
void walk(const int64_t* ishape, int64_t nd, int64_t dim, const int64_t* a, const int64_t* b,
          F&& f) {
    const int64_t total = prod(ishape, nd);
    int64_t pos[kMaxDims] = {0};
    int64_t oa = 0, ob = 0;
    for (int64_t lin = 0; lin < total; ++lin) {
        f(lin, oa, ob);
        for (int64_t k = nd - 1; k >= 0; --k) {
            ++pos[k];
            if (k != dim) oa += a[k];
            ob += b[k];
            if (pos[k] < ishape[k]) break;
            if (k != dim) oa -= a[k] * ishape[k];
            ob -= b[k] * ishape[k];
            pos[k] = 0;
        }
    }
}

// out (shape I) = x (shape X) at idx along dim.
template <class T>
void gather(T* out, const T* x, const int64_t* idx, int64_t nd, int64_t dim, const int64_t* ishape,
            const int64_t* xshape) {
    const int64_t n = xshape[dim];
    const int64_t bad = first_bad(idx, prod(ishape, nd), n);
    if (bad >= 0) throw std::out_of_range(bad_index_message("gather", idx, bad, dim, n));
    int64_t xs[kMaxDims], zero[kMaxDims] = {0};
    strides_of(xshape, nd, xs);
    walk(ishape, nd, dim, xs, zero, [&](int64_t lin, int64_t ox, int64_t) {
        const int64_t j = idx[lin] < 0 ? idx[lin] + n : idx[lin];
        out[lin] = x[ox + j * xs[dim]];
    });
}

// out (shape O) = base (or zeros); then at idx along dim, out = src (or value), or out += it.
template <class T>
void scatter(T* out, const T* base, const int64_t* idx, const T* src, T value, bool accumulate,
             int64_t nd, int64_t dim, const int64_t* ishape, const int64_t* oshape,
             const int64_t* sshape) {
    const int64_t n = oshape[dim];
    const int64_t bad = first_bad(idx, prod(ishape, nd), n);
    if (bad >= 0)
        throw std::out_of_range(bad_index_message(accumulate ? "scatter_add" : "scatter", idx, bad,
                                                  dim, n));
    const int64_t total = prod(oshape, nd);
    if (base == nullptr)
        std::fill(out, out + total, T(0));
    else if (base != out)
        std::memcpy(out, base, static_cast<size_t>(total) * sizeof(T));
    int64_t os[kMaxDims], ss[kMaxDims] = {0};
    strides_of(oshape, nd, os);
    if (src != nullptr) strides_of(sshape, nd, ss);
    walk(ishape, nd, dim, os, ss, [&](int64_t lin, int64_t oo, int64_t so) {
        const int64_t j = idx[lin] < 0 ? idx[lin] + n : idx[lin];
        const T v = src != nullptr ? src[so] : value;
        T& dst = out[oo + j * os[dim]];
        dst = accumulate ? T(dst + v) : v;
    });
}

// index_select: x viewed as (outer, n, inner), out (outer, K, inner) = x[:, idx[k], :]; every
// idx[k] in [0, n) (no negative indices, as torch.index_select).
template <class T>
void take(T* out, const T* x, const int64_t* idx, int64_t outer, int64_t n, int64_t inner,
          int64_t K) {
    const int64_t bad = first_bad(idx, K, n);
    if (bad >= 0 || (K > 0 && first_negative(idx, K) >= 0))
        throw std::out_of_range(bad_select_message(idx, bad >= 0 ? bad : first_negative(idx, K),
                                                   n));
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t k = 0; k < K; ++k)
            std::memcpy(out + (o * K + k) * inner, x + (o * n + idx[k]) * inner,
                        static_cast<size_t>(inner) * sizeof(T));
}

// The adjoint: out (outer, n, inner) = zeros, then out[:, idx[k], :] += src[:, k, :] in the
// order o, k, element (deterministic).
template <class T>
void take_add(T* out, const T* src, const int64_t* idx, int64_t outer, int64_t n, int64_t inner,
              int64_t K) {
    const int64_t bad = first_bad(idx, K, n);
    if (bad >= 0 || (K > 0 && first_negative(idx, K) >= 0))
        throw std::out_of_range(bad_select_message(idx, bad >= 0 ? bad : first_negative(idx, K),
                                                   n));
    std::fill(out, out + outer * n * inner, T(0));
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t k = 0; k < K; ++k) {
            T* dst = out + (o * n + idx[k]) * inner;
            const T* s = src + (o * K + k) * inner;
            for (int64_t r = 0; r < inner; ++r) dst[r] = T(dst[r] + s[r]);
        }
}

// Advanced indexing by k >= 1 index arrays of one shape S on adjacent dimensions (x[i0, i1],
// x[:, idx]): x viewed as (outer, D_0, .., D_{k-1}, inner), out (outer, N, inner) with N = |S|
// and out[o, m, :] = x[o, i_0[m], .., i_{k-1}[m], :]. An index j selects j (j >= 0) or D + j
// (-D <= j < 0); anything else is refused before a value is written. The adjoint (add) writes
// zeros of x's shape and adds src[o, m, :] at the same places in the order o, m, element
// (deterministic, repeated indices accumulate).
template <class T>
void take_nd(T* out, const T* a, const int64_t* const* idx, int64_t k, const int64_t* D,
             int64_t outer, int64_t N, int64_t inner, bool add) {
    std::vector<int64_t> off(static_cast<size_t>(N), 0);
    int64_t stride = inner;  // elements between neighbours along dimension j
    for (int64_t j = k - 1; j >= 0; --j) {
        const int64_t n = D[j];
        const int64_t bad = first_bad(idx[j], N, n);
        if (bad >= 0)
            throw std::out_of_range("index " + std::to_string(idx[j][bad]) + " (at flat position " +
                                    std::to_string(bad) + " of index " + std::to_string(j) +
                                    ") is out of bounds for a dimension of size " +
                                    std::to_string(n));
        for (int64_t m = 0; m < N; ++m) {
            const int64_t v = idx[j][m];
            off[static_cast<size_t>(m)] += (v < 0 ? v + n : v) * stride;
        }
        stride *= n;
    }
    const int64_t block = stride;  // elements of x per outer index
    if (add) std::fill(out, out + outer * block, T(0));
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t m = 0; m < N; ++m) {
            const int64_t at = o * block + off[static_cast<size_t>(m)];
            const int64_t here = (o * N + m) * inner;
            if (add) {
                T* dst = out + at;
                const T* src = a + here;
                for (int64_t r = 0; r < inner; ++r) dst[r] = T(dst[r] + src[r]);
            } else if (inner == 1) {
                out[here] = a[at];
            } else {
                std::memcpy(out + here, a + at, static_cast<size_t>(inner) * sizeof(T));
            }
        }
}

// ---- the instructions --------------------------------------------------------------------
// gather: p [out, x, idx]; i [kind, nd, dim, I (nd), X (nd)]
// scatter: p [out, base or 0, idx, src or 0]; i [kind, nd, dim, accumulate, I, O, S (nd each)];
//          d [value]

int64_t g_gather_kind = -1, g_scatter_kind = -1;

template <class T>
T* ptr(const Instr& in, size_t k) {
    return static_cast<T*>(in.p[k]);
}

void gather_run(const Instr& in) {
    const int64_t* i = in.i.data();
    const int64_t nd = i[1];
    if (in.f64)
        gather(ptr<double>(in, 0), ptr<const double>(in, 1), ptr<const int64_t>(in, 2), nd, i[2],
               i + 3, i + 3 + nd);
    else
        gather(ptr<float>(in, 0), ptr<const float>(in, 1), ptr<const int64_t>(in, 2), nd, i[2],
               i + 3, i + 3 + nd);
}

void gather_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t* i = in.i.data();
    const int64_t nd = i[1], e = in.f64 ? 8 : 4, ni = prod(i + 3, nd);
    ops.push_back({in.p[0], e * ni, false, true, 0});
    ops.push_back({in.p[1], e * prod(i + 3 + nd, nd), true, false, 1});
    ops.push_back({in.p[2], 8 * ni, true, false, 2});
}

int64_t gather_flops(const Instr& in) { return prod(in.i.data() + 3, in.i[1]); }

bool gather_valid(size_t nptrs, const std::vector<int64_t>& i, size_t) {
    if (nptrs != 3 || i.size() < 3 || i[1] < 1 || i[1] > kMaxDims) return false;
    return i.size() == static_cast<size_t>(3 + 2 * i[1]) && i[2] >= 0 && i[2] < i[1];
}

void scatter_run(const Instr& in) {
    const int64_t* i = in.i.data();
    const int64_t nd = i[1];
    const auto go = [&](auto tag) {
        using T = decltype(tag);
        scatter(ptr<T>(in, 0), ptr<const T>(in, 1), ptr<const int64_t>(in, 2), ptr<const T>(in, 3),
                static_cast<T>(in.d[0]), i[3] != 0, nd, i[2], i + 4, i + 4 + nd, i + 4 + 2 * nd);
    };
    if (in.f64)
        go(double{});
    else
        go(float{});
}

void scatter_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t* i = in.i.data();
    const int64_t nd = i[1], e = in.f64 ? 8 : 4, ni = prod(i + 4, nd), no = prod(i + 4 + nd, nd);
    const bool in_place = in.p[1] == in.p[0];
    ops.push_back({in.p[0], e * no, in_place, true, 0});
    if (in.p[1] != nullptr && !in_place) ops.push_back({in.p[1], e * no, true, false, 1});
    ops.push_back({in.p[2], 8 * ni, true, false, 2});
    if (in.p[3] != nullptr) ops.push_back({in.p[3], e * prod(i + 4 + 2 * nd, nd), true, false, 3});
}

int64_t scatter_flops(const Instr& in) { return prod(in.i.data() + 4, in.i[1]); }

bool scatter_valid(size_t nptrs, const std::vector<int64_t>& i, size_t nreals) {
    if (nptrs != 4 || nreals != 1 || i.size() < 4 || i[1] < 1 || i[1] > kMaxDims) return false;
    return i.size() == static_cast<size_t>(4 + 3 * i[1]) && i[2] >= 0 && i[2] < i[1];
}

// take / take_add: p [out, x or src, idx]; i [kind, outer, n, inner, K]
int64_t g_take_kind = -1, g_take_add_kind = -1;

template <bool Add>
void take_run(const Instr& in) {
    const int64_t* i = in.i.data();
    const auto go = [&](auto tag) {
        using T = decltype(tag);
        if constexpr (Add)
            take_add(ptr<T>(in, 0), ptr<const T>(in, 1), ptr<const int64_t>(in, 2), i[1], i[2],
                     i[3], i[4]);
        else
            take(ptr<T>(in, 0), ptr<const T>(in, 1), ptr<const int64_t>(in, 2), i[1], i[2], i[3],
                 i[4]);
    };
    if (in.f64)
        go(double{});
    else
        go(float{});
}

template <bool Add>
void take_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t* i = in.i.data();
    const int64_t e = in.f64 ? 8 : 4, full = e * i[1] * i[2] * i[3], part = e * i[1] * i[4] * i[3];
    ops.push_back({in.p[0], Add ? full : part, false, true, 0});
    ops.push_back({in.p[1], Add ? part : full, true, false, 1});
    ops.push_back({in.p[2], 8 * i[4], true, false, 2});
}

int64_t take_flops(const Instr& in) { return in.i[1] * in.i[4] * in.i[3]; }

bool take_valid(size_t nptrs, const std::vector<int64_t>& i, size_t) {
    return nptrs == 3 && i.size() == 5 && i[1] >= 0 && i[2] >= 0 && i[3] >= 0 && i[4] >= 0;
}

// take_nd: p [out, x or src, idx_0 .. idx_{k-1}]; i [kind, add, outer, inner, k, N, D (k)]
int64_t g_take_nd_kind = -1;

void take_nd_run(const Instr& in) {
    const int64_t* i = in.i.data();
    const int64_t k = i[4];
    std::vector<const int64_t*> idx(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j) idx[static_cast<size_t>(j)] = ptr<const int64_t>(in, 2 + j);
    const auto go = [&](auto tag) {
        using T = decltype(tag);
        take_nd(ptr<T>(in, 0), ptr<const T>(in, 1), idx.data(), k, i + 6, i[2], i[5], i[3],
                i[1] != 0);
    };
    if (in.f64)
        go(double{});
    else
        go(float{});
}

void take_nd_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t* i = in.i.data();
    const int64_t e = in.f64 ? 8 : 4, k = i[4], N = i[5];
    const int64_t full = e * i[2] * prod(i + 6, k) * i[3], part = e * i[2] * N * i[3];
    const bool add = i[1] != 0;
    ops.push_back({in.p[0], add ? full : part, false, true, 0});
    ops.push_back({in.p[1], add ? part : full, true, false, 1});
    for (int64_t j = 0; j < k; ++j)
        ops.push_back({in.p[static_cast<size_t>(2 + j)], 8 * N, true, false,
                       static_cast<int>(2 + j)});
}

int64_t take_nd_flops(const Instr& in) { return in.i[2] * in.i[5] * in.i[3]; }

bool take_nd_valid(size_t nptrs, const std::vector<int64_t>& i, size_t) {
    if (i.size() < 6 || i[4] < 1 || i[4] > kMaxDims) return false;
    if (nptrs != static_cast<size_t>(2 + i[4]) || i.size() != static_cast<size_t>(6 + i[4]))
        return false;
    for (size_t j = 1; j < i.size(); ++j)
        if (i[j] < 0) return false;
    return i[1] <= 1;
}

}  // namespace

namespace bind {
namespace {

struct Checked {
    py::array idx, x, src, base;  // x: gather's input; base/src: scatter's (either may be absent)
    std::vector<int64_t> ishape, xshape, oshape, sshape;
    bool has_base = false, has_src = false;  // (a default py::array is an empty array, not null)
    int64_t nd = 0, dim = 0;
    char kind = 'f';
};

int64_t norm_dim(int64_t dim, int64_t nd, const char* op) {
    if (dim < -nd || dim >= nd)
        throw py::index_error(std::string(op) + ": argument 'dim' = " + std::to_string(dim) +
                              " is out of range for " + std::to_string(nd) + " dimensions");
    return dim < 0 ? dim + nd : dim;
}

void check_index(Checked& c, const py::handle& io, const char* op) {
    c.idx = as_array(io, op, "index");
    if (!c.idx.dtype().equal(py::dtype::of<int64_t>()))
        type_error(std::string(op) + ": argument 'index' must have dtype int64, got " +
                   dtype_str(c.idx));
    check_array<int64_t>(c.idx, op, "index");
    c.ishape = shape_of(c.idx);
    c.nd = static_cast<int64_t>(c.ishape.size());
    if (c.nd < 1 || c.nd > kMaxDims)
        value_error(std::string(op) + ": argument 'index' must have 1 to " +
                    std::to_string(kMaxDims) + " dimensions, got shape " + shape_str(c.ishape));
}

// `a`'s shape must have idx's ndim and be at least idx's size in every dimension (but dim, when
// skip_dim); its dtype float32/float64, C-contiguous.
void check_against_index(const Checked& c, const py::array& a, const char* op, const char* arg,
                         bool skip_dim) {
    check_ndim(a, op, arg, static_cast<int>(c.nd), static_cast<int>(c.nd));
    if (float_kind(a, op, arg) == 'f')
        check_array<float>(a, op, arg);
    else
        check_array<double>(a, op, arg);
    for (int64_t k = 0; k < c.nd; ++k)
        if ((!skip_dim || k != c.dim) && a.shape(k) < c.ishape[k])
            value_error(std::string(op) + ": argument 'index' of shape " + shape_str(c.ishape) +
                        " is larger than argument '" + arg + "' of shape " +
                        shape_str(shape_of(a)) + " in dimension " + std::to_string(k));
}

void check_values(const Checked& c, int64_t n, const char* op) {
    const int64_t* ip = in_ptr<int64_t>(c.idx);
    const int64_t bad = first_bad(ip, c.idx.size(), n);
    if (bad >= 0) throw py::index_error(bad_index_message(op, ip, bad, c.dim, n));
}

Checked parse_gather(const py::handle& xo, const py::handle& io, int64_t dim) {
    const char* op = "gather";
    Checked c;
    check_index(c, io, op);
    c.dim = norm_dim(dim, c.nd, op);
    c.x = as_array(xo, op, "input");
    check_against_index(c, c.x, op, "input", true);
    c.kind = float_kind(c.x, op, "input");
    c.xshape = shape_of(c.x);
    if (c.idx.size() > 0) check_values(c, c.xshape[c.dim], op);
    return c;
}

py::array index_gather(const py::handle& x, const py::handle& index, int64_t dim) {
    Checked c = parse_gather(x, index, dim);
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array out = new_array<T>(c.ishape);
        T* o = out_ptr<T>(out);
        const T* xp = in_ptr<T>(c.x);
        const int64_t* ip = in_ptr<int64_t>(c.idx);
        py::gil_scoped_release nogil;
        gather(o, xp, ip, c.nd, c.dim, c.ishape.data(), c.xshape.data());
        return out;
    };
    return c.kind == 'f' ? go(float{}) : go(double{});
}

py::tuple index_gather_args(const py::handle& x, const py::handle& index, int64_t dim,
                            const py::handle& result) {
    Checked c = parse_gather(x, index, dim);
    py::array out = as_array(result, "gather", "result");
    check_shape(out, "gather", "result", c.ishape);
    std::vector<int64_t> ints{g_gather_kind, c.nd, c.dim};
    ints.insert(ints.end(), c.ishape.begin(), c.ishape.end());
    ints.insert(ints.end(), c.xshape.begin(), c.xshape.end());
    std::vector<uintptr_t> ptrs{addr(out), addr(c.x), addr(c.idx)};
    std::vector<std::pair<uintptr_t, int64_t>> reads{span_of(c.x), span_of(c.idx)};
    return py::make_tuple(ptrs, ints, std::vector<double>{}, c.kind == 'd', reads);
}

Checked parse_scatter(const py::handle& bo, const py::handle& io, const py::handle& so,
                      int64_t dim, const py::handle& shape, const char* op) {
    Checked c;
    check_index(c, io, op);
    c.dim = norm_dim(dim, c.nd, op);
    if (!bo.is_none()) {
        c.base = as_array(bo, op, "input");
        c.has_base = true;
        check_against_index(c, c.base, op, "input", true);
        c.oshape = shape_of(c.base);
        c.kind = float_kind(c.base, op, "input");
    } else {
        if (shape.is_none()) value_error(std::string(op) + ": 'shape' is required without 'input'");
        c.oshape = shape.cast<std::vector<int64_t>>();
        if (static_cast<int64_t>(c.oshape.size()) != c.nd)
            value_error(std::string(op) + ": 'shape' " + shape_str(c.oshape) +
                        " must have as many dimensions as argument 'index' of shape " +
                        shape_str(c.ishape));
        for (int64_t k = 0; k < c.nd; ++k)
            if (c.oshape[k] < 0 || (k != c.dim && c.oshape[k] < c.ishape[k]))
                value_error(std::string(op) + ": argument 'index' of shape " +
                            shape_str(c.ishape) + " does not fit 'shape' " + shape_str(c.oshape));
    }
    if (!so.is_none()) {
        c.src = as_array(so, op, "src");
        c.has_src = true;
        check_against_index(c, c.src, op, "src", false);
        c.sshape = shape_of(c.src);
        const char k = float_kind(c.src, op, "src");
        if (!bo.is_none() && k != c.kind)
            type_error(std::string(op) + ": argument 'src' has dtype " + dtype_str(c.src) +
                       " but argument 'input' has dtype " + dtype_str(c.base));
        c.kind = k;
    } else {
        c.sshape.assign(static_cast<size_t>(c.nd), 0);
        if (bo.is_none())
            value_error(std::string(op) + ": either 'input' or 'src' must be given (the dtype)");
    }
    if (c.idx.size() > 0) {
        if (c.oshape[c.dim] == 0)
            throw py::index_error(std::string(op) + ": index into dimension " +
                                  std::to_string(c.dim) + " of size 0");
        check_values(c, c.oshape[c.dim], op);
    }
    return c;
}

py::array index_scatter(const py::handle& input, const py::handle& index, const py::handle& src,
                        int64_t dim, bool accumulate, const py::handle& shape, double value) {
    const char* op = accumulate ? "scatter_add" : "scatter";
    Checked c = parse_scatter(input, index, src, dim, shape, op);
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array out = new_array<T>(c.oshape);
        T* o = out_ptr<T>(out);
        const T* bp = c.has_base ? in_ptr<T>(c.base) : nullptr;
        const T* sp = c.has_src ? in_ptr<T>(c.src) : nullptr;
        const int64_t* ip = in_ptr<int64_t>(c.idx);
        py::gil_scoped_release nogil;
        scatter(o, bp, ip, sp, static_cast<T>(value), accumulate, c.nd, c.dim, c.ishape.data(),
                c.oshape.data(), c.sshape.data());
        return out;
    };
    return c.kind == 'f' ? go(float{}) : go(double{});
}

py::tuple index_scatter_args(const py::handle& input, const py::handle& index,
                             const py::handle& src, int64_t dim, bool accumulate,
                             const py::handle& shape, double value, const py::handle& result) {
    const char* op = accumulate ? "scatter_add" : "scatter";
    Checked c = parse_scatter(input, index, src, dim, shape, op);
    py::array out = as_array(result, op, "result");
    check_shape(out, op, "result", c.oshape);
    std::vector<int64_t> ints{g_scatter_kind, c.nd, c.dim, accumulate ? 1 : 0};
    ints.insert(ints.end(), c.ishape.begin(), c.ishape.end());
    ints.insert(ints.end(), c.oshape.begin(), c.oshape.end());
    ints.insert(ints.end(), c.sshape.begin(), c.sshape.end());
    std::vector<uintptr_t> ptrs{addr(out), c.has_base ? addr(c.base) : 0, addr(c.idx),
                                c.has_src ? addr(c.src) : 0};
    std::vector<std::pair<uintptr_t, int64_t>> reads{span_of(c.idx)};
    if (c.has_base) reads.push_back(span_of(c.base));
    if (c.has_src) reads.push_back(span_of(c.src));
    return py::make_tuple(ptrs, ints, std::vector<double>{value}, c.kind == 'd', reads);
}

// (outer, n, inner) of shape around dim
void split3(const std::vector<int64_t>& shape, int64_t dim, int64_t& outer, int64_t& inner) {
    outer = 1;
    inner = 1;
    for (int64_t k = 0; k < dim; ++k) outer *= shape[k];
    for (size_t k = static_cast<size_t>(dim) + 1; k < shape.size(); ++k) inner *= shape[k];
}

struct Take {
    py::array a, idx;  // a: x (select) or src (add)
    std::vector<int64_t> out_shape;
    int64_t dim = 0, outer = 1, n = 0, inner = 1, K = 0;
    char kind = 'f';
};

Take parse_take(const py::handle& ao, const py::handle& io, int64_t dim, bool add, int64_t size) {
    const char* op = add ? "index_add" : "index_select";
    Take t;
    t.a = as_array(ao, op, add ? "source" : "input");
    t.kind = float_kind(t.a, op, add ? "source" : "input");
    if (t.kind == 'f')
        check_array<float>(t.a, op, add ? "source" : "input");
    else
        check_array<double>(t.a, op, add ? "source" : "input");
    if (t.a.ndim() < 1 || t.a.ndim() > kMaxDims)
        value_error(std::string(op) + ": the array must have 1 to 16 dimensions, got shape " +
                    shape_str(shape_of(t.a)));
    t.idx = as_array(io, op, "index");
    if (!t.idx.dtype().equal(py::dtype::of<int64_t>()))
        type_error(std::string(op) + ": argument 'index' must have dtype int64, got " +
                   dtype_str(t.idx));
    check_array<int64_t>(t.idx, op, "index");
    check_ndim(t.idx, op, "index", 1, 1);
    const int64_t nd = t.a.ndim();
    t.dim = norm_dim(dim, nd, op);
    std::vector<int64_t> shape = shape_of(t.a);
    t.K = t.idx.shape(0);
    if (add) {
        if (shape[t.dim] != t.K)
            value_error(std::string(op) + ": argument 'source' has " + std::to_string(shape[t.dim]) +
                        " slices along dim " + std::to_string(t.dim) + " but 'index' has " +
                        std::to_string(t.K) + " entries");
        if (size < 0) value_error(std::string(op) + ": 'size' must be >= 0");
        t.n = size;
        t.out_shape = shape;
        t.out_shape[t.dim] = size;
    } else {
        t.n = shape[t.dim];
        t.out_shape = shape;
        t.out_shape[t.dim] = t.K;
    }
    split3(shape, t.dim, t.outer, t.inner);
    const int64_t* ip = in_ptr<int64_t>(t.idx);
    int64_t bad = first_bad(ip, t.K, t.n);
    if (bad < 0) bad = first_negative(ip, t.K);
    if (bad >= 0) throw py::index_error(bad_select_message(ip, bad, t.n));
    return t;
}

py::array index_take(const py::handle& x, const py::handle& index, int64_t dim, bool add,
                     int64_t size) {
    Take t = parse_take(x, index, dim, add, size);
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array out = new_array<T>(t.out_shape);
        T* o = out_ptr<T>(out);
        const T* a = in_ptr<T>(t.a);
        const int64_t* ip = in_ptr<int64_t>(t.idx);
        py::gil_scoped_release nogil;
        if (add)
            take_add(o, a, ip, t.outer, t.n, t.inner, t.K);
        else
            take(o, a, ip, t.outer, t.n, t.inner, t.K);
        return out;
    };
    return t.kind == 'f' ? go(float{}) : go(double{});
}

py::tuple index_take_args(const py::handle& x, const py::handle& index, int64_t dim, bool add,
                          int64_t size, const py::handle& result) {
    Take t = parse_take(x, index, dim, add, size);
    py::array out = as_array(result, add ? "index_add" : "index_select", "result");
    check_shape(out, add ? "index_add" : "index_select", "result", t.out_shape);
    std::vector<int64_t> ints{add ? g_take_add_kind : g_take_kind, t.outer, t.n, t.inner, t.K};
    std::vector<uintptr_t> ptrs{addr(out), addr(t.a), addr(t.idx)};
    std::vector<std::pair<uintptr_t, int64_t>> reads{span_of(t.a), span_of(t.idx)};
    return py::make_tuple(ptrs, ints, std::vector<double>{}, t.kind == 'd', reads);
}

struct TakeNd {
    py::array a;
    std::vector<py::array> idx;
    std::vector<int64_t> out_shape, D;
    int64_t dim = 0, outer = 1, inner = 1, N = 1;
    char kind = 'f';
};

// add=False: a is x; out = x[..., i_0, .., i_{k-1}, ...] with the index arrays at dims
// [dim, dim + k). add=True: a is the gradient of that result and `shape` is x's shape.
TakeNd parse_take_nd(const py::handle& ao, const py::list& indices, int64_t dim, bool add,
                     const py::handle& shape) {
    const char* op = add ? "index_nd (add)" : "index_nd";
    const char* arg = add ? "source" : "input";
    TakeNd t;
    t.a = as_array(ao, op, arg);
    t.kind = float_kind(t.a, op, arg);
    if (t.kind == 'f')
        check_array<float>(t.a, op, arg);
    else
        check_array<double>(t.a, op, arg);
    const int64_t k = static_cast<int64_t>(indices.size());
    if (k < 1 || k > kMaxDims)
        value_error(std::string(op) + ": 'indices' must hold 1 to 16 index arrays, got " +
                    std::to_string(k));
    std::vector<int64_t> S;
    for (int64_t j = 0; j < k; ++j) {
        py::array ix = as_array(indices[static_cast<size_t>(j)], op, "indices");
        if (!ix.dtype().equal(py::dtype::of<int64_t>()))
            type_error(std::string(op) + ": index " + std::to_string(j) +
                       " must have dtype int64, got " + dtype_str(ix));
        check_array<int64_t>(ix, op, "indices");
        if (j == 0) S = shape_of(ix);
        else if (shape_of(ix) != S)
            value_error(std::string(op) + ": every index array must have the same shape; index 0 "
                        "has shape " + shape_str(S) + ", index " + std::to_string(j) + " has " +
                        shape_str(shape_of(ix)));
        t.idx.push_back(ix);
    }
    t.N = prod(S.data(), static_cast<int64_t>(S.size()));
    std::vector<int64_t> full;  // x's shape
    if (add) {
        if (shape.is_none()) value_error(std::string(op) + ": 'shape' (the input's) is required");
        full = shape.cast<std::vector<int64_t>>();
    } else {
        full = shape_of(t.a);
    }
    const int64_t nd = static_cast<int64_t>(full.size());
    if (dim < 0 || dim + k > nd)
        value_error(std::string(op) + ": " + std::to_string(k) + " index arrays from dim " +
                    std::to_string(dim) + " do not fit an input of shape " + shape_str(full));
    for (int64_t d = 0; d < nd; ++d) {
        if (full[d] < 0) value_error(std::string(op) + ": 'shape' has a negative size");
        if (d < dim) t.outer *= full[d];
        else if (d < dim + k) t.D.push_back(full[d]);
        else t.inner *= full[d];
    }
    t.dim = dim;
    std::vector<int64_t> part(full.begin(), full.begin() + dim);  // the result's shape
    part.insert(part.end(), S.begin(), S.end());
    part.insert(part.end(), full.begin() + dim + k, full.end());
    if (add && shape_of(t.a) != part)
        value_error(std::string(op) + ": argument 'source' expected shape " + shape_str(part) +
                    ", got " + shape_str(shape_of(t.a)));
    t.out_shape = add ? full : part;
    for (int64_t j = 0; j < k; ++j) {
        const int64_t* ip = in_ptr<int64_t>(t.idx[static_cast<size_t>(j)]);
        const int64_t bad = first_bad(ip, t.N, t.D[static_cast<size_t>(j)]);
        if (bad >= 0)
            throw py::index_error("index " + std::to_string(ip[bad]) + " is out of bounds for "
                                  "dimension " + std::to_string(dim + j) + " with size " +
                                  std::to_string(t.D[static_cast<size_t>(j)]));
    }
    return t;
}

py::array index_nd(const py::handle& x, const py::list& indices, int64_t dim, bool add,
                   const py::handle& shape) {
    TakeNd t = parse_take_nd(x, indices, dim, add, shape);
    std::vector<const int64_t*> ip;
    for (const py::array& ix : t.idx) ip.push_back(in_ptr<int64_t>(ix));
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array out = new_array<T>(t.out_shape);
        T* o = out_ptr<T>(out);
        const T* a = in_ptr<T>(t.a);
        py::gil_scoped_release nogil;
        take_nd(o, a, ip.data(), static_cast<int64_t>(ip.size()), t.D.data(), t.outer, t.N,
                t.inner, add);
        return out;
    };
    return t.kind == 'f' ? go(float{}) : go(double{});
}

py::tuple index_nd_args(const py::handle& x, const py::list& indices, int64_t dim, bool add,
                        const py::handle& shape, const py::handle& result) {
    TakeNd t = parse_take_nd(x, indices, dim, add, shape);
    py::array out = as_array(result, "index_nd", "result");
    check_shape(out, "index_nd", "result", t.out_shape);
    const int64_t k = static_cast<int64_t>(t.idx.size());
    std::vector<int64_t> ints{g_take_nd_kind, add ? 1 : 0, t.outer, t.inner, k, t.N};
    ints.insert(ints.end(), t.D.begin(), t.D.end());
    std::vector<uintptr_t> ptrs{addr(out), addr(t.a)};
    std::vector<std::pair<uintptr_t, int64_t>> reads{span_of(t.a)};
    for (const py::array& ix : t.idx) {
        ptrs.push_back(addr(ix));
        reads.push_back(span_of(ix));
    }
    return py::make_tuple(ptrs, ints, std::vector<double>{}, t.kind == 'd', reads);
}

}  // namespace

void bind_index(py::module_& m) {
    g_take_nd_kind = register_instr_kind(
        {"index_nd", &take_nd_run, &take_nd_operands, &take_nd_flops, &take_nd_valid});
    m.def("index_nd", &index_nd, py::arg("input"), py::arg("indices"), py::arg("dim"),
          py::arg("add") = false, py::arg("shape") = py::none(),
          "Advanced indexing by a list of int64 index arrays of one shape on the adjacent "
          "dimensions dim, dim + 1, ...: input[..., i0, i1, ...] (negative indices count from "
          "the end). add=True: its adjoint, zeros of `shape` (the indexed input's) with input "
          "added at those places in order (deterministic).");
    m.def("index_nd_args", &index_nd_args, py::arg("input"), py::arg("indices"), py::arg("dim"),
          py::arg("add") = false, py::arg("shape") = py::none(), py::kw_only(),
          py::arg("result"), "The instruction gd.compile records for index_nd(...) = result.");
    g_take_kind = register_instr_kind(
        {"index_select", &take_run<false>, &take_operands<false>, &take_flops, &take_valid});
    g_take_add_kind = register_instr_kind(
        {"index_add", &take_run<true>, &take_operands<true>, &take_flops, &take_valid});
    m.def("index_take", &index_take, py::arg("input"), py::arg("index"), py::arg("dim"),
          py::arg("add") = false, py::arg("size") = -1,
          "add=False: input's slices at the 1-d int64 index along dim (torch.index_select; "
          "indices in [0, n)). add=True: its adjoint, zeros with `size` slices along dim and "
          "input's k-th slice added at index[k], in order (deterministic).");
    m.def("index_take_args", &index_take_args, py::arg("input"), py::arg("index"),
          py::arg("dim"), py::arg("add") = false, py::arg("size") = -1, py::kw_only(),
          py::arg("result"), "The instruction gd.compile records for index_take(...) = result.");
    g_gather_kind = register_instr_kind(
        {"gather", &gather_run, &gather_operands, &gather_flops, &gather_valid});
    g_scatter_kind = register_instr_kind(
        {"scatter", &scatter_run, &scatter_operands, &scatter_flops, &scatter_valid});
    m.def("index_gather", &index_gather, py::arg("input"), py::arg("index"), py::arg("dim"),
          "out = input at index along dim (torch.gather): out has index's shape; input "
          "float32/float64 and index int64, both C-contiguous; negative indices count from the "
          "end.");
    m.def("index_gather_args", &index_gather_args, py::arg("input"), py::arg("index"),
          py::arg("dim"), py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for index_gather(input, index, dim) = result: "
          "(pointers, ints, reals, float64, [(address, bytes) read]).");
    m.def("index_scatter", &index_scatter, py::arg("input"), py::arg("index"), py::arg("src"),
          py::arg("dim"), py::arg("accumulate") = false, py::arg("shape") = py::none(),
          py::arg("value") = 0.0,
          "A copy of input (or zeros of `shape` when input is None) with src (or `value` when "
          "src is None) written at index along dim, or added (accumulate=True, in index order, "
          "deterministic).");
    m.def("index_scatter_args", &index_scatter_args, py::arg("input"), py::arg("index"),
          py::arg("src"), py::arg("dim"), py::arg("accumulate") = false,
          py::arg("shape") = py::none(), py::arg("value") = 0.0, py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for index_scatter(...) = result.");
    // binding name -> the twin that lays out its recorded instruction (used by _compile_record.py;
    // the other binding files add their own)
    add_record_args(m, {{"index_gather", "index_gather_args"},
                        {"index_scatter", "index_scatter_args"},
                        {"index_take", "index_take_args"},
                        {"index_nd", "index_nd_args"}});
}

}  // namespace bind
}  // namespace gd

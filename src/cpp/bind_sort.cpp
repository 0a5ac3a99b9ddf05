// Bindings of the sorting and scan kernels (sort.hpp), each also a registered instruction kind
// (instr_registry.hpp) with a `<name>_args` twin, so gd.compile records a step that sorts, takes
// a top-k or a cumulative sum. The backward of sort/topk/kthvalue is a scatter of the gradient
// to the selected positions, bind_index.cpp's `index_scatter` (and its adjoint `index_gather`).
//
//   sort(x, dim, descending, k, order) -> (values, indices)   x float32/float64/int32/int64
//   scan(x, dim, op, reverse)          -> y                    op "sum"/"prod"; float32/float64/int64
//   cumprod_backward(g, x, y, dim)     -> dx                   float32/float64
//
// Layouts (i[0] the kind's id; dtype codes 0 float32, 1 float64, 2 int32, 3 int64):
//   sort:  p [values, indices, x]; i [kind, dtype, outer, n, inner, k, descending, order]
//   scan:  p [y, x];               i [kind, dtype, outer, n, inner, prod, reverse]
//   cumprod_backward: p [dx, g, x, y]; i [kind, outer, n, inner]
#include <cstdint>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bind_instr.hpp"
#include "sort.hpp"

namespace gd {
namespace bind {
namespace {

constexpr int64_t kMaxDims = 16;
enum Dt : int64_t { kF32 = 0, kF64 = 1, kI32 = 2, kI64 = 3 };
constexpr int64_t kItem[4] = {4, 8, 4, 8};

int64_t g_sort_kind = -1, g_scan_kind = -1, g_cumprod_bwd_kind = -1;

// The dtype code of a, among `allowed` (a TypeError naming op, argument and dtype otherwise),
// and the layout checks of check_array.
int64_t dtype_code(const py::array& a, const char* op, const char* arg, bool ints32,
                   bool ints64) {
    const py::dtype d = a.dtype();
    int64_t code = -1;
    if (d.equal(py::dtype::of<float>())) code = kF32;
    else if (d.equal(py::dtype::of<double>())) code = kF64;
    else if (ints32 && d.equal(py::dtype::of<int32_t>())) code = kI32;
    else if (ints64 && d.equal(py::dtype::of<int64_t>())) code = kI64;
    if (code < 0)
        type_error(std::string(op) + ": argument '" + arg + "' must have dtype float32, float64" +
                   (ints32 ? ", int32" : "") + (ints64 ? ", int64" : "") + ", got " +
                   dtype_str(a));
    switch (code) {
        case kF32: check_array<float>(a, op, arg); break;
        case kF64: check_array<double>(a, op, arg); break;
        case kI32: check_array<int32_t>(a, op, arg); break;
        default: check_array<int64_t>(a, op, arg); break;
    }
    return code;
}

// (outer, n, inner) of x around dim (dim checked, negative counts from the end)
struct Lines {
    int64_t dim = 0, outer = 1, n = 1, inner = 1;
    std::vector<int64_t> shape;
};

Lines lines_of(const py::array& x, int64_t dim, const char* op) {
    Lines L;
    L.shape = shape_of(x);
    const int64_t nd = static_cast<int64_t>(L.shape.size());
    if (nd < 1 || nd > kMaxDims)
        value_error(std::string(op) + ": argument 'x' must have 1 to 16 dimensions, got shape " +
                    shape_str(L.shape));
    if (dim < -nd || dim >= nd)
        throw py::index_error(std::string(op) + ": argument 'dim' = " + std::to_string(dim) +
                              " is out of range for a tensor of " + std::to_string(nd) +
                              " dimensions (expected -" + std::to_string(nd) + " <= dim < " +
                              std::to_string(nd) + ")");
    L.dim = dim < 0 ? dim + nd : dim;
    for (int64_t k = 0; k < nd; ++k) {
        if (k < L.dim) L.outer *= L.shape[k];
        else if (k > L.dim) L.inner *= L.shape[k];
    }
    L.n = L.shape[L.dim];
    return L;
}

// ---- sort ----------------------------------------------------------------------------------

struct Sort {
    py::array x;
    int64_t dt = 0, k = 0, order = 0;
    bool descending = false;
    Lines L;
    std::vector<int64_t> out_shape;
};

Sort parse_sort(const py::handle& xo, int64_t dim, bool descending, int64_t k,
                const std::string& order) {
    const char* op = "sort";
    Sort s;
    s.x = as_array(xo, op, "x");
    s.dt = dtype_code(s.x, op, "x", true, true);
    s.L = lines_of(s.x, dim, op);
    s.descending = descending;
    if (order == "sorted") s.order = 0;
    else if (order == "index") s.order = 1;
    else if (order == "kth") s.order = 2;
    else
        value_error(std::string(op) + ": argument 'order' must be 'sorted', 'index' or 'kth', "
                    "got '" + order + "'");
    const int64_t n = s.L.n;
    s.k = k < 0 && s.order != 2 ? n : k;
    const int64_t lo = s.order == 2 ? 1 : 0;
    if (s.k < lo || s.k > n)
        value_error(std::string(op) + ": argument 'k' = " + std::to_string(k) +
                    " is out of range for dimension " + std::to_string(s.L.dim) + " of size " +
                    std::to_string(n) + " (expected " + std::to_string(lo) + " <= k <= " +
                    std::to_string(n) + ")");
    s.out_shape = s.L.shape;
    s.out_shape[static_cast<size_t>(s.L.dim)] = s.order == 2 ? 1 : s.k;
    return s;
}

template <class T>
void sort_typed(void* v, int64_t* idx, const void* x, const int64_t* i) {
    sort_select<T>(static_cast<T*>(v), idx, static_cast<const T*>(x), i[2], i[3], i[4], i[5],
                   i[6] != 0, static_cast<SortOrder>(i[7]));
}

// i as the instruction lays it out (i[0] the kind, unused here)
void sort_by_dtype(void* v, int64_t* idx, const void* x, const int64_t* i) {
    switch (i[1]) {
        case kF32: sort_typed<float>(v, idx, x, i); break;
        case kF64: sort_typed<double>(v, idx, x, i); break;
        case kI32: sort_typed<int32_t>(v, idx, x, i); break;
        default: sort_typed<int64_t>(v, idx, x, i); break;
    }
}

std::vector<int64_t> sort_ints(const Sort& s) {
    return {g_sort_kind, s.dt, s.L.outer, s.L.n, s.L.inner, s.k, s.descending ? 1 : 0, s.order};
}

py::tuple sort(const py::handle& x, int64_t dim, bool descending, int64_t k,
               const std::string& order) {
    const Sort s = parse_sort(x, dim, descending, k, order);
    py::array values(s.x.dtype(), std::vector<py::ssize_t>(s.out_shape.begin(), s.out_shape.end()));
    py::array indices = new_array<int64_t>(s.out_shape);
    const std::vector<int64_t> ints = sort_ints(s);
    void* v = values.mutable_data();
    int64_t* ip = out_ptr<int64_t>(indices);
    const void* xp = s.x.data();
    {
        py::gil_scoped_release nogil;
        sort_by_dtype(v, ip, xp, ints.data());
    }
    return py::make_tuple(values, indices);
}

py::tuple sort_args(const py::handle& x, int64_t dim, bool descending, int64_t k,
                    const std::string& order, const py::handle& result) {
    const Sort s = parse_sort(x, dim, descending, k, order);
    const char* op = "sort";
    if (!py::isinstance<py::tuple>(result) || py::len(result) != 2)
        type_error("sort: argument 'result' must be the (values, indices) pair sort returned");
    const py::tuple r = result.cast<py::tuple>();
    py::array values = as_array(r[0], op, "result[0]");
    py::array indices = as_array(r[1], op, "result[1]");
    if (!values.dtype().equal(s.x.dtype()))
        type_error("sort: argument 'result[0]' must have x's dtype");
    check_array<int64_t>(indices, op, "result[1]");
    check_shape(values, op, "result[0]", s.out_shape);
    check_shape(indices, op, "result[1]", s.out_shape);
    return instr::instr_tuple({addr(values), addr(indices), addr(s.x)}, sort_ints(s), {},
                              s.dt == kF64, {s.x});
}

void sort_run(const Instr& in) { sort_by_dtype(in.p[0], instr::P<int64_t>(in, 1), in.p[2], in.i.data()); }

void sort_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t* i = in.i.data();
    const int64_t m = i[7] == 2 ? 1 : i[5], e = kItem[i[1]];
    const int64_t out = i[2] * m * i[4];
    instr::operand(in, ops, 0, e * out, true);
    instr::operand(in, ops, 1, 8 * out, true);
    instr::operand(in, ops, 2, e * i[2] * i[3] * i[4], false);
}

int64_t sort_flops(const Instr& in) {
    const int64_t n = in.i[3];
    int64_t lg = 1;
    while ((int64_t(1) << lg) < n) ++lg;
    return in.i[2] * in.i[4] * n * lg;
}

bool sort_valid(size_t nptrs, const std::vector<int64_t>& i, size_t nreals) {
    if (!instr::layout_valid<3, 8, 0, 2, 6>(nptrs, i, nreals)) return false;
    if (i[1] < kF32 || i[1] > kI64 || i[7] < 0 || i[7] > 2 || i[6] < 0 || i[6] > 1) return false;
    return i[5] <= i[3] && (i[7] != 2 || i[5] >= 1);
}

// ---- scan ----------------------------------------------------------------------------------

struct Scan {
    py::array x;
    int64_t dt = 0;
    bool prod = false, reverse = false;
    Lines L;
};

Scan parse_scan(const py::handle& xo, int64_t dim, const std::string& opname, bool reverse) {
    const char* op = "scan";
    Scan s;
    if (opname == "sum") s.prod = false;
    else if (opname == "prod") s.prod = true;
    else
        value_error(std::string(op) + ": argument 'op' must be 'sum' or 'prod', got '" + opname +
                    "'");
    s.x = as_array(xo, op, "x");
    s.dt = dtype_code(s.x, op, "x", false, true);
    s.L = lines_of(s.x, dim, op);
    s.reverse = reverse;
    return s;
}

std::vector<int64_t> scan_ints(const Scan& s) {
    return {g_scan_kind, s.dt, s.L.outer, s.L.n, s.L.inner, s.prod ? 1 : 0, s.reverse ? 1 : 0};
}

void scan_by_dtype(void* y, const void* x, const int64_t* i) {
    const bool prod = i[5] != 0, rev = i[6] != 0;
    switch (i[1]) {
        case kF32: scan(static_cast<float*>(y), static_cast<const float*>(x), i[2], i[3], i[4], prod, rev); break;
        case kF64: scan(static_cast<double*>(y), static_cast<const double*>(x), i[2], i[3], i[4], prod, rev); break;
        default: scan(static_cast<int64_t*>(y), static_cast<const int64_t*>(x), i[2], i[3], i[4], prod, rev); break;
    }
}

py::array scan_binding(const py::handle& x, int64_t dim, const std::string& op, bool reverse) {
    const Scan s = parse_scan(x, dim, op, reverse);
    py::array y(s.x.dtype(), std::vector<py::ssize_t>(s.L.shape.begin(), s.L.shape.end()));
    const std::vector<int64_t> ints = scan_ints(s);
    void* yp = y.mutable_data();
    const void* xp = s.x.data();
    {
        py::gil_scoped_release nogil;
        scan_by_dtype(yp, xp, ints.data());
    }
    return y;
}

py::tuple scan_args(const py::handle& x, int64_t dim, const std::string& op, bool reverse,
                    const py::handle& result) {
    const Scan s = parse_scan(x, dim, op, reverse);
    py::array y = as_array(result, "scan", "result");
    if (!y.dtype().equal(s.x.dtype())) type_error("scan: argument 'result' must have x's dtype");
    check_shape(y, "scan", "result", s.L.shape);
    return instr::instr_tuple({addr(y), addr(s.x)}, scan_ints(s), {}, s.dt == kF64, {s.x});
}

void scan_run(const Instr& in) { scan_by_dtype(in.p[0], in.p[1], in.i.data()); }

void scan_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t* i = in.i.data();
    const int64_t bytes = kItem[i[1]] * i[2] * i[3] * i[4];
    instr::operand(in, ops, 0, bytes, true);
    instr::operand(in, ops, 1, bytes, false);
}

int64_t scan_flops(const Instr& in) { return in.i[2] * in.i[3] * in.i[4]; }

bool scan_valid(size_t nptrs, const std::vector<int64_t>& i, size_t nreals) {
    if (!instr::layout_valid<2, 7, 0, 2, 5>(nptrs, i, nreals)) return false;
    return (i[1] == kF32 || i[1] == kF64 || i[1] == kI64) && (i[5] == 0 || i[5] == 1) &&
           (i[6] == 0 || i[6] == 1);
}

// ---- cumprod backward ----------------------------------------------------------------------

struct CumprodBwd {
    py::array g, x, y;
    bool f64 = false;
    Lines L;
};

CumprodBwd parse_cumprod_bwd(const py::handle& go, const py::handle& xo, const py::handle& yo,
                             int64_t dim) {
    const char* op = "cumprod_backward";
    CumprodBwd c;
    c.x = as_array(xo, op, "x");
    c.f64 = float_kind(c.x, op, "x") == 'd';
    instr::check_float_array(c.x, c.f64, op, "x");
    c.L = lines_of(c.x, dim, op);
    c.g = instr::checked_result(go, op, "grad", c.f64, c.L.shape);
    c.y = instr::checked_result(yo, op, "y", c.f64, c.L.shape);
    return c;
}

template <class T>
void cumprod_bwd_typed(void* dx, const void* g, const void* x, const void* y, const int64_t* i) {
    cumprod_backward(static_cast<T*>(dx), static_cast<const T*>(g), static_cast<const T*>(x),
                     static_cast<const T*>(y), i[0], i[1], i[2]);
}

py::array cumprod_bwd(const py::handle& g, const py::handle& x, const py::handle& y,
                      int64_t dim) {
    const CumprodBwd c = parse_cumprod_bwd(g, x, y, dim);
    py::array dx(c.x.dtype(), std::vector<py::ssize_t>(c.L.shape.begin(), c.L.shape.end()));
    const int64_t sizes[3] = {c.L.outer, c.L.n, c.L.inner};
    void* d = dx.mutable_data();
    const void *gp = c.g.data(), *xp = c.x.data(), *yp = c.y.data();
    {
        py::gil_scoped_release nogil;
        if (c.f64) cumprod_bwd_typed<double>(d, gp, xp, yp, sizes);
        else cumprod_bwd_typed<float>(d, gp, xp, yp, sizes);
    }
    return dx;
}

py::tuple cumprod_bwd_args(const py::handle& g, const py::handle& x, const py::handle& y,
                           int64_t dim, const py::handle& result) {
    const CumprodBwd c = parse_cumprod_bwd(g, x, y, dim);
    py::array dx = instr::checked_result(result, "cumprod_backward", "result", c.f64, c.L.shape);
    return instr::instr_tuple({addr(dx), addr(c.g), addr(c.x), addr(c.y)},
                              {g_cumprod_bwd_kind, c.L.outer, c.L.n, c.L.inner}, {}, c.f64,
                              {c.g, c.x, c.y});
}

void cumprod_bwd_run(const Instr& in) {
    const int64_t* i = in.i.data() + 1;
    if (in.f64) cumprod_bwd_typed<double>(in.p[0], in.p[1], in.p[2], in.p[3], i);
    else cumprod_bwd_typed<float>(in.p[0], in.p[1], in.p[2], in.p[3], i);
}

void cumprod_bwd_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t bytes = (in.f64 ? 8 : 4) * in.i[1] * in.i[2] * in.i[3];
    instr::operand(in, ops, 0, bytes, true);
    for (int k = 1; k <= 3; ++k) instr::operand(in, ops, k, bytes, false);
}

int64_t cumprod_bwd_flops(const Instr& in) { return 4 * in.i[1] * in.i[2] * in.i[3]; }

}  // namespace

void bind_sort(py::module_& m) {
    g_sort_kind = register_instr_kind({"sort", &sort_run, &sort_operands, &sort_flops, &sort_valid});
    g_scan_kind = register_instr_kind({"scan", &scan_run, &scan_operands, &scan_flops, &scan_valid});
    g_cumprod_bwd_kind = register_instr_kind(
        {"cumprod_backward", &cumprod_bwd_run, &cumprod_bwd_operands, &cumprod_bwd_flops,
         &instr::layout_valid<4, 4, 0, 1, 4>});
    m.def("sort", &sort, py::arg("x"), py::arg("dim"), py::arg("descending") = false,
          py::arg("k") = -1, py::arg("order") = "sorted",
          "(values, indices int64) of x (float32/float64/int32/int64, C-contiguous) along dim in "
          "a stable order (equal values keep their positions), ascending or descending, NaN the "
          "largest value, -0.0 equal to +0.0. k (-1: all) keeps the first k of that order; "
          "order='sorted' in that order, 'index' in the order of their positions along dim, "
          "'kth' only the k-th (1-based; size 1 along dim).");
    m.def("sort_args", &sort_args, py::arg("x"), py::arg("dim"), py::arg("descending") = false,
          py::arg("k") = -1, py::arg("order") = "sorted", py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for sort(...) = result.");
    m.def("scan", &scan_binding, py::arg("x"), py::arg("dim"), py::arg("op"),
          py::arg("reverse") = false,
          "The running sum (op='sum') or product ('prod') of x (float32/float64/int64, "
          "C-contiguous) along dim, from its start, or from its end (reverse=True), each "
          "accumulated in that order (int64 wraps around).");
    m.def("scan_args", &scan_args, py::arg("x"), py::arg("dim"), py::arg("op"),
          py::arg("reverse") = false, py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for scan(...) = result.");
    m.def("cumprod_backward", &cumprod_bwd, py::arg("grad"), py::arg("x"), py::arg("y"),
          py::arg("dim"),
          "The gradient of cumprod along dim: grad, x and y = cumprod(x) of one shape and dtype "
          "(float32/float64, C-contiguous) -> dx, exact with zeros in x.");
    m.def("cumprod_backward_args", &cumprod_bwd_args, py::arg("grad"), py::arg("x"),
          py::arg("y"), py::arg("dim"), py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for cumprod_backward(...) = result.");
    add_record_args(m, {{"sort", "sort_args"},
                        {"scan", "scan_args"},
                        {"cumprod_backward", "cumprod_backward_args"}});
}

}  // namespace bind
}  // namespace gd

// Bindings for convolution and pooling (conv.hpp). The Python layer (functional/conv.py) checks
// the arguments against PyTorch's rules and computes the output sizes and pooling windows; these
// bindings check again everything a kernel could read or write out of bounds with.
#include <algorithm>
#include <cstring>

#include <pybind11/stl.h>

#include "bind_common.hpp"
#include "conv.hpp"
#include "kernels.hpp"

namespace gd {
namespace bind {
namespace {

// The conv table of the ISA whose KernelTable is active.
const ConvKernels& conv_table() {
    const char* isa = active_kernels().isa;
#if GD_BUILT_AVX512
    if (std::strcmp(isa, "avx512") == 0) return conv_kernels_avx512();
#endif
#if GD_BUILT_AVX2
    if (std::strcmp(isa, "avx2") == 0) return conv_kernels_avx2();
#endif
#if GD_BUILT_NEON
    if (std::strcmp(isa, "neon") == 0) return conv_kernels_neon();
#endif
    (void)isa;
    return conv_kernels_baseline();
}

template <class T>
const ConvTable<T>& ck();
template <>
const ConvTable<float>& ck<float>() { return conv_table().f32; }
template <>
const ConvTable<double>& ck<double>() { return conv_table().f64; }

std::string s(int64_t v) { return std::to_string(v); }

// x (N, C, H, W), w (OC, C/G, KH, KW) and the geometry -> a checked ConvShape
ConvShape conv_shape(const py::array& x, const py::array& w, const std::vector<int64_t>& stride,
                     const std::vector<int64_t>& pad, const std::vector<int64_t>& dil,
                     int64_t groups, const std::vector<int64_t>& out_hw, const char* op) {
    check_ndim(x, op, "input", 4, 4);
    check_ndim(w, op, "weight", 4, 4);
    if (stride.size() != 2 || pad.size() != 2 || dil.size() != 2 || out_hw.size() != 2)
        value_error(std::string(op) + ": stride, padding, dilation and output size need 2 values");
    ConvShape c{};
    c.N = x.shape(0), c.C = x.shape(1), c.H = x.shape(2), c.W = x.shape(3);
    c.OC = w.shape(0), c.KH = w.shape(2), c.KW = w.shape(3), c.G = groups;
    c.SH = stride[0], c.SW = stride[1], c.PH = pad[0], c.PW = pad[1], c.DH = dil[0], c.DW = dil[1];
    c.OH = out_hw[0], c.OW = out_hw[1];
    if (c.G < 1 || c.C % c.G != 0 || c.OC % c.G != 0)
        value_error(std::string(op) + ": groups=" + s(c.G) + " must divide in_channels=" + s(c.C) +
                    " and out_channels=" + s(c.OC));
    if (w.shape(1) != c.C / c.G)
        value_error(std::string(op) + ": weight " + shape_str(shape_of(w)) + " expects " +
                    s(w.shape(1) * c.G) + " input channels, input " + shape_str(shape_of(x)) +
                    " has " + s(c.C));
    if (c.SH < 1 || c.SW < 1 || c.DH < 1 || c.DW < 1 || c.PH < 0 || c.PW < 0 || c.OH < 0 ||
        c.OW < 0 || c.KH < 1 || c.KW < 1)
        value_error(std::string(op) + ": stride and dilation must be >= 1, padding >= 0, kernel "
                    "nonempty");
    // every output position's window starts at most one stride past the padded input's end:
    // out size <= (H + PH + PH_far - DH (KH - 1) - 1) / SH + 1 with PH_far <= DH (KH - 1)
    if (c.OH > 0 && (c.OH - 1) * c.SH - c.PH > c.H + c.DH * (c.KH - 1))
        value_error(std::string(op) + ": output height " + s(c.OH) + " is too large");
    if (c.OW > 0 && (c.OW - 1) * c.SW - c.PW > c.W + c.DW * (c.KW - 1))
        value_error(std::string(op) + ": output width " + s(c.OW) + " is too large");
    return c;
}

py::array conv2d_forward(const py::handle& xo, const py::handle& wo, const py::handle& bo,
                         std::vector<int64_t> stride, std::vector<int64_t> pad,
                         std::vector<int64_t> dil, int64_t groups, std::vector<int64_t> out_hw,
                         bool relu) {
    const char* op = "conv2d";
    py::array x = as_array(xo, op, "input"), w = as_array(wo, op, "weight");
    return dispatch_float(x, op, "input", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "input");
        check_array<T>(w, op, "weight");
        const ConvShape c = conv_shape(x, w, stride, pad, dil, groups, out_hw, op);
        const T* bp = nullptr;
        py::array b;
        if (!bo.is_none()) {
            b = as_array(bo, op, "bias");
            check_array<T>(b, op, "bias");
            check_shape(b, op, "bias", {c.OC});
            bp = in_ptr<T>(b);
        }
        py::array y = new_array<T>({c.N, c.OC, c.OH, c.OW});
        T* yp = out_ptr<T>(y);
        const T *xp = in_ptr<T>(x), *wp = in_ptr<T>(w);
        {
            py::gil_scoped_release nogil;
            ck<T>().conv2d_forward(yp, xp, wp, bp, c, relu);
        }
        return y;
    });
}

py::array conv2d_forward_naive(const py::handle& xo, const py::handle& wo, const py::handle& bo,
                               std::vector<int64_t> stride, std::vector<int64_t> pad,
                               std::vector<int64_t> dil, int64_t groups,
                               std::vector<int64_t> out_hw) {
    const char* op = "conv2d_naive";
    py::array x = as_array(xo, op, "input"), w = as_array(wo, op, "weight");
    return dispatch_float(x, op, "input", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "input");
        check_array<T>(w, op, "weight");
        const ConvShape c = conv_shape(x, w, stride, pad, dil, groups, out_hw, op);
        const T* bp = nullptr;
        py::array b;
        if (!bo.is_none()) {
            b = as_array(bo, op, "bias");
            check_array<T>(b, op, "bias");
            check_shape(b, op, "bias", {c.OC});
            bp = in_ptr<T>(b);
        }
        py::array y = new_array<T>({c.N, c.OC, c.OH, c.OW});
        ck<T>().conv2d_forward_naive(out_ptr<T>(y), in_ptr<T>(x), in_ptr<T>(w), bp, c);
        return y;
    });
}

py::tuple conv2d_backward(const py::handle& dyo, const py::handle& xo, const py::handle& wo,
                          std::vector<int64_t> stride, std::vector<int64_t> pad,
                          std::vector<int64_t> dil, int64_t groups, bool need_dx, bool need_dw,
                          bool need_db) {
    const char* op = "conv2d_backward";
    py::array dy = as_array(dyo, op, "grad_output"), x = as_array(xo, op, "input"),
              w = as_array(wo, op, "weight");
    return dispatch_float(x, op, "input", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "input");
        check_array<T>(w, op, "weight");
        check_array<T>(dy, op, "grad_output");
        check_ndim(dy, op, "grad_output", 4, 4);
        const ConvShape c = conv_shape(x, w, stride, pad, dil, groups,
                                       {int64_t(dy.shape(2)), int64_t(dy.shape(3))}, op);
        check_shape(dy, op, "grad_output", {c.N, c.OC, c.OH, c.OW});
        py::object dx = py::none(), dw = py::none(), db = py::none();
        T *dxp = nullptr, *dwp = nullptr, *dbp = nullptr;
        if (need_dx) {
            py::array a = new_array<T>(shape_of(x));
            dxp = out_ptr<T>(a);
            dx = a;
        }
        if (need_dw) {
            py::array a = new_array<T>(shape_of(w));
            dwp = out_ptr<T>(a);
            dw = a;
        }
        if (need_db) {
            py::array a = new_array<T>({c.OC});
            dbp = out_ptr<T>(a);
            db = a;
        }
        const T *dyp = in_ptr<T>(dy), *xp = in_ptr<T>(x), *wp = in_ptr<T>(w);
        {
            py::gil_scoped_release nogil;
            ck<T>().conv2d_backward(dxp, dwp, dbp, dyp, xp, wp, c);
        }
        return py::make_tuple(dx, dw, db);
    });
}

// Window arrays: int64, 1-d, of the output size; every window inside the input.
PoolShape pool_shape(const py::array& x, const py::array& hs, const py::array& hn,
                     const py::array& ws, const py::array& wn, int64_t dh, int64_t dw,
                     bool nonempty, const char* op) {
    check_ndim(x, op, "input", 4, 4);
    for (auto* a : {&hs, &hn, &ws, &wn}) {
        check_array<int64_t>(*a, op, "window");
        check_ndim(*a, op, "window", 1, 1);
    }
    PoolShape p{};
    p.P = x.shape(0) * x.shape(1), p.H = x.shape(2), p.W = x.shape(3);
    p.OH = hs.shape(0), p.OW = ws.shape(0), p.DH = dh, p.DW = dw;
    if (hn.shape(0) != p.OH || wn.shape(0) != p.OW || dh < 1 || dw < 1)
        value_error(std::string(op) + ": inconsistent pooling windows");
    p.hs = in_ptr<int64_t>(hs), p.hn = in_ptr<int64_t>(hn);
    p.ws = in_ptr<int64_t>(ws), p.wn = in_ptr<int64_t>(wn);
    for (int64_t i = 0; i < p.OH; ++i)
        if (p.hs[i] < 0 || p.hn[i] < (nonempty ? 1 : 0) ||
            (p.hn[i] > 0 && p.hs[i] + (p.hn[i] - 1) * dh >= p.H))
            value_error(std::string(op) + ": pooling window of output row " + s(i) +
                        " lies outside the input");
    for (int64_t i = 0; i < p.OW; ++i)
        if (p.ws[i] < 0 || p.wn[i] < (nonempty ? 1 : 0) ||
            (p.wn[i] > 0 && p.ws[i] + (p.wn[i] - 1) * dw >= p.W))
            value_error(std::string(op) + ": pooling window of output column " + s(i) +
                        " lies outside the input");
    return p;
}

void check_divisor(const py::array& div, const char* op) {
    const int64_t* d = in_ptr<int64_t>(div);
    for (py::ssize_t i = 0; i < div.shape(0); ++i)
        if (d[i] < 1) value_error(std::string(op) + ": divisor must be >= 1, got " + s(d[i]));
}

py::tuple maxpool2d_forward(const py::handle& xo, const py::array& hs, const py::array& hn,
                            const py::array& ws, const py::array& wn, int64_t dh, int64_t dw) {
    const char* op = "max_pool2d";
    py::array x = as_array(xo, op, "input");
    return dispatch_float(x, op, "input", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "input");
        const PoolShape p = pool_shape(x, hs, hn, ws, wn, dh, dw, true, op);
        py::array y = new_array<T>({int64_t(x.shape(0)), int64_t(x.shape(1)), p.OH, p.OW});
        py::array idx = new_array<int64_t>({int64_t(x.shape(0)), int64_t(x.shape(1)), p.OH, p.OW});
        T* yp = out_ptr<T>(y);
        int64_t* ip = out_ptr<int64_t>(idx);
        const T* xp = in_ptr<T>(x);
        {
            py::gil_scoped_release nogil;
            ck<T>().maxpool2d_forward(yp, ip, xp, p);
        }
        return py::make_tuple(y, idx);
    });
}

py::array maxpool2d_backward(const py::handle& dyo, const py::array& idx,
                             std::vector<int64_t> in_shape) {
    const char* op = "max_pool2d_backward";
    py::array dy = as_array(dyo, op, "grad_output");
    return dispatch_float(dy, op, "grad_output", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(dy, op, "grad_output");
        check_array<int64_t>(idx, op, "indices");
        check_ndim(dy, op, "grad_output", 4, 4);
        if (in_shape.size() != 4 || in_shape[0] != dy.shape(0) || in_shape[1] != dy.shape(1))
            value_error(std::string(op) + ": input shape does not match grad_output");
        check_shape(idx, op, "indices", shape_of(dy));
        PoolShape p{};
        p.P = in_shape[0] * in_shape[1], p.H = in_shape[2], p.W = in_shape[3];
        p.OH = dy.shape(2), p.OW = dy.shape(3);
        const int64_t* ip = in_ptr<int64_t>(idx);
        const int64_t n = p.P * p.OH * p.OW, plane = p.H * p.W;
        for (int64_t i = 0; i < n; ++i)
            if (ip[i] < 0 || ip[i] >= plane)
                value_error(std::string(op) + ": index " + s(ip[i]) + " out of range for an " +
                            s(p.H) + " x " + s(p.W) + " plane");
        py::array dx = new_array<T>(in_shape);
        T* dxp = out_ptr<T>(dx);
        const T* dyp = in_ptr<T>(dy);
        {
            py::gil_scoped_release nogil;
            ck<T>().maxpool2d_backward(dxp, dyp, ip, p);
        }
        return dx;
    });
}

py::array avgpool2d_forward(const py::handle& xo, const py::array& hs, const py::array& hn,
                            const py::array& ws, const py::array& wn, const py::array& div) {
    const char* op = "avg_pool2d";
    py::array x = as_array(xo, op, "input");
    return dispatch_float(x, op, "input", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "input");
        const PoolShape p = pool_shape(x, hs, hn, ws, wn, 1, 1, false, op);
        check_array<int64_t>(div, op, "divisor");
        check_shape(div, op, "divisor", {p.OH * p.OW});
        check_divisor(div, op);
        py::array y = new_array<T>({int64_t(x.shape(0)), int64_t(x.shape(1)), p.OH, p.OW});
        T* yp = out_ptr<T>(y);
        const T* xp = in_ptr<T>(x);
        const int64_t* dp = in_ptr<int64_t>(div);
        {
            py::gil_scoped_release nogil;
            ck<T>().avgpool2d_forward(yp, xp, dp, p);
        }
        return y;
    });
}

py::array avgpool2d_backward(const py::handle& dyo, std::vector<int64_t> in_shape,
                             const py::array& hs, const py::array& hn, const py::array& ws,
                             const py::array& wn, const py::array& div) {
    const char* op = "avg_pool2d_backward";
    py::array dy = as_array(dyo, op, "grad_output");
    return dispatch_float(dy, op, "grad_output", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(dy, op, "grad_output");
        if (in_shape.size() != 4) value_error(std::string(op) + ": input shape must have 4 values");
        py::array dx = new_array<T>(in_shape);
        const PoolShape p = pool_shape(dx, hs, hn, ws, wn, 1, 1, false, op);
        check_shape(dy, op, "grad_output", {in_shape[0], in_shape[1], p.OH, p.OW});
        check_array<int64_t>(div, op, "divisor");
        check_shape(div, op, "divisor", {p.OH * p.OW});
        check_divisor(div, op);
        T* dxp = out_ptr<T>(dx);
        const T* dyp = in_ptr<T>(dy);
        const int64_t* dp = in_ptr<int64_t>(div);
        {
            py::gil_scoped_release nogil;
            ck<T>().avgpool2d_backward(dxp, dyp, dp, p);
        }
        return dx;
    });
}

}  // namespace

void bind_conv(py::module_& m) {
    m.def("conv2d_forward", &conv2d_forward, py::arg("input"), py::arg("weight"), py::arg("bias"),
          py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
          py::arg("out_size"), py::arg("relu") = false,
          "y (N, OC, OH, OW) of a 2-d convolution (padding: zeros before row 0 / column 0).");
    m.def("conv2d_forward_naive", &conv2d_forward_naive, py::arg("input"), py::arg("weight"),
          py::arg("bias"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
          py::arg("groups"), py::arg("out_size"), "conv2d_forward as plain loops (for tests).");
    m.def("conv2d_backward", &conv2d_backward, py::arg("grad_output"), py::arg("input"),
          py::arg("weight"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
          py::arg("groups"), py::arg("need_dx") = true, py::arg("need_dw") = true,
          py::arg("need_db") = true, "(dx, dw, db) of conv2d_forward; unneeded ones are None.");
    m.def("maxpool2d_forward", &maxpool2d_forward, py::arg("input"), py::arg("hs"), py::arg("hn"),
          py::arg("ws"), py::arg("wn"), py::arg("dh"), py::arg("dw"),
          "(y, indices) of a max pool over the given windows.");
    m.def("maxpool2d_backward", &maxpool2d_backward, py::arg("grad_output"), py::arg("indices"),
          py::arg("input_shape"), "dx of a max pool from its indices.");
    m.def("avgpool2d_forward", &avgpool2d_forward, py::arg("input"), py::arg("hs"), py::arg("hn"),
          py::arg("ws"), py::arg("wn"), py::arg("divisor"), "An average pool over the windows.");
    m.def("avgpool2d_backward", &avgpool2d_backward, py::arg("grad_output"),
          py::arg("input_shape"), py::arg("hs"), py::arg("hn"), py::arg("ws"), py::arg("wn"),
          py::arg("divisor"), "dx of avgpool2d_forward.");
}

}  // namespace bind

// ---- gd.compile's "conv" instruction (conv.hpp) ----
namespace {

ConvShape instr_shape(const std::vector<int64_t>& i) {
    ConvShape c{};
    static_assert(sizeof(ConvShape) == kConvInts * sizeof(int64_t), "ConvShape layout");
    std::memcpy(&c, i.data() + 1, sizeof(ConvShape));
    return c;
}

PoolShape instr_pool(const std::vector<int64_t>& i) {
    PoolShape p{};
    p.P = i[1], p.H = i[2], p.W = i[3], p.OH = i[4], p.OW = i[5], p.DH = i[6], p.DW = i[7];
    const int64_t* w = i.data() + 8;
    p.hs = w, p.hn = w + p.OH, p.ws = w + 2 * p.OH, p.wn = w + 2 * p.OH + p.OW;
    return p;
}

const int64_t* instr_div(const std::vector<int64_t>& i) { return i.data() + 8 + 2 * i[4] + 2 * i[5]; }

template <class T>
void run_instr(const std::vector<void*>& p, const std::vector<int64_t>& i) {
    const ConvTable<T>& K = bind::ck<T>();
    auto P = [&](size_t k) { return static_cast<T*>(p[k]); };
    switch (static_cast<ConvKind>(i[0])) {
        case ConvKind::fwd: K.conv2d_forward(P(0), P(1), P(2), P(3), instr_shape(i), i[17] != 0); break;
        case ConvKind::bwd: K.conv2d_backward(P(0), P(1), P(2), P(3), P(4), P(5), instr_shape(i)); break;
        case ConvKind::max_fwd:
            K.maxpool2d_forward(P(0), static_cast<int64_t*>(p[1]), P(2), instr_pool(i));
            break;
        case ConvKind::max_bwd:
            K.maxpool2d_backward(P(0), P(1), static_cast<const int64_t*>(p[2]), instr_pool(i));
            break;
        case ConvKind::avg_fwd: K.avgpool2d_forward(P(0), P(1), instr_div(i), instr_pool(i)); break;
        case ConvKind::avg_bwd: K.avgpool2d_backward(P(0), P(1), instr_div(i), instr_pool(i)); break;
    }
}

}  // namespace

bool conv_instr_valid(size_t nptrs, const std::vector<int64_t>& i) {
    if (i.empty() || i[0] < 0 || i[0] > 5) return false;
    const auto kind = static_cast<ConvKind>(i[0]);
    if (kind == ConvKind::fwd || kind == ConvKind::bwd) {
        if (i.size() != static_cast<size_t>(1 + kConvInts + (kind == ConvKind::fwd)) ||
            nptrs != (kind == ConvKind::fwd ? 4u : 6u))
            return false;
        const ConvShape c = instr_shape(i);
        return c.N >= 0 && c.C >= 1 && c.H >= 0 && c.W >= 0 && c.OC >= 0 && c.KH >= 1 &&
               c.KW >= 1 && c.G >= 1 && c.C % c.G == 0 && c.OC % c.G == 0 && c.SH >= 1 &&
               c.SW >= 1 && c.PH >= 0 && c.PW >= 0 && c.DH >= 1 && c.DW >= 1 && c.OH >= 0 &&
               c.OW >= 0;
    }
    if (i.size() < 8 || i[4] < 0 || i[5] < 0 || i[6] < 1 || i[7] < 1 || i[1] < 0 || i[2] < 0 ||
        i[3] < 0)
        return false;
    const bool avg = kind == ConvKind::avg_fwd || kind == ConvKind::avg_bwd;
    const size_t want = static_cast<size_t>(8 + 2 * i[4] + 2 * i[5] + (avg ? i[4] * i[5] : 0));
    if (i.size() != want || nptrs != (avg ? 2u : 3u)) return false;
    const PoolShape s = instr_pool(i);
    for (int64_t k = 0; k < s.OH; ++k)
        if (s.hs[k] < 0 || s.hn[k] < (avg ? 0 : 1) || (s.hn[k] > 0 && s.hs[k] + (s.hn[k] - 1) * s.DH >= s.H))
            return false;
    for (int64_t k = 0; k < s.OW; ++k)
        if (s.ws[k] < 0 || s.wn[k] < (avg ? 0 : 1) || (s.wn[k] > 0 && s.ws[k] + (s.wn[k] - 1) * s.DW >= s.W))
            return false;
    if (avg)
        for (int64_t k = 0; k < s.OH * s.OW; ++k)
            if (instr_div(i)[k] < 1) return false;
    return true;
}

void conv_instr_run(const std::vector<void*>& p, const std::vector<int64_t>& i, bool f64) {
    if (f64) run_instr<double>(p, i);
    else run_instr<float>(p, i);
}

std::vector<ConvOperand> conv_instr_operands(const std::vector<void*>& p,
                                             const std::vector<int64_t>& i, int64_t e) {
    std::vector<ConvOperand> ops;
    auto add = [&](int slot, int64_t bytes, bool read, bool write) {
        if (p[static_cast<size_t>(slot)] != nullptr && bytes > 0) ops.push_back({slot, bytes, read, write});
    };
    const auto kind = static_cast<ConvKind>(i[0]);
    if (kind == ConvKind::fwd || kind == ConvKind::bwd) {
        const ConvShape c = instr_shape(i);
        const int64_t xs = c.N * c.C * c.H * c.W, ys = c.N * c.OC * c.OH * c.OW;
        const int64_t ws = c.OC * (c.C / c.G) * c.KH * c.KW;
        if (kind == ConvKind::fwd) {
            add(0, e * ys, false, true);
            add(1, e * xs, true, false);
            add(2, e * ws, true, false);
            add(3, e * c.OC, true, false);
        } else {
            add(0, e * xs, false, true);
            add(1, e * ws, false, true);
            add(2, e * c.OC, false, true);
            add(3, e * ys, true, false);
            if (p[1] != nullptr) add(4, e * xs, true, false);
            if (p[0] != nullptr) add(5, e * ws, true, false);
        }
        return ops;
    }
    const int64_t in = i[1] * i[2] * i[3], out = i[1] * i[4] * i[5];
    switch (kind) {
        case ConvKind::max_fwd: add(0, e * out, false, true); add(1, 8 * out, false, true); add(2, e * in, true, false); break;
        case ConvKind::max_bwd: add(0, e * in, false, true); add(1, e * out, true, false); add(2, 8 * out, true, false); break;
        default: add(0, e * (kind == ConvKind::avg_fwd ? out : in), false, true);
                 add(1, e * (kind == ConvKind::avg_fwd ? in : out), true, false);
    }
    return ops;
}

bool conv_fwd_relu_fusable(const std::vector<int64_t>& i, int64_t elems) {
    if (i.size() != static_cast<size_t>(2 + kConvInts) || i[0] != static_cast<int64_t>(ConvKind::fwd) ||
        i[1 + kConvInts] != 0)
        return false;
    const ConvShape c = instr_shape(i);
    return elems > 0 && c.N * c.OC * c.OH * c.OW == elems;
}

int64_t conv_instr_flops(const std::vector<void*>& p, const std::vector<int64_t>& i) {
    const auto kind = static_cast<ConvKind>(i[0]);
    if (kind == ConvKind::fwd || kind == ConvKind::bwd) {
        const ConvShape c = instr_shape(i);
        const int64_t f = 2 * c.N * c.OC * (c.C / c.G) * c.KH * c.KW * c.OH * c.OW;
        return kind == ConvKind::fwd ? f : f * ((p[0] != nullptr) + (p[1] != nullptr));
    }
    return i[1] * std::max(i[2] * i[3], i[4] * i[5]);
}

}  // namespace gd

// Convolution and pooling (conv.hpp). A convolution is a matrix product per sample and group:
// the input patches are unrolled into columns (im2col, into a per-thread buffer that is kept
// between calls), then
//   forward      y_g (OC/G, L)  = W_g (OC/G, CK) cols (CK, L)          [+ bias, ReLU: epilogue]
//   input grad   dcols (CK, L)  = W_g^T dy_g, scattered back (col2im)
//   weight grad  dW_g (OC/G, CK) += dy_g cols^T
// with CK = C/G * KH * KW and L = OH * OW; a group of samples side by side in the columns when L
// is small (group_size), so that one product covers the group. A 1x1 convolution with stride 1
// and no padding reads the input as its columns. Groups are independent in the forward and the
// input gradient; the weight gradient sums groups in fixed chunks (their count depends on the
// shape only), then adds the chunks' partial sums in chunk order: bitwise the same for any
// thread count.
#include "conv.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "gemm.hpp"
#include "gemm/simd.hpp"
#include "parallel.hpp"

namespace gd {
namespace GD_NS {
namespace {

// A growable buffer per thread and slot, kept for the next call.
template <class T>
T* buffer(int slot, int64_t n) {
    thread_local std::vector<T> bufs[6];
    auto& b = bufs[slot];
    if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
    return b.data();
}

// out[0, n) = in[0, n) and out[0, n) = 0 in vectors (rows of small images are a few values
// long: a memcpy or memset call, which GCC also makes of a plain copy loop, cost more than the
// copy itself).
template <class T>
inline void copy_row(T* GD_RESTRICT out, const T* GD_RESTRICT in, int64_t n) {
    using V = gemm_detail::Simd<T>;
    int64_t j = 0;
    for (; j + V::L <= n; j += V::L) V::store(out + j, V::load(in + j));
    if (j < n) {
        const auto m = V::first(n - j);
        V::store(out + j, V::load(in + j, m), m);
    }
}

template <class T>
inline void zero_row(T* out, int64_t n) {
    using V = gemm_detail::Simd<T>;
    int64_t j = 0;
    for (; j + V::L <= n; j += V::L) V::store(out + j, V::zero());
    if (j < n) V::store(out + j, V::zero(), V::first(n - j));
}

// rows of n values: out + r * ldo = in + r * ldi for r < rows
template <class T>
inline void copy_rows_strided(T* GD_RESTRICT out, int64_t ldo, const T* GD_RESTRICT in,
                              int64_t ldi, int64_t n, int64_t rows) {
    for (int64_t r = 0; r < rows; ++r) copy_row(out + r * ldo, in + r * ldi, n);
}

inline bool is_pointwise(const ConvShape& s) {
    return s.KH == 1 && s.KW == 1 && s.SH == 1 && s.SW == 1 && s.PH == 0 && s.PW == 0 &&
           s.OH == s.H && s.OW == s.W;
}

// x (Cg, H, W) of one sample and group -> cols (Cg * KH * KW, OH * OW), rows ld apart
template <class T>
void im2col(T* GD_RESTRICT cols, const T* GD_RESTRICT x, int64_t Cg, const ConvShape& s,
            int64_t ld) {
    const int64_t L = ld;
    for (int64_t c = 0; c < Cg; ++c)
        for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw) {
                T* row = cols + ((c * s.KH + kh) * s.KW + kw) * L;
                const T* plane = x + c * s.H * s.W;
                // columns ow with 0 <= ow * SW - PW + kw * DW < W: [ow0, ow1)
                const int64_t off = kw * s.DW - s.PW;
                int64_t ow0 = off >= 0 ? 0 : (-off + s.SW - 1) / s.SW;
                int64_t ow1 = s.W - off <= 0 ? 0 : (s.W - off + s.SW - 1) / s.SW;
                ow0 = std::min(ow0, s.OW);
                ow1 = std::max(ow0, std::min(ow1, s.OW));
                for (int64_t oh = 0; oh < s.OH; ++oh) {
                    T* out = row + oh * s.OW;
                    const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
                    if (ih < 0 || ih >= s.H) {
                        zero_row(out, s.OW);
                        continue;
                    }
                    const T* in = plane + ih * s.W + off;
                    zero_row(out, ow0);
                    if (s.SW == 1) {
                        copy_row(out + ow0, in + ow0, ow1 - ow0);
                    } else {
                        for (int64_t ow = ow0; ow < ow1; ++ow) out[ow] = in[ow * s.SW];
                    }
                    zero_row(out + ow1, s.OW - ow1);
                }
            }
}

// Rows of n values: out + r * n = in + r * stride for r < rows, the tail mask made once.
template <class T>
inline void copy_rows(T* GD_RESTRICT out, const T* GD_RESTRICT in, int64_t n, int64_t rows,
                      int64_t stride) {
    using V = gemm_detail::Simd<T>;
    if (n == V::L || n > 2 * V::L) {
        for (int64_t r = 0; r < rows; ++r) copy_row(out + r * n, in + r * stride, n);
        return;
    }
    // n < L or L < n <= 2L: at most one full vector and one masked one per row
    const bool two = n > V::L;
    const auto m = V::first(two ? n - V::L : n);
    for (int64_t r = 0; r < rows; ++r) {
        const T* i = in + r * stride;
        T* o = out + r * n;
        if (two) {
            V::store(o, V::load(i));
            V::store(o + V::L, V::load(i + V::L, m), m);
        } else {
            V::store(o, V::load(i, m), m);
        }
    }
}

// out + r * stride += in + r * n for r < rows (each element one addition, in row order).
template <class T>
inline void add_rows(T* GD_RESTRICT out, const T* GD_RESTRICT in, int64_t n, int64_t rows,
                     int64_t stride) {
    for (int64_t r = 0; r < rows; ++r) {
        T* GD_RESTRICT o = out + r * stride;
        const T* GD_RESTRICT i = in + r * n;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) o[j] += i[j];
    }
}

// Stride 1 along the width: every row of the columns is OH copies of OW consecutive values of a
// plane, read without the per-row range tests and zero fills of im2col (on 8x8 planes those cost
// more than the copies). With zero padding (or a far side past the input) a sample's planes are
// first copied into a zeroed buffer with the padding in place (Cg, Hp, Wp); without, the input
// planes are read in place. col2im likewise adds into such a buffer (then copies its interior
// out) or into dx itself. Only where values are read from changes, not which values nor the
// order of the additions: the results are bitwise those of im2col / col2im.
struct Padded {
    int64_t Hp, Wp;  // the padded plane: rows -PH .. Hp - PH - 1 of the input, likewise columns
    int64_t h, w;    // input rows / columns inside it: [0, h) x [0, w)
    bool copy;       // a padded copy is needed (else the planes are read in place)
    int64_t ps, rs;  // plane and row stride of what the rows are read from
};

inline bool use_padded(const ConvShape& s) { return s.SW == 1; }

inline Padded padded_plane(const ConvShape& s) {
    Padded p{};
    p.Hp = (s.OH - 1) * s.SH + (s.KH - 1) * s.DH + 1;
    p.Wp = (s.OW - 1) * s.SW + (s.KW - 1) * s.DW + 1;
    p.h = std::max<int64_t>(0, std::min(s.H, p.Hp - s.PH));
    p.w = std::max<int64_t>(0, std::min(s.W, p.Wp - s.PW));
    p.copy = s.PH > 0 || s.PW > 0 || p.Hp > s.H || p.Wp > s.W;
    p.ps = p.copy ? p.Hp * p.Wp : s.H * s.W;
    p.rs = p.copy ? p.Wp : s.W;
    return p;
}

// x (Cg, H, W) -> the interior of xp (Cg, Hp, Wp), whose border is zero already
template <class T>
void pad_planes(T* GD_RESTRICT xp, const T* GD_RESTRICT x, int64_t Cg, const ConvShape& s,
                const Padded& p) {
    if (p.w == 0) return;
    for (int64_t c = 0; c < Cg; ++c)
        copy_rows_strided(xp + c * p.Hp * p.Wp + s.PH * p.Wp + s.PW, p.Wp, x + c * s.H * s.W, s.W,
                          p.w, p.h);
}

// the columns (rows ld apart) of one sample from its padded planes
template <class T>
void im2col_padded(T* GD_RESTRICT cols, const T* GD_RESTRICT xp, int64_t Cg, const ConvShape& s,
                   const Padded& p, int64_t ld) {
    for (int64_t c = 0; c < Cg; ++c)
        for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw)
                copy_rows(cols + ((c * s.KH + kh) * s.KW + kw) * ld,
                          xp + c * p.ps + kh * s.DH * p.rs + kw * s.DW, s.OW, s.OH, s.SH * p.rs);
}

// dxp (Cg, Hp, Wp) += the columns' entries (dxp zeroed by the caller), in col2im's order
template <class T>
void col2im_padded(T* GD_RESTRICT dxp, const T* GD_RESTRICT cols, int64_t Cg, const ConvShape& s,
                   const Padded& p, int64_t ld) {
    for (int64_t c = 0; c < Cg; ++c)
        for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw)
                add_rows(dxp + c * p.ps + kh * s.DH * p.rs + kw * s.DW,
                         cols + ((c * s.KH + kh) * s.KW + kw) * ld, s.OW, s.OH, s.SH * p.rs);
}

// dx (Cg, H, W) += the columns' entries (rows ld apart) at the positions they were read from
// (dx zeroed first by the caller); the order of the additions is fixed by the loops.
template <class T>
void col2im(T* GD_RESTRICT dx, const T* GD_RESTRICT cols, int64_t Cg, const ConvShape& s,
            int64_t ld) {
    const int64_t L = ld;
    for (int64_t c = 0; c < Cg; ++c)
        for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw) {
                const T* row = cols + ((c * s.KH + kh) * s.KW + kw) * L;
                T* plane = dx + c * s.H * s.W;
                const int64_t off = kw * s.DW - s.PW;
                int64_t ow0 = off >= 0 ? 0 : (-off + s.SW - 1) / s.SW;
                int64_t ow1 = s.W - off <= 0 ? 0 : (s.W - off + s.SW - 1) / s.SW;
                ow0 = std::min(ow0, s.OW);
                ow1 = std::max(ow0, std::min(ow1, s.OW));
                for (int64_t oh = 0; oh < s.OH; ++oh) {
                    const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
                    if (ih < 0 || ih >= s.H) continue;
                    const T* in = row + oh * s.OW;
                    T* out = plane + ih * s.W + off;
                    if (s.SW == 1) {
#pragma omp simd
                        for (int64_t ow = ow0; ow < ow1; ++ow) out[ow] += in[ow];
                    } else {
                        for (int64_t ow = ow0; ow < ow1; ++ow) out[ow * s.SW] += in[ow];
                    }
                }
            }
}

// The columns of samples n0 .. n0 + cnt - 1 of group g side by side (sample j from column j * L),
// rows ld apart: im2col, or through the padded planes (use_padded).
template <class T>
void unroll_group(T* cols, const T* x, int64_t n0, int64_t cnt, int64_t g, const ConvShape& s,
                  int64_t ld) {
    const int64_t Cg = s.C / s.G, L = s.OH * s.OW;
    if (use_padded(s)) {
        const Padded p = padded_plane(s);
        if (!p.copy) {
            for (int64_t j = 0; j < cnt; ++j)
                im2col_padded(cols + j * L, x + ((n0 + j) * s.C + g * Cg) * s.H * s.W, Cg, s, p,
                              ld);
            return;
        }
        T* xp = buffer<T>(4, Cg * p.Hp * p.Wp);
        zero_row(xp, Cg * p.Hp * p.Wp);  // the border; the interior is written per sample
        for (int64_t j = 0; j < cnt; ++j) {
            pad_planes(xp, x + ((n0 + j) * s.C + g * Cg) * s.H * s.W, Cg, s, p);
            im2col_padded(cols + j * L, xp, Cg, s, p, ld);
        }
        return;
    }
    for (int64_t j = 0; j < cnt; ++j)
        im2col(cols + j * L, x + ((n0 + j) * s.C + g * Cg) * s.H * s.W, Cg, s, ld);
}

// Samples per GEMM: enough that a product has about kGroupColumns columns (a small image's
// product alone is too narrow for the GEMM's micro-kernels to run at speed); fixed by the shape.
inline int64_t group_size(const ConvShape& s) {
    constexpr int64_t kGroupColumns = 512;
    const int64_t L = std::max<int64_t>(1, s.OH * s.OW);
    return std::max<int64_t>(1, std::min(s.N, kGroupColumns / L));
}

// The row stride of the group's column buffers (cols, dcols, a group's y and dy) for rows of n
// values: an odd number of cache lines. A stride of a power of two bytes (512 columns of floats:
// 2 KiB) put the rows a micro-kernel reads together into a few L1 sets, which evicted each other.
// Only the strides change; the products (and their bits) do not.
template <class T>
inline int64_t padded_ld(int64_t n) {
    constexpr int64_t line = 64 / static_cast<int64_t>(sizeof(T));
    int64_t lines = (n + line - 1) / line;
    if (lines % 2 == 0) ++lines;
    return lines * line;
}

// The weight gradient is computed as its transpose, dW_g^T (CK, OCg) = cols dy_g^T, when CK is at
// least kDwTransposedCK and OCg at least kDwTransposedOC: the GEMM's micro-kernel then streams the
// long CK side (LeNet's second and the digits net's second convolution: 95-100 GF/s against
// 68-71 for dy_g cols^T, whose few rows take the row-dot path); the sums are copied back
// transposed once per chunk. Fixed by the shape, like everything that shapes the arithmetic.
constexpr int64_t kDwTransposedCK = 64, kDwTransposedOC = 8;

// Groups per chunk of the weight gradient's partial sums (at most kMaxChunks chunks).
inline int64_t groups_per_chunk(int64_t ngroups) {
    constexpr int64_t kMaxChunks = 32;
    return std::max<int64_t>(1, (ngroups + kMaxChunks - 1) / kMaxChunks);
}

}  // namespace

template <class T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s, bool relu) {
    const int64_t Cg = s.C / s.G, OCg = s.OC / s.G, CK = Cg * s.KH * s.KW, L = s.OH * s.OW;
    if (s.N == 0 || L == 0 || s.OC == 0) return;
    const bool pointwise = is_pointwise(s);
    const int64_t nb = pointwise ? 1 : group_size(s), ngroups = (s.N + nb - 1) / nb;
    const int64_t flops = 2 * s.N * s.OC * CK * L;
    // one group on one thread when there are several (its GEMMs then run serially); a single
    // group's GEMMs may use every thread
    const bool by_group = ngroups > 1 && num_threads() > 1 && flops >= kParallelWork;
    auto unroll = [&](T* c, const T* xx, int64_t n0, int64_t cnt, int64_t g, int64_t ld) {
        unroll_group(c, xx, n0, cnt, g, s, ld);
    };
    auto one = [&](int64_t grp) {
        // the group's product has n columns; its buffers' rows lie ld apart (padded_ld)
        const int64_t n0 = grp * nb, cnt = std::min(nb, s.N - n0), n = cnt * L;
        const int64_t ld = padded_ld<T>(n);
        for (int64_t g = 0; g < s.G; ++g) {
            const T* cols = x + (n0 * s.C + g * Cg) * s.H * s.W;
            int64_t ldb = n;
            if (!pointwise) {
                T* c = buffer<T>(0, CK * ld);
                unroll(c, x, n0, cnt, g, ld);
                cols = c;
                ldb = ld;
            }
            // y of the group as (OCg, n): y itself for one sample, else a buffer
            T* yg = cnt == 1 ? y + (n0 * s.OC + g * OCg) * L : buffer<T>(1, OCg * ld);
            const int64_t ldy = cnt == 1 ? L : ld;
            T beta = T(0);
            if (b != nullptr) {
                for (int64_t o = 0; o < OCg; ++o)
                    std::fill(yg + o * ldy, yg + o * ldy + n, b[g * OCg + o]);
                beta = T(1);
            }
            const T* wg = w + g * OCg * CK;
            if (relu) gemm_relu<T>(false, false, OCg, n, CK, wg, CK, cols, ldb, beta, yg, ldy);
            else gemm<T>(false, false, OCg, n, CK, T(1), wg, CK, cols, ldb, beta, yg, ldy);
            if (cnt > 1)
                for (int64_t j = 0; j < cnt; ++j)
                    for (int64_t o = 0; o < OCg; ++o)
                        copy_row(y + ((n0 + j) * s.OC + g * OCg + o) * L, yg + o * ldy + j * L, L);
        }
    };
    if (by_group) {
        parallel_chunks(ngroups, 1, flops, [&](int64_t g0, int64_t g1) {
            const OneThread guard;
            for (int64_t grp = g0; grp < g1; ++grp) one(grp);
        });
    } else {
        for (int64_t grp = 0; grp < ngroups; ++grp) one(grp);
    }
}

template <class T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const ConvShape& s) {
    const int64_t Cg = s.C / s.G, OCg = s.OC / s.G, CK = Cg * s.KH * s.KW, L = s.OH * s.OW;
    const int64_t WN = s.OC * CK;  // weight elements
    const bool pointwise = is_pointwise(s);
    if (db != nullptr) {
        // per channel: per sample a sum over the plane, then over samples in order
        for (int64_t o = 0; o < s.OC; ++o) db[o] = T(0);
        for (int64_t n = 0; n < s.N; ++n)
            for (int64_t o = 0; o < s.OC; ++o) {
                const T* p = dy + (n * s.OC + o) * L;
                T acc = T(0);
                for (int64_t l = 0; l < L; ++l) acc += p[l];
                db[o] += acc;
            }
    }
    if (dx == nullptr && dw == nullptr) return;
    if (dx != nullptr && (L == 0 || s.OC == 0))
        std::fill(dx, dx + s.N * s.C * s.H * s.W, T(0));
    if (dw != nullptr && (s.N == 0 || L == 0)) std::fill(dw, dw + WN, T(0));
    if (s.N == 0 || L == 0 || s.OC == 0) return;

    const int64_t nb = pointwise ? 1 : group_size(s), ngroups = (s.N + nb - 1) / nb;
    const int64_t gpc = groups_per_chunk(ngroups), nchunks = (ngroups + gpc - 1) / gpc;
    // chunk 0 sums into dw itself, chunk c > 0 into partial[c - 1]
    std::vector<T> partial(dw != nullptr ? static_cast<size_t>((nchunks - 1) * WN) : 0);
    const int64_t flops = 2 * s.N * s.OC * CK * L * ((dx != nullptr) + (dw != nullptr));
    const bool by_chunk = nchunks > 1 && num_threads() > 1 && flops >= kParallelWork;
    const bool dw_t = CK >= kDwTransposedCK && OCg >= kDwTransposedOC;
    const bool padded = use_padded(s);
    const Padded pp = padded ? padded_plane(s) : Padded{};
    auto unroll = [&](T* c, const T* xx, int64_t n0, int64_t cnt, int64_t g, int64_t ld) {
        unroll_group(c, xx, n0, cnt, g, s, ld);
    };
    auto run = [&](int64_t c) {
        T* dwc = dw == nullptr ? nullptr : (c == 0 ? dw : partial.data() + (c - 1) * WN);
        // the chunk's transposed sums (G blocks of CK x OCg), on the thread running the chunk
        T* dwt = dwc != nullptr && dw_t ? buffer<T>(3, WN) : nullptr;
        const int64_t g0 = c * gpc, g1 = std::min(ngroups, g0 + gpc);
        for (int64_t grp = g0; grp < g1; ++grp) {
            const int64_t n0 = grp * nb, cnt = std::min(nb, s.N - n0), n = cnt * L;
            const int64_t ld = padded_ld<T>(n);
            for (int64_t g = 0; g < s.G; ++g) {
                const T* wg = w + g * OCg * CK;
                // dy of the group as (OCg, n), rows lddy apart
                const T* dyg = dy + (n0 * s.OC + g * OCg) * L;
                int64_t lddy = n;
                if (cnt > 1) {
                    T* t = buffer<T>(2, OCg * ld);
                    for (int64_t j = 0; j < cnt; ++j)
                        for (int64_t o = 0; o < OCg; ++o)
                            copy_row(t + o * ld + j * L, dy + ((n0 + j) * s.OC + g * OCg + o) * L, L);
                    dyg = t;
                    lddy = ld;
                }
                if (dwc != nullptr) {
                    const T* cols = x + (n0 * s.C + g * Cg) * s.H * s.W;
                    int64_t ldb = n;
                    if (!pointwise) {
                        T* cb = buffer<T>(0, CK * ld);
                        unroll(cb, x, n0, cnt, g, ld);
                        cols = cb;
                        ldb = ld;
                    }
                    if (dwt != nullptr)
                        gemm<T>(false, true, CK, OCg, n, T(1), cols, ldb, dyg, lddy,
                                grp == g0 ? T(0) : T(1), dwt + g * CK * OCg, OCg);
                    else
                        gemm<T>(false, true, OCg, CK, n, T(1), dyg, lddy, cols, ldb,
                                grp == g0 ? T(0) : T(1), dwc + g * OCg * CK, CK);
                }
                if (dx != nullptr) {
                    if (pointwise) {
                        T* dxg = dx + (n0 * s.C + g * Cg) * s.H * s.W;
                        gemm<T>(true, false, CK, L, OCg, T(1), wg, CK, dyg, lddy, T(0), dxg, L);
                    } else {
                        T* dcols = buffer<T>(1, CK * ld);
                        gemm<T>(true, false, CK, n, OCg, T(1), wg, CK, dyg, lddy, T(0), dcols, ld);
                        for (int64_t j = 0; j < cnt; ++j) {
                            T* dxg = dx + ((n0 + j) * s.C + g * Cg) * s.H * s.W;
                            if (padded && !pp.copy) {
                                zero_row(dxg, Cg * s.H * s.W);
                                col2im_padded(dxg, dcols + j * L, Cg, s, pp, ld);
                            } else if (padded) {
                                T* dxp = buffer<T>(5, Cg * pp.Hp * pp.Wp);
                                zero_row(dxp, Cg * pp.Hp * pp.Wp);
                                col2im_padded(dxp, dcols + j * L, Cg, s, pp, ld);
                                if (pp.h < s.H || pp.w < s.W) zero_row(dxg, Cg * s.H * s.W);
                                for (int64_t c = 0; c < Cg; ++c)
                                    copy_rows_strided(dxg + c * s.H * s.W, s.W,
                                                      dxp + c * pp.Hp * pp.Wp + s.PH * pp.Wp + s.PW,
                                                      pp.Wp, pp.w, pp.h);
                            } else {
                                zero_row(dxg, Cg * s.H * s.W);
                                col2im(dxg, dcols + j * L, Cg, s, ld);
                            }
                        }
                    }
                }
            }
        }
        if (dwt != nullptr)
            for (int64_t g = 0; g < s.G; ++g)
                for (int64_t o = 0; o < OCg; ++o)
                    for (int64_t r = 0; r < CK; ++r)
                        dwc[(g * OCg + o) * CK + r] = dwt[(g * CK + r) * OCg + o];
    };
    if (by_chunk) {
        parallel_chunks(nchunks, 1, flops, [&](int64_t c0, int64_t c1) {
            const OneThread guard;
            for (int64_t c = c0; c < c1; ++c) run(c);
        });
    } else {
        for (int64_t c = 0; c < nchunks; ++c) run(c);
    }
    if (dw != nullptr)
        for (int64_t c = 1; c < nchunks; ++c) {
            const T* p = partial.data() + (c - 1) * WN;
#pragma omp simd
            for (int64_t i = 0; i < WN; ++i) dw[i] += p[i];
        }
}

template <class T>
void conv2d_forward_naive(T* y, const T* x, const T* w, const T* b, const ConvShape& s) {
    const int64_t Cg = s.C / s.G, OCg = s.OC / s.G;
    for (int64_t n = 0; n < s.N; ++n)
        for (int64_t o = 0; o < s.OC; ++o) {
            const int64_t g = o / OCg;
            for (int64_t oh = 0; oh < s.OH; ++oh)
                for (int64_t ow = 0; ow < s.OW; ++ow) {
                    T acc = b != nullptr ? b[o] : T(0);
                    for (int64_t c = 0; c < Cg; ++c)
                        for (int64_t kh = 0; kh < s.KH; ++kh)
                            for (int64_t kw = 0; kw < s.KW; ++kw) {
                                const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
                                const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
                                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                                acc += x[((n * s.C + g * Cg + c) * s.H + ih) * s.W + iw] *
                                       w[((o * Cg + c) * s.KH + kh) * s.KW + kw];
                            }
                    y[((n * s.OC + o) * s.OH + oh) * s.OW + ow] = acc;
                }
        }
}

// ---- pooling: planes are independent; each runs on one thread, in a fixed order ----

namespace {

// One tap of a max pool over a plane's outputs (see maxpool2d_forward): output o reads xp[kt[o]]
// and takes it (recording its index) when it is greater than o's maximum so far, or NaN while that
// maximum is not. Bitwise operators on the conditions and restrict pointers let the compiler
// vectorize it (a branch per window element mispredicted on random data).
template <class T>
void max_tap(T* GD_RESTRICT best, int32_t* GD_RESTRICT arg, const T* GD_RESTRICT xp,
             const int32_t* GD_RESTRICT kt, int64_t n) {
#pragma omp simd
    for (int64_t o = 0; o < n; ++o) {
        const int32_t k = kt[o];
        const T v = xp[k], b = best[o];
        const bool take = (v > b) | ((v != v) & (b == b));
        best[o] = take ? v : b;
        arg[o] = take ? k : arg[o];
    }
}

// Plane-sized index tables above this many entries: the plain loops instead.
constexpr int64_t kMaxPoolTable = int64_t(1) << 22;

}  // namespace

// Tap by tap over whole planes: a table gives, per tap t = i * wmax + j of the windows (in window
// order) and output o, the flat input index the tap reads; a tap outside o's window repeats o's
// first tap, which never changes a maximum (it is taken first). Output by output this is the
// scalar rule "take a greater value, or a NaN; stop at the first NaN" over the window in order, so
// values and indices are those of the plain loops, which serve planes too large for the table.
template <class T>
void maxpool2d_forward(T* y, int64_t* idx, const T* x, const PoolShape& s) {
    const int64_t plane_out = s.OH * s.OW;
    int64_t hmax = 0, wmax = 0;
    for (int64_t oh = 0; oh < s.OH; ++oh) hmax = std::max(hmax, s.hn[oh]);
    for (int64_t ow = 0; ow < s.OW; ++ow) wmax = std::max(wmax, s.wn[ow]);
    const int64_t taps = hmax * wmax;
    if (s.H * s.W <= std::numeric_limits<int32_t>::max() && taps * plane_out <= kMaxPoolTable) {
        std::vector<int32_t> kt(static_cast<size_t>(taps * plane_out));
        for (int64_t i = 0; i < hmax; ++i)
            for (int64_t j = 0; j < wmax; ++j)
                for (int64_t oh = 0; oh < s.OH; ++oh)
                    for (int64_t ow = 0; ow < s.OW; ++ow) {
                        const bool in = i < s.hn[oh] && j < s.wn[ow];
                        const int64_t k = in ? (s.hs[oh] + i * s.DH) * s.W + s.ws[ow] + j * s.DW
                                             : s.hs[oh] * s.W + s.ws[ow];
                        kt[static_cast<size_t>((i * wmax + j) * plane_out + oh * s.OW + ow)] =
                            static_cast<int32_t>(k);
                    }
        parallel_chunks(s.P, 16, s.P * plane_out * 8, [&](int64_t p0, int64_t p1) {
            int32_t* arg = buffer<int32_t>(0, plane_out);
            for (int64_t p = p0; p < p1; ++p) {
                T* best = y + p * plane_out;
                for (int64_t o = 0; o < plane_out; ++o) {
                    best[o] = -std::numeric_limits<T>::infinity();
                    arg[o] = kt[static_cast<size_t>(o)];
                }
                for (int64_t t = 0; t < taps; ++t)
                    max_tap(best, arg, x + p * s.H * s.W, kt.data() + t * plane_out, plane_out);
                if (idx != nullptr)
                    for (int64_t o = 0; o < plane_out; ++o) idx[p * plane_out + o] = arg[o];
            }
        });
        return;
    }
    parallel_chunks(s.P, 16, s.P * plane_out * 8, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            const T* xp = x + p * s.H * s.W;
            for (int64_t oh = 0; oh < s.OH; ++oh)
                for (int64_t ow = 0; ow < s.OW; ++ow) {
                    T best = -std::numeric_limits<T>::infinity();
                    int64_t arg = s.hs[oh] * s.W + s.ws[ow];
                    for (int64_t i = 0; i < s.hn[oh]; ++i) {
                        const int64_t ih = s.hs[oh] + i * s.DH;
                        for (int64_t j = 0; j < s.wn[ow]; ++j) {
                            const int64_t k = ih * s.W + s.ws[ow] + j * s.DW;
                            const T v = xp[k];
                            if (v > best || std::isnan(v)) {
                                best = v;
                                arg = k;
                                if (std::isnan(v)) goto done;
                            }
                        }
                    }
                done:
                    y[p * plane_out + oh * s.OW + ow] = best;
                    if (idx != nullptr) idx[p * plane_out + oh * s.OW + ow] = arg;
                }
        }
    });
}

template <class T>
void maxpool2d_backward(T* dx, const T* dy, const int64_t* idx, const PoolShape& s) {
    const int64_t plane_out = s.OH * s.OW, plane_in = s.H * s.W;
    parallel_chunks(s.P, 16, s.P * (plane_out + plane_in) * 2, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            T* dxp = dx + p * plane_in;
            std::fill(dxp, dxp + plane_in, T(0));
            for (int64_t o = 0; o < plane_out; ++o) dxp[idx[p * plane_out + o]] += dy[p * plane_out + o];
        }
    });
}

template <class T>
void avgpool2d_forward(T* y, const T* x, const int64_t* div, const PoolShape& s) {
    const int64_t plane_out = s.OH * s.OW;
    parallel_chunks(s.P, 16, s.P * plane_out * 8, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            const T* xp = x + p * s.H * s.W;
            for (int64_t oh = 0; oh < s.OH; ++oh)
                for (int64_t ow = 0; ow < s.OW; ++ow) {
                    T acc = T(0);
                    for (int64_t i = 0; i < s.hn[oh]; ++i) {
                        const T* row = xp + (s.hs[oh] + i * s.DH) * s.W + s.ws[ow];
                        for (int64_t j = 0; j < s.wn[ow]; ++j) acc += row[j * s.DW];
                    }
                    y[p * plane_out + oh * s.OW + ow] = acc / T(div[oh * s.OW + ow]);
                }
        }
    });
}

template <class T>
void avgpool2d_backward(T* dx, const T* dy, const int64_t* div, const PoolShape& s) {
    const int64_t plane_out = s.OH * s.OW, plane_in = s.H * s.W;
    parallel_chunks(s.P, 16, s.P * (plane_out + plane_in) * 4, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            T* dxp = dx + p * plane_in;
            std::fill(dxp, dxp + plane_in, T(0));
            for (int64_t oh = 0; oh < s.OH; ++oh)
                for (int64_t ow = 0; ow < s.OW; ++ow) {
                    const T g = dy[p * plane_out + oh * s.OW + ow] / T(div[oh * s.OW + ow]);
                    for (int64_t i = 0; i < s.hn[oh]; ++i) {
                        T* row = dxp + (s.hs[oh] + i * s.DH) * s.W + s.ws[ow];
                        for (int64_t j = 0; j < s.wn[ow]; ++j) row[j * s.DW] += g;
                    }
                }
        }
    });
}

namespace {
template <class T>
ConvTable<T> make_conv_table() {
    ConvTable<T> t{};
    t.conv2d_forward = &conv2d_forward<T>;
    t.conv2d_backward = &conv2d_backward<T>;
    t.maxpool2d_forward = &maxpool2d_forward<T>;
    t.maxpool2d_backward = &maxpool2d_backward<T>;
    t.avgpool2d_forward = &avgpool2d_forward<T>;
    t.avgpool2d_backward = &avgpool2d_backward<T>;
    t.conv2d_forward_naive = &conv2d_forward_naive<T>;
    return t;
}
}  // namespace

}  // namespace GD_NS

const ConvKernels& GD_CONCAT(conv_kernels_, GD_ISA)() {
    static const ConvKernels k{GD_STR(GD_ISA), GD_NS::make_conv_table<float>(),
                               GD_NS::make_conv_table<double>()};
    return k;
}

}  // namespace gd

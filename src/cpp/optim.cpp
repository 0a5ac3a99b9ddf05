// Fused optimizer updates, one call per parameter group. Each kernel applies PyTorch's update rule
// (torch/optim/<name>.py, _single_tensor_<name>) element by element, in the same order of
// operations: `a.add_(b, alpha=c)` is a + c * b, `a.addcmul_(b, c, value=s)` is a + s * b * c,
// `a.addcdiv_(b, c, value=s)` is a + s * b / c, `a.lerp_(b, w)` is lerp(a, b, w) below.
// This file is compiled with -ffp-contract=off (CMakeLists.txt): no fused multiply-adds, so every
// operation rounds once, as in the NumPy references of tests/test_optim.py, and an identity
// matrix learning rate gives bit for bit the scalar one.
// Shape legend: tensor i of `count` has n[i] elements; N = sum of n[i].
// In parallel, each thread updates its share of every tensor (for_each_block); each element is
// updated by exactly one thread from its own values only, so results never depend on the thread
// count.
// Each block copies its gradient before writing the parameter, so g[i] may alias p[i].
#include "optim.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <limits>
#include <utility>
#include <vector>

#include "gemm.hpp"
#include "gemm/dots.hpp"
#include "gemm/smallk.hpp"
#include "linear.hpp"
#include "parallel.hpp"

namespace gd {
namespace GD_NS {
namespace {

// Rows of a batch-1 weight update per parallel chunk: about kChunk elements.
constexpr int64_t kChunk = 1 << 14;
// Each tensor is processed in blocks of kBlock elements: a kernel runs PyTorch's sequence of
// in-place tensor ops on one block (a few simple loops that vectorize, data staying in L1)
// before moving to the next, so memory is streamed once.
constexpr int64_t kBlock = 256;

// Calls body(i, begin, end) for every kBlock piece of every tensor. When the total work
// (flops_per_element per element) is large enough, thread t of nt takes the t-th share of every
// tensor (kBlock-aligned): a weight's rows are then updated on the core that computed their
// gradient and reads them in the next forward (the weight-gradient GEMM and the forward's give
// thread t about the t-th share of the weight's rows too). Against 16K-element chunks of the
// concatenated tensors dealt out in order, the MLP's step on 2 threads was 1.2% faster at batch
// 256 and 18% at batch 32 (same-run A/B on one compiled step, 40 and 20 rounds).
template <class F>
void for_each_block(const int64_t* n, int64_t count, int64_t flops_per_element, const F& body) {
    int64_t total = 0;
    for (int64_t i = 0; i < count; ++i) total += n[i];
    const int64_t nt = num_threads();
    const int64_t parts = nt > 1 && total * flops_per_element >= kParallelWork ? nt : 1;
    // where share t of tensor i starts (kBlock-aligned; the last share ends at n[i])
    const auto start = [&](int64_t i, int64_t t) {
        return t == parts ? n[i] : n[i] * t / parts / kBlock * kBlock;
    };
    parallel_chunks(parts, 1, parts > 1 ? total * flops_per_element : 0,
                    [&](int64_t t0, int64_t t1) {
                        for (int64_t t = t0; t < t1; ++t)
                            for (int64_t i = 0; i < count; ++i) {
                                const int64_t hi = start(i, t + 1);
                                for (int64_t b = start(i, t); b < hi; b += kBlock)
                                    body(i, b, std::min(hi, b + kBlock));
                            }
                    });
}

// d = g, or -g (maximize)
template <class T>
inline void load_grad(T* d, const T* g, int64_t m, bool maximize) {
    if (maximize)
        for (int64_t j = 0; j < m; ++j) d[j] = -g[j];
    else
        for (int64_t j = 0; j < m; ++j) d[j] = g[j];
}

// d.add_(p, alpha=wd): d = d + wd p
template <class T>
inline void add_scaled(T* d, const T* p, T wd, int64_t m) {
    for (int64_t j = 0; j < m; ++j) d[j] = d[j] + wd * p[j];
}

// a.lerp_(b, w), torch's formula: a + w (b - a) for |w| < 1/2, else b - (b - a)(1 - w)
template <class T>
inline void lerp(T* a, const T* b, T w, int64_t m) {
    if (std::fabs(w) < T(0.5)) {
        for (int64_t j = 0; j < m; ++j) a[j] = a[j] + w * (b[j] - a[j]);
    } else {
        const T w1 = T(1) - w;
        for (int64_t j = 0; j < m; ++j) a[j] = b[j] - (b[j] - a[j]) * w1;
    }
}

// s.mul_(beta).addcmul_(d, d, value=w): s = s beta + w d d
template <class T>
inline void decay_add_square(T* s, const T* d, T beta, T w, int64_t m) {
    for (int64_t j = 0; j < m; ++j) s[j] = s[j] * beta + w * d[j] * d[j];
}

// torch.maximum(a, b, out=a): NaN wins, as in numpy.maximum
template <class T>
inline void nan_max(T* a, const T* b, int64_t m) {
    for (int64_t j = 0; j < m; ++j) a[j] = (a[j] > b[j] || std::isnan(a[j])) ? a[j] : b[j];
}

// p.addcdiv_(num, den, value=c): p = p + c num / den
template <class T>
inline void addcdiv(T* p, const T* num, const T* den, T c, int64_t m) {
    for (int64_t j = 0; j < m; ++j) p[j] = p[j] + c * num[j] / den[j];
}

// One block of m elements of an SGD step, from its gradient already in d (overwritten): d = -d
// if maximize; d += wd p; buf = momentum buf + (1 - dampening) d (buf = d on the first step);
// d = buf, or d + momentum buf (Nesterov); then p -= lr d, p -= lr_diag d, or dir = d.
template <class T>
inline void sgd_block(T* d, T* pi, T* bi, T* di, const T* li, bool fresh, int64_t m,
                      const SgdHyper& h) {
    const T lr = T(h.lr), mom = T(h.momentum), keep = T(1 - h.dampening), wd = T(h.weight_decay);
    if (h.maximize)
        for (int64_t j = 0; j < m; ++j) d[j] = -d[j];
    if (h.weight_decay != 0) add_scaled(d, pi, wd, m);
    if (h.momentum != 0) {
        if (fresh)
            for (int64_t j = 0; j < m; ++j) bi[j] = d[j];
        else
            for (int64_t j = 0; j < m; ++j) bi[j] = bi[j] * mom + keep * d[j];
        if (h.nesterov)
            add_scaled(d, bi, mom, m);
        else
            for (int64_t j = 0; j < m; ++j) d[j] = bi[j];
    }
    if (di != nullptr) {
        for (int64_t j = 0; j < m; ++j) di[j] = d[j];
    } else if (li != nullptr) {
        for (int64_t j = 0; j < m; ++j) pi[j] = pi[j] - li[j] * d[j];
    } else {
        for (int64_t j = 0; j < m; ++j) pi[j] = pi[j] - lr * d[j];
    }
}

}  // namespace

namespace {

// One block of sgd_block's scalar-lr update (momentum with its buffer made by an earlier step,
// or none), every element in one pass: sgd_block's operations in the same order (the same
// bits), each element's values in registers instead of a block of d going through L1 once per
// operation. Scale: g *= gscale first, stored back (clip_grad_norm_'s scaling). g may not
// overlap p or buf here (the caller checks).
// sgd_block's operations on one element whose gradient is d (p and b its parameter and momentum
// buffer, updated): d = -d if Max; d += wd p; b = b mom + keep d; d = b, or d + mom b (Nest);
// p -= lr d. Shared by the one-pass loops below, so that they round as sgd_block does.
template <class T>
struct SgdScalars {
    T lr, mom, keep, wd;
    explicit SgdScalars(const SgdHyper& h)
        : lr(T(h.lr)), mom(T(h.momentum)), keep(T(1 - h.dampening)), wd(T(h.weight_decay)) {}
};
template <class T, bool Max, bool Wd, bool Mom, bool Nest>
inline void sgd_element(T d, T& p, T& b, const SgdScalars<T>& c) {
    if constexpr (Max) d = -d;
    if constexpr (Wd) d = d + c.wd * p;
    if constexpr (Mom) {
        const T bj = b * c.mom + c.keep * d;
        b = bj;
        if constexpr (Nest)
            d = d + c.mom * bj;
        else
            d = bj;
    }
    p = p - c.lr * d;
}

template <class T, bool Scale, bool Max, bool Wd, bool Mom, bool Nest>
void sgd_pass(T* __restrict p, T* __restrict b, T* __restrict g, int64_t len, const SgdHyper& h) {
    const SgdScalars<T> c(h);
    const T gscale = T(h.grad_scale);
    T none = T(0);  // (the buffer of an update without momentum: never read)
    for (int64_t j = 0; j < len; ++j) {
        T d = g[j];
        if constexpr (Scale) {
            d = d * gscale;
            g[j] = d;
        }
        sgd_element<T, Max, Wd, Mom, Nest>(d, p[j], Mom ? b[j] : none, c);
    }
}

template <class T, bool Scale, bool Max, bool Wd>
void sgd_pass_mom(bool mom, bool nest, T* p, T* b, T* g, int64_t len, const SgdHyper& h) {
    if (!mom) sgd_pass<T, Scale, Max, Wd, false, false>(p, b, g, len, h);
    else if (nest) sgd_pass<T, Scale, Max, Wd, true, true>(p, b, g, len, h);
    else sgd_pass<T, Scale, Max, Wd, true, false>(p, b, g, len, h);
}

template <class T>
void sgd_pass_any(T* p, T* b, T* g, int64_t len, const SgdHyper& h) {
    const bool mom = h.momentum != 0, nest = h.nesterov, wd = h.weight_decay != 0;
    const int which = (h.scale_grad ? 4 : 0) + (h.maximize ? 2 : 0) + (wd ? 1 : 0);
    switch (which) {
        case 0: return sgd_pass_mom<T, false, false, false>(mom, nest, p, b, g, len, h);
        case 1: return sgd_pass_mom<T, false, false, true>(mom, nest, p, b, g, len, h);
        case 2: return sgd_pass_mom<T, false, true, false>(mom, nest, p, b, g, len, h);
        case 3: return sgd_pass_mom<T, false, true, true>(mom, nest, p, b, g, len, h);
        case 4: return sgd_pass_mom<T, true, false, false>(mom, nest, p, b, g, len, h);
        case 5: return sgd_pass_mom<T, true, false, true>(mom, nest, p, b, g, len, h);
        case 6: return sgd_pass_mom<T, true, true, false>(mom, nest, p, b, g, len, h);
        default: return sgd_pass_mom<T, true, true, true>(mom, nest, p, b, g, len, h);
    }
}

// whether two ranges of `bytes` bytes do not overlap
inline bool disjoint(const void* a, const void* b, int64_t bytes) {
    const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
    return x + uintptr_t(bytes) <= y || y + uintptr_t(bytes) <= x;
}

}  // namespace

template <class T>
void sgd_step(T* const* p, T* const* buf, T* const* dir, const T* const* g, const T* const* lr_diag,
              const uint8_t* fresh, const int64_t* n, int64_t count, const SgdHyper& h) {
    const bool use_mom = h.momentum != 0;
    const T gscale = T(h.grad_scale);
    for_each_block(n, count, 8, [&](int64_t i, int64_t b, int64_t e) {
        const int64_t bytes = (e - b) * int64_t(sizeof(T));
        T* gi = const_cast<T*>(g[i]) + b;  // (written only when h.scale_grad)
        if (dir == nullptr && lr_diag == nullptr && !(use_mom && fresh[i] != 0) &&
            disjoint(gi, p[i] + b, bytes) &&
            (!use_mom || disjoint(gi, buf[i] + b, bytes))) {
            sgd_pass_any<T>(p[i] + b, use_mom ? buf[i] + b : nullptr, gi, e - b, h);
            return;
        }
        T d[kBlock];
        if (h.scale_grad) {  // clip_grad_norm_'s scaling (gd.compile), stored back
            T* gi = const_cast<T*>(g[i]) + b;
            for (int64_t j = 0; j < e - b; ++j) gi[j] = gi[j] * gscale;
        }
        for (int64_t j = 0; j < e - b; ++j) d[j] = g[i][b + j];
        sgd_block(d, p[i] + b, use_mom ? buf[i] + b : nullptr,
                  dir != nullptr ? dir[i] + b : nullptr,
                  lr_diag != nullptr ? lr_diag[i] + b : nullptr,
                  use_mom && fresh[i] != 0,  // fresh is only given with momentum
                  e - b, h);
    });
}

// The weight update of a batch-1 linear layer, its gradient never stored: the gradient dy[o] x[j]
// (one rounded product, as the K = 1 GEMM writes it) is formed as it is needed. Row by row:
// plain SGD (no momentum, weight decay or maximize) is one pass W[o, j] -= lr (dy[o] x[j]) (this
// file has no contraction, so the product is rounded before the update, as in sgd_block);
// otherwise each kBlock piece of a row goes through sgd_block. Both give sgd_step's bits.
//
// With momentum (its buffer made by an earlier step), sgd_block's loops run fused, one pass per
// row: each element goes through the same operations in the same order (the same bits), while W
// and its buffer are read and written once instead of a block of d going through L1 four times.
template <class T, bool Max, bool Wd, bool Nest>
void sgd_outer_row_momentum(T* GD_RESTRICT w, T* GD_RESTRICT b, T a, const T* GD_RESTRICT x,
                            int64_t IN, const SgdHyper& h) {
    const SgdScalars<T> c(h);
    for (int64_t j = 0; j < IN; ++j) sgd_element<T, Max, Wd, true, Nest>(a * x[j], w[j], b[j], c);
}

template <class T, bool Max>
void sgd_outer_row_momentum_any(T* w, T* b, T a, const T* x, int64_t IN, const SgdHyper& h) {
    const bool wd = h.weight_decay != 0;
    if (wd && h.nesterov) sgd_outer_row_momentum<T, Max, true, true>(w, b, a, x, IN, h);
    else if (wd) sgd_outer_row_momentum<T, Max, true, false>(w, b, a, x, IN, h);
    else if (h.nesterov) sgd_outer_row_momentum<T, Max, false, true>(w, b, a, x, IN, h);
    else sgd_outer_row_momentum<T, Max, false, false>(w, b, a, x, IN, h);
}

template <class T>
void sgd_outer_rows(T* W, T* buf, const T* dy, const T* x, int64_t o0, int64_t o1, int64_t IN,
                    const SgdHyper& h) {
    const bool plain = h.momentum == 0 && h.weight_decay == 0 && !h.maximize;
    const bool momentum = h.momentum != 0 && buf != nullptr;
    const T lr = T(h.lr);
    for (int64_t o = o0; o < o1; ++o) {
        T* GD_RESTRICT w = W + o * IN;
        const T a = dy[o];
        if (plain) {
            const T* GD_RESTRICT xr = x;
            for (int64_t j = 0; j < IN; ++j) w[j] = w[j] - lr * (a * xr[j]);
            continue;
        }
        if (momentum) {
            T* b = buf + o * IN;
            if (h.maximize) sgd_outer_row_momentum_any<T, true>(w, b, a, x, IN, h);
            else sgd_outer_row_momentum_any<T, false>(w, b, a, x, IN, h);
            continue;
        }
        T d[kBlock];
        for (int64_t j0 = 0; j0 < IN; j0 += kBlock) {
            const int64_t m = std::min(kBlock, IN - j0);
            for (int64_t j = 0; j < m; ++j) d[j] = a * x[j0 + j];
            sgd_block(d, w + j0, buf != nullptr ? buf + o * IN + j0 : nullptr,
                      static_cast<T*>(nullptr), static_cast<const T*>(nullptr), false, m, h);
        }
    }
}

template <class T>
void sgd_outer_step(T* W, T* buf, const T* dy, const T* x, int64_t OUT, int64_t IN,
                    const SgdHyper& h) {
    if (OUT <= 0 || IN <= 0) return;
    const int64_t rows = std::max<int64_t>(1, kChunk / IN);  // rows per parallel chunk
    // in parallel exactly when the matrix-vector products reading W are (parallel.hpp)
    const int64_t work = 2 * OUT * IN >= kMatrixParallelFlops ? OUT * IN * 8 : 0;
    parallel_chunks(OUT, rows, work, [&](int64_t o0, int64_t o1) {
        sgd_outer_rows(W, buf, dy, x, o0, o1, IN, h);
    });
}

// One vector of a small-batch weight gradient (gemm_detail::smallk_rows: exactly the values the
// GEMM stores for dW), applied at once: stored into dW when given, then plain SGD's
// w = w - lr g (an explicit product then difference, as sgd_block rounds them), or sgd_block on
// the L values (momentum, weight decay, maximize).
template <class T>
struct SgdTile {
    using V = gemm_detail::Simd<T>;
    using reg = typename V::reg;
    T* W;
    T* buf;
    T* dW;
    int64_t IN;
    reg lr;
    bool plain;
    const SgdHyper& h;
    void operator()(int64_t o, int64_t j, reg g) const {
        T* w = W + o * IN + j;
        if (dW != nullptr) V::store(dW + o * IN + j, g);
        if (plain) {
            V::store(w, V::sub(V::load(w), V::mul(lr, g)));
            return;
        }
        alignas(64) T d[V::L];
        V::store(d, g);
        sgd_block(d, w, buf != nullptr ? buf + o * IN + j : nullptr, static_cast<T*>(nullptr),
                  static_cast<const T*>(nullptr), false, V::L, h);
    }
    void operator()(int64_t o, int64_t j, reg g, typename V::mask m) const {
        T* w = W + o * IN + j;
        if (dW != nullptr) V::store(dW + o * IN + j, g, m);
        if (plain) {
            V::store(w, V::sub(V::load(w, m), V::mul(lr, g)), m);
            return;
        }
        alignas(64) T d[V::L];
        V::store(d, g);
        const int64_t n = std::min<int64_t>(V::L, IN - j);
        sgd_block(d, w, buf != nullptr ? buf + o * IN + j : nullptr, static_cast<T*>(nullptr),
                  static_cast<const T*>(nullptr), false, n, h);
    }
};

// SgdTile's plain update (the same operations, so the same bits) with the choices made once per
// call rather than per vector: on 16-register ISAs a tile's stores and updates are about a third
// of its instructions, which the per-vector branches and loads of SgdTile's fields lengthened.
template <class T, bool kStoreDW>
struct SgdTilePlain {
    using V = gemm_detail::Simd<T>;
    using reg = typename V::reg;
    T* W;
    T* dW;
    int64_t IN;
    reg lr;
    void operator()(int64_t o, int64_t j, reg g) const {
        T* w = W + o * IN + j;
        if (kStoreDW) V::store(dW + o * IN + j, g);
        V::store(w, V::sub(V::load(w), V::mul(lr, g)));
    }
    void operator()(int64_t o, int64_t j, reg g, typename V::mask m) const {
        T* w = W + o * IN + j;
        if (kStoreDW) V::store(dW + o * IN + j, g, m);
        V::store(w, V::sub(V::load(w, m), V::mul(lr, g)), m);
    }
};

// SgdTile's momentum update (a buffer made by an earlier step, no maximize) with the choices made
// once per call: sgd_block's operations on L values at a time (d += wd w; b = b mom + keep d;
// d = b, or d + mom b; w = w - lr d, each rounded on its own: the same bits) in registers
// instead of a store of the gradient and sgd_block's loops over it per vector.
template <class T, bool kStoreDW, bool kWd, bool kNest>
struct SgdTileMomentum {
    using V = gemm_detail::Simd<T>;
    using reg = typename V::reg;
    T* W;
    T* buf;
    T* dW;
    int64_t IN;
    reg lr, mom, keep, wd;
    reg step(reg w, reg& b, reg g) const {
        if constexpr (kWd) g = V::add(g, V::mul(wd, w));
        b = V::add(V::mul(b, mom), V::mul(keep, g));
        const reg d = kNest ? V::add(g, V::mul(mom, b)) : b;
        return V::sub(w, V::mul(lr, d));
    }
    void operator()(int64_t o, int64_t j, reg g) const {
        const int64_t at = o * IN + j;
        if (kStoreDW) V::store(dW + at, g);
        reg b = V::load(buf + at);
        const reg w = step(V::load(W + at), b, g);
        V::store(buf + at, b);
        V::store(W + at, w);
    }
    void operator()(int64_t o, int64_t j, reg g, typename V::mask m) const {
        const int64_t at = o * IN + j;
        if (kStoreDW) V::store(dW + at, g, m);
        reg b = V::load(buf + at, m);
        const reg w = step(V::load(W + at, m), b, g);
        V::store(buf + at, b, m);
        V::store(W + at, w, m);
    }
};

template <class T, bool kStoreDW, bool kWd, bool kNest>
void sgd_gemm_momentum_rows(int64_t o0, int64_t o1, T* W, T* buf, T* dW, const T* dy, const T* x,
                            int64_t B, int64_t OUT, int64_t IN, const SgdHyper& h) {
    using V = gemm_detail::Simd<T>;
    const SgdTileMomentum<T, kStoreDW, kWd, kNest> tile{
        W, buf, dW, IN, V::set1(T(h.lr)), V::set1(T(h.momentum)), V::set1(T(1 - h.dampening)),
        V::set1(T(h.weight_decay))};
    gemm_detail::smallk_rows<T>(o0, o1, B, dy, OUT, x, IN, IN, tile);
}

template <class T>
void sgd_gemm_momentum(int64_t o0, int64_t o1, T* W, T* buf, T* dW, const T* dy, const T* x,
                       int64_t B, int64_t OUT, int64_t IN, const SgdHyper& h) {
    const int which =
        (dW != nullptr ? 4 : 0) + (h.weight_decay != 0 ? 2 : 0) + (h.nesterov ? 1 : 0);
    using F = void (*)(int64_t, int64_t, T*, T*, T*, const T*, const T*, int64_t, int64_t,
                       int64_t, const SgdHyper&);
    static constexpr F fns[8] = {&sgd_gemm_momentum_rows<T, false, false, false>,
                                 &sgd_gemm_momentum_rows<T, false, false, true>,
                                 &sgd_gemm_momentum_rows<T, false, true, false>,
                                 &sgd_gemm_momentum_rows<T, false, true, true>,
                                 &sgd_gemm_momentum_rows<T, true, false, false>,
                                 &sgd_gemm_momentum_rows<T, true, false, true>,
                                 &sgd_gemm_momentum_rows<T, true, true, false>,
                                 &sgd_gemm_momentum_rows<T, true, true, true>};
    fns[which](o0, o1, W, buf, dW, dy, x, B, OUT, IN, h);
}

// Threads split the rows of W (whole tiles) when the gradient's product would run in parallel
// (gemm's threshold), so each thread updates about the rows its core reads in the forward.
template <class T>
void sgd_gemm_step(T* W, T* buf, T* dW, const T* dy, const T* x, int64_t B, int64_t OUT,
                   int64_t IN, const SgdHyper& h) {
    if (OUT <= 0 || IN <= 0 || B <= 0) return;
    using V = gemm_detail::Simd<T>;
    constexpr int64_t R = gemm_detail::kSmallKRows<T>;
    const bool plain = h.momentum == 0 && h.weight_decay == 0 && !h.maximize;
    const SgdTile<T> tile{W, buf, dW, IN, V::set1(T(h.lr)), plain, h};
    const int64_t flops = 2 * B * OUT * IN;
    const int64_t nt = flops >= kMatrixParallelFlops ? std::max(1, num_threads()) : 1;
    const int64_t chunk = nt > 1 ? (OUT + nt * R - 1) / (nt * R) * R : OUT;
    const auto lr = V::set1(T(h.lr));
    parallel_chunks(OUT, chunk, nt > 1 ? flops : 0, [&](int64_t o0, int64_t o1) {
        if (plain && dW == nullptr)
            gemm_detail::smallk_rows<T>(o0, o1, B, dy, OUT, x, IN, IN,
                                        SgdTilePlain<T, false>{W, nullptr, IN, lr});
        else if (plain)
            gemm_detail::smallk_rows<T>(o0, o1, B, dy, OUT, x, IN, IN,
                                        SgdTilePlain<T, true>{W, dW, IN, lr});
        else if (h.momentum != 0 && !h.maximize && buf != nullptr)
            sgd_gemm_momentum<T>(o0, o1, W, buf, dW, dy, x, B, OUT, IN, h);
        else
            gemm_detail::smallk_rows<T>(o0, o1, B, dy, OUT, x, IN, IN, tile);
    });
}

// A row that takes plain SGD's update as the dot product reads it: w = w - lr (a x_old), the
// operations of sgd_outer_rows' plain loop (this file does not contract them into an FMA).
template <class T>
struct SgdRow {
    using V = gemm_detail::Simd<T>;
    using reg = typename V::reg;
    T* GD_RESTRICT w;
    const T* GD_RESTRICT x_old;
    reg lr, a;
    reg operator()(int, int64_t k) const {
        const reg v = V::sub(V::load(w + k), V::mul(lr, V::mul(a, V::load(x_old + k))));
        V::store(w + k, v);
        return v;
    }
    reg operator()(int, int64_t k, typename V::mask m) const {
        const reg v = V::sub(V::load(w + k, m), V::mul(lr, V::mul(a, V::load(x_old + k, m))));
        V::store(w + k, v, m);
        return v;
    }
};

// Plain SGD: one pass, row by row; each vector of W is updated, stored and multiplied into the
// row's dot product (SgdRow): measured faster than blocks of rows updated (sgd_outer_rows) then
// read by gemv_rows from L1, and than the forward and the update apart (figures in
// docs/performance.md, "Measurements behind the kernels"). Otherwise (weight decay, maximize)
// the blocks.
template <class T>
void linear_forward_sgd(T* y, const T* x, T* W, const T* b, int64_t IN, int64_t OUT,
                        const T* dy_old, const T* x_old, const SgdHyper& h) {
    if (h.momentum == 0 && h.weight_decay == 0 && !h.maximize) {
        using V = gemm_detail::Simd<T>;
        const auto lr = V::set1(T(h.lr));
        for (int64_t o = 0; o < OUT; ++o) {
            const SgdRow<T> row{W + o * IN, x_old, lr, V::set1(dy_old[o])};
            // linear_forward stores b + dot (its bias is the GEMM's C with beta = 1), or the dot
            gemm_detail::dots_rows<T, 1>(IN, x, row, [&](int, T sum) {
                y[o] = b != nullptr ? b[o] + sum : sum;
            });
        }
        return;
    }
    constexpr int64_t kRows = 4;
    for (int64_t o0 = 0; o0 < OUT; o0 += kRows) {
        const int64_t o1 = std::min(OUT, o0 + kRows);
        sgd_outer_rows<T>(W, nullptr, dy_old, x_old, o0, o1, IN, h);
        if (b != nullptr)
            for (int64_t o = o0; o < o1; ++o) y[o] = b[o];
        gemv_rows<T>(o0, o1, IN, x, W, IN, T(1), b != nullptr ? T(1) : T(0), y);
    }
}

// The deferred plain-SGD update and the forward's row dots in one pass over W, for a batch of
// XR <= kFusedXR rows of x: each vector of WR rows of W takes the update with smallk_rows'
// arithmetic (the gradient an FMA chain from zero over the B_old rows, k = 0, 1, ...; then
// w - lr g, a product then a difference, as SgdTile's plain path), is stored, and meets the XR
// rows of x in dots_tile's arithmetic (one accumulator per pair of rows, lane l summing the
// columns l mod L in increasing order, the last IN mod L masked, then Hsums), all in registers:
// W is read once, from L2, instead of updated in blocks of rows and read again (which left L1
// when 8 rows of W and the rows of x and x_old did not fit). The same bits as the two passes.
// Tile: XR x WR accumulators plus WR gradients and 2 loaded vectors of 32 registers (16), WR at
// most 8 (Hsums' width). Each vector of W also costs B_old broadcasts of dy_old and (B_old + XR)
// / WR loads of x_old and x, so the tiles narrow as the batch grows: up to a batch of 8 (3 where
// there are 16 registers) this pass measured faster than the two, or as fast (float32 at 8); at
// 4 on 16 registers slower (docs/performance-smallbatch.md), and batches past the limit keep the
// two passes. (At 7 and 8 rows the rows of x and x_old, up to 100 KiB in float64, come from L2
// for every tile: cutting K into blocks that keep them in L1, the accumulators parked in memory
// between blocks, measured slower.)
template <class T>
constexpr int kFusedXR = gemm_detail::Simd<T>::MR >= 14 ? 8 : 3;

template <class T, int XR>
constexpr int fused_wr() {
    constexpr int regs = gemm_detail::Simd<T>::MR >= 14 ? 32 : 16;
    return std::min(8, (regs - 3) / (XR + 1));
}

// GCC folds a vector load into every FMA that uses it (WR memory operands for one value) and
// hoists loop-invariant broadcasts into registers it then spills: at 7 and 8 rows of x that made
// the one-pass tile load-bound (75 full-width loads per 51 FMAs). GD_IN_REGISTER keeps a loaded
// vector in a register, GD_OPAQUE_POINTER hides a pointer's value from the optimizer so that
// its broadcasts stay embedded in the FMAs ({1to8}). Neither changes an operation.
#if defined(__GNUC__) && (defined(__AVX2__) || defined(__AVX512F__))
#define GD_IN_REGISTER(v) asm("" : "+v"(v))
#define GD_OPAQUE_POINTER(p) asm("" : "+r"(p))
#else
#define GD_IN_REGISTER(v) ((void)0)
#define GD_OPAQUE_POINTER(p) ((void)0)
#endif

// Rows o.. o + WR - 1 of W (rows IN apart; dy_old (XR, OUT), x_old (XR, IN), x (XR, IN): the
// update's batch is the forward's): out[c][r] = dot(x row r, updated W row o + c).
template <class T, int XR, int WR>
void sgd_dots_tile(int64_t IN, int64_t OUT, const T* GD_RESTRICT x, T* GD_RESTRICT W, int64_t o,
                   const T* GD_RESTRICT dy_old, const T* GD_RESTRICT x_old,
                   typename gemm_detail::Simd<T>::reg lr, T (*out)[8]) {
    using V = gemm_detail::Simd<T>;
    using reg = typename V::reg;
    constexpr int L = V::L;
    constexpr int nb = XR;
    const T* GD_RESTRICT d = dy_old + o;
    T* GD_RESTRICT w0 = W + o * IN;
    reg acc[WR][XR];
#pragma GCC unroll 8
    for (int c = 0; c < WR; ++c)
#pragma GCC unroll 8
        for (int r = 0; r < XR; ++r) acc[c][r] = V::zero();
    int64_t k = 0;
    for (; k + L <= IN; k += L) {
        reg w[WR];
        // (d made opaque each step: the broadcasts then stay loads folded into the FMAs, instead
        // of being hoisted out of the loop into spilled registers and reloaded 64 bytes each)
        const T* GD_RESTRICT dk = d;
        GD_OPAQUE_POINTER(dk);
#pragma GCC unroll 8
        for (int c = 0; c < WR; ++c) w[c] = V::zero();
#pragma GCC unroll 8
        for (int q = 0; q < nb; ++q) {  // the gradient: smallk_tile_rows' chain
            reg xo = V::load(x_old + q * IN + k);
            GD_IN_REGISTER(xo);
#pragma GCC unroll 8
            for (int c = 0; c < WR; ++c) w[c] = V::fma(V::set1(dk[q * OUT + c]), xo, w[c]);
        }
#pragma GCC unroll 8
        for (int c = 0; c < WR; ++c) {  // SgdTile's plain update
            T* p = w0 + c * IN + k;
            w[c] = V::sub(V::load(p), V::mul(lr, w[c]));
            V::store(p, w[c]);
        }
#pragma GCC unroll 8
        for (int r = 0; r < XR; ++r) {  // dots_tile's step
            reg xr = V::load(x + r * IN + k);
            GD_IN_REGISTER(xr);
#pragma GCC unroll 8
            for (int c = 0; c < WR; ++c) acc[c][r] = V::fma(xr, w[c], acc[c][r]);
        }
    }
    if (k < IN) {
        const auto m = V::first(IN - k);
        reg w[WR];
        for (int c = 0; c < WR; ++c) w[c] = V::zero();
        for (int q = 0; q < nb; ++q) {
            const reg xo = V::load(x_old + q * IN + k, m);
            for (int c = 0; c < WR; ++c) w[c] = V::fma(V::set1(d[q * OUT + c]), xo, w[c]);
        }
        for (int c = 0; c < WR; ++c) {
            T* p = w0 + c * IN + k;
            V::store(p, V::sub(V::load(p, m), V::mul(lr, w[c])), m);
            w[c] = V::load(p, m);  // (the lanes past IN as dots_tile's masked load has them: 0)
        }
        for (int r = 0; r < XR; ++r) {
            const reg xr = V::load(x + r * IN + k, m);
            for (int c = 0; c < WR; ++c) acc[c][r] = V::fma(xr, w[c], acc[c][r]);
        }
    }
    // Hsums sums each vector's lanes in the same order wherever it sits: up to 8 at a time
    alignas(64) T s[8];
    if constexpr (XR <= WR) {
        for (int r = 0; r < XR; ++r) {
            reg v[8];
            for (int c = 0; c < 8; ++c) v[c] = c < WR ? acc[c][r] : V::zero();
            gemm_detail::Hsums<T>::template run<WR>(v, s);
            for (int c = 0; c < WR; ++c) out[c][r] = s[c];
        }
    } else {
        for (int c = 0; c < WR; ++c) {
            reg v[8];
            for (int r = 0; r < 8; ++r) v[r] = r < XR ? acc[c][r] : V::zero();
            gemm_detail::Hsums<T>::template run<XR>(v, s);
            for (int r = 0; r < XR; ++r) out[c][r] = s[r];
        }
    }
}

// y (XR, OUT) = x W^T (+ b, then max(., 0) with relu) as gemm_dots_cols stores it (beta = 1 on
// the bias: b + sum), W taking the update first; WR rows of W at a time, the last OUT mod WR one
// by one.
template <class T, int XR>
void sgd_dots_rows(T* y, const T* x, T* W, const T* b, int64_t IN, int64_t OUT, bool relu,
                   const T* dy_old, const T* x_old, T lr) {
    using V = gemm_detail::Simd<T>;
    constexpr int WR = fused_wr<T, XR>();
    const auto lrv = V::set1(lr);
    alignas(64) T sums[8][8];
    const auto put = [&](int64_t o, int wr) {
        for (int r = 0; r < XR; ++r)
            for (int c = 0; c < wr; ++c) {
                const T s = sums[c][r];
                T v = b != nullptr ? b[o + c] + s : s;
                if (relu) v = v <= T(0) ? T(0) : v;
                y[r * OUT + o + c] = v;
            }
    };
    int64_t o = 0;
    for (; o + WR <= OUT; o += WR) {
        sgd_dots_tile<T, XR, WR>(IN, OUT, x, W, o, dy_old, x_old, lrv, sums);
        put(o, WR);
    }
    for (; o < OUT; ++o) {
        sgd_dots_tile<T, XR, 1>(IN, OUT, x, W, o, dy_old, x_old, lrv, sums);
        put(o, 1);
    }
}

template <class T, size_t... I>
void sgd_dots_batch(int64_t B, T* y, const T* x, T* W, const T* b, int64_t IN, int64_t OUT,
                    bool relu, const T* dy_old, const T* x_old, T lr, std::index_sequence<I...>) {
    using Fn = void (*)(T*, const T*, T*, const T*, int64_t, int64_t, bool, const T*, const T*, T);
    static constexpr Fn fns[] = {&sgd_dots_rows<T, static_cast<int>(I) + 1>...};
    fns[B - 1](y, x, W, b, IN, OUT, relu, dy_old, x_old, lr);
}

// The small-batch twin of linear_forward_sgd. Plain SGD at a batch of at most kFusedXR (the
// update's the same, as gd.compile's deferral always has it): one pass,
// each vector of W updated and multiplied in registers (sgd_dots_rows). Otherwise kSmallKRows
// rows of W at a time take their deferred update (sgd_gemm_step's tiles) and meet the B rows of x
// in the forward's row-dot tiles (gemm_dots_cols). When the forward's product would not take the
// row-dot path the two run one after the other (the same bits, W then read twice).
template <class T>
void linear_forward_sgd_batch(T* y, const T* x, T* W, const T* b, int64_t B, int64_t IN,
                              int64_t OUT, bool relu, const T* dy_old, const T* x_old,
                              int64_t B_old, const SgdHyper& h) {
    if (!gemm_uses_dots<T>(B, OUT, IN)) {
        sgd_gemm_step<T>(W, nullptr, nullptr, dy_old, x_old, B_old, OUT, IN, h);
        if (relu) linear_forward_relu<T>(y, x, W, b, B, IN, OUT);
        else linear_forward<T>(y, x, W, b, B, IN, OUT);
        return;
    }
    using V = gemm_detail::Simd<T>;
    constexpr int64_t R = gemm_detail::kSmallKRows<T>;
    const bool plain = h.momentum == 0 && h.weight_decay == 0 && !h.maximize;
    if (plain && B <= kFusedXR<T> && B_old == B) {
        sgd_dots_batch<T>(B, y, x, W, b, IN, OUT, relu, dy_old, x_old, T(h.lr),
                          std::make_index_sequence<kFusedXR<T>>{});
        return;
    }
    const SgdTile<T> tile{W, nullptr, nullptr, IN, V::set1(T(h.lr)), plain, h};
    if (b != nullptr)  // linear_forward's bias: the GEMM's C, then beta = 1
        for (int64_t r = 0; r < B; ++r)
            for (int64_t o = 0; o < OUT; ++o) y[r * OUT + o] = b[o];
    const T beta = b != nullptr ? T(1) : T(0);
    for (int64_t o0 = 0; o0 < OUT; o0 += R) {
        const int64_t o1 = std::min(OUT, o0 + R);
        gemm_detail::smallk_rows<T>(o0, o1, B_old, dy_old, OUT, x_old, IN, IN, tile);
        gemm_dots_cols<T>(o0, o1, B, IN, x, IN, W, IN, beta, y, OUT, relu);
    }
}

// Row r of eta times d, one dot product per output element (its order fixed by the ISA, never
// by the thread count).
template <class T>
void precondition_step(T* const* p, const T* eta, const T* d, const int64_t* n, int64_t count,
                       int64_t N) {
    std::vector<int64_t> offset(static_cast<size_t>(count), 0);
    for (int64_t i = 1; i < count; ++i) offset[i] = offset[i - 1] + n[i - 1];
    for_each_block(n, count, 2 * N, [&](int64_t i, int64_t b, int64_t e) {
        T* pi = p[i];
        for (int64_t j = b; j < e; ++j) {
            const T* row = eta + (offset[i] + j) * N;
            T acc = T(0);
#pragma omp simd reduction(+ : acc)
            for (int64_t k = 0; k < N; ++k) acc += row[k] * d[k];
            pi[j] = pi[j] - acc;
        }
    });
}

namespace {

// One block of Adam without amsgrad, |1 - beta1| < 1/2 (lerp's first formula), every element
// updated in one pass: the operations of adam_step's general path below in the same order (so
// the same bits), with each element's values kept in registers between them instead of going
// through L1 once per operation (that path's six loops were bound by their loads and stores).
// Wd: 0 none, 1 Adam's d += wd p, 2 AdamW's p *= decay. Scale: g *= gscale first, stored back.
// g may not overlap p, m or v here (the caller checks).
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define GD_EXACT_QUOTIENT 1
// x / c rounded to nearest without a division, for a constant c: q = x inv with inv = 1 / c
// rounded to nearest, the error x - q c exactly by an FMA, then one FMA correction. By
// Markstein's theorem the result is x / c correctly rounded, the bits of the division, when
// nothing underflows or overflows on the way: x finite and nonzero with x inv finite, and x
// and c far enough above the denormals (x >= 2^-100 in float; Adam's sqrt(v) is at least 2^-75,
// c >= 2^-60 is checked by the caller). The divider bounds Adam's one-pass update (a square
// root and two divisions per element): this takes one of the divisions away. Checked against
// the division on every float x from 2^-100 up for ten constants c.
// (always inlined: as a call, the loops that use it stop vectorising)
template <class T>
__attribute__((always_inline)) inline T exact_quotient(T x, T c, T inv) {
    const T q = x * inv;
    const T e = std::fma(-q, c, x);
    return std::fma(e, inv, q);
}
#else
#define GD_EXACT_QUOTIENT 0
#endif

struct AdamConsts {
    double gscale, w1, beta2, w2, eps, wd, decay, bc2, neg_step;
};
template <class T, bool Scale, bool Max, int Wd>
void adam_pass(T* __restrict p, T* __restrict m, T* __restrict v, T* __restrict g, int64_t len,
               const AdamConsts& c) {
    const T gscale = T(c.gscale), w1 = T(c.w1), beta2 = T(c.beta2), w2 = T(c.w2), eps = T(c.eps);
    const T wd = T(c.wd), decay = T(c.decay), bc2 = T(c.bc2), neg_step = T(c.neg_step);
#if GD_EXACT_QUOTIENT
    const T inv = T(1) / bc2, big = std::numeric_limits<T>::max();
#endif
    for (int64_t j = 0; j < len; ++j) {
        T x = g[j];
        if constexpr (Scale) {
            x = x * gscale;
            g[j] = x;
        }
        T d = Max ? -x : x;
        T pj = p[j];
        if constexpr (Wd == 1) d = d + wd * pj;
        if constexpr (Wd == 2) pj = pj * decay;
        const T mj = m[j] + w1 * (d - m[j]);
        m[j] = mj;
        const T vj = v[j] * beta2 + w2 * d * d;
        v[j] = vj;
#if GD_EXACT_QUOTIENT
        // sqrt(v) / bc2 as exact_quotient: the same bits. 0, inf and NaN are their own quotient.
        const T r = std::sqrt(vj);
        const T den = ((r != T(0)) & (r <= big) ? exact_quotient(r, bc2, inv) : r) + eps;
#else
        const T den = std::sqrt(vj) / bc2 + eps;
#endif
        p[j] = pj + neg_step * mj / den;
    }
}

template <class T, bool Scale, bool Max>
void adam_pass_wd(int wd, T* p, T* m, T* v, T* g, int64_t len, const AdamConsts& c) {
    if (wd == 0) adam_pass<T, Scale, Max, 0>(p, m, v, g, len, c);
    else if (wd == 1) adam_pass<T, Scale, Max, 1>(p, m, v, g, len, c);
    else adam_pass<T, Scale, Max, 2>(p, m, v, g, len, c);
}

template <class T>
void adam_pass_any(bool scale, bool max, int wd, T* p, T* m, T* v, T* g, int64_t len,
                   const AdamConsts& c) {
    if (scale && max) adam_pass_wd<T, true, true>(wd, p, m, v, g, len, c);
    else if (scale) adam_pass_wd<T, true, false>(wd, p, m, v, g, len, c);
    else if (max) adam_pass_wd<T, false, true>(wd, p, m, v, g, len, c);
    else adam_pass_wd<T, false, false>(wd, p, m, v, g, len, c);
}

}  // namespace

// g -> d = -g if maximize; AdamW: p *= 1 - lr wd, Adam: d += wd p;
// m = lerp(m, d, 1 - beta1); v = beta2 v + (1 - beta2) d^2; vmax = max(vmax, v) (amsgrad);
// p -= lr / (1 - beta1^t) * m / (sqrt(v or vmax) / sqrt(1 - beta2^t) + eps)
template <class T>
void adam_step(T* const* p, T* const* m, T* const* v, T* const* vmax, const T* const* g,
               const double* step, const int64_t* n, int64_t count, const AdamHyper& h) {
    const T w1 = T(1 - h.beta1), beta2 = T(h.beta2), w2 = T(1 - h.beta2), eps = T(h.eps);
    const T wd = T(h.weight_decay), decay = T(1 - h.lr * h.weight_decay);
    const T gscale = T(h.grad_scale);
    const bool use_wd = h.weight_decay != 0;
    // Python float arithmetic in PyTorch: lr / (1 - beta1**t), (1 - beta2**t)**0.5, once per
    // tensor (two pow calls per block cost as much as the block's arithmetic)
    std::vector<T> neg_step(static_cast<size_t>(count)), bc2(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
        neg_step[i] = T(-(h.lr / (1 - std::pow(h.beta1, step[i]))));
        bc2[i] = T(std::pow(1 - std::pow(h.beta2, step[i]), 0.5));
    }
    const bool one_pass = !h.amsgrad && std::fabs(w1) < T(0.5);
    const int wd_mode = !use_wd ? 0 : h.decoupled ? 2 : 1;
    for_each_block(n, count, 16, [&](int64_t i, int64_t b, int64_t e) {
        const T neg_step_size = neg_step[i];
        const T bc2_sqrt = bc2[i];
        const int64_t len = e - b;
        T* pi = p[i] + b;
        T* mi = m[i] + b;
        T* vi = v[i] + b;
        T* gi = const_cast<T*>(g[i]) + b;  // (written only when h.scale_grad)
        const int64_t bytes = len * int64_t(sizeof(T));
        // (exact_quotient's range for its constant; outside it, the divisions)
        const bool bc2_ok = !GD_EXACT_QUOTIENT || (bc2_sqrt >= T(0x1p-60) && bc2_sqrt <= T(1));
        if (one_pass && bc2_ok && disjoint(gi, pi, bytes) && disjoint(gi, mi, bytes) &&
            disjoint(gi, vi, bytes)) {
            const AdamConsts c{double(gscale), double(w1), double(beta2), double(w2),
                               double(eps), double(wd), double(decay), double(bc2_sqrt),
                               double(neg_step_size)};
            adam_pass_any<T>(h.scale_grad, h.maximize, wd_mode, pi, mi, vi, gi, len, c);
            return;
        }
        T d[kBlock];
        if (h.scale_grad) {  // clip_grad_norm_'s scaling, stored back as that pass would
            for (int64_t j = 0; j < len; ++j) gi[j] = gi[j] * gscale;
        }
        load_grad(d, g[i] + b, len, h.maximize);
        if (use_wd) {
            if (h.decoupled)
                for (int64_t j = 0; j < len; ++j) pi[j] = pi[j] * decay;
            else
                add_scaled(d, pi, wd, len);
        }
        lerp(mi, d, w1, len);
        decay_add_square(vi, d, beta2, w2, len);
        const T* s = vi;
        if (h.amsgrad) {
            nan_max(vmax[i] + b, vi, len);
            s = vmax[i] + b;
        }
        T* denom = d;  // d is used up
        for (int64_t j = 0; j < len; ++j) denom[j] = std::sqrt(s[j]) / bc2_sqrt + eps;
        addcdiv(pi, mi, denom, neg_step_size, len);
    });
}

// g -> d = -g if maximize; d += wd p; sq = alpha sq + (1 - alpha) d^2;
// centered: ga = lerp(ga, d, 1 - alpha), avg = sqrt(sq - ga^2) + eps, else avg = sqrt(sq) + eps;
// momentum: buf = momentum buf + d / avg, p -= lr buf; else p -= lr d / avg
template <class T>
void rmsprop_step(T* const* p, T* const* square_avg, T* const* grad_avg, T* const* buf,
                  const T* const* g, const int64_t* n, int64_t count, const RmspropHyper& h) {
    const T lr = T(h.lr), alpha = T(h.alpha), w = T(1 - h.alpha), eps = T(h.eps);
    const T wd = T(h.weight_decay), mom = T(h.momentum);
    const bool use_wd = h.weight_decay != 0, use_mom = h.momentum > 0;
    for_each_block(n, count, 16, [&](int64_t i, int64_t b, int64_t e) {
        const int64_t len = e - b;
        T* pi = p[i] + b;
        T* si = square_avg[i] + b;
        T d[kBlock], avg[kBlock];
        load_grad(d, g[i] + b, len, h.maximize);
        if (use_wd) add_scaled(d, pi, wd, len);
        decay_add_square(si, d, alpha, w, len);
        if (h.centered) {
            T* ai = grad_avg[i] + b;
            lerp(ai, d, w, len);
            // square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
            for (int64_t j = 0; j < len; ++j) avg[j] = std::sqrt(si[j] + T(-1) * ai[j] * ai[j]);
        } else {
            for (int64_t j = 0; j < len; ++j) avg[j] = std::sqrt(si[j]);
        }
        for (int64_t j = 0; j < len; ++j) avg[j] = avg[j] + eps;
        if (use_mom) {
            T* bi = buf[i] + b;
            for (int64_t j = 0; j < len; ++j) bi[j] = bi[j] * mom;
            addcdiv(bi, d, avg, T(1), len);
            for (int64_t j = 0; j < len; ++j) pi[j] = pi[j] - lr * bi[j];
        } else {
            addcdiv(pi, d, avg, -lr, len);
        }
    });
}

// g -> d = -g if maximize; d += wd p; sum += d^2; p -= clr d / (sqrt(sum) + eps) with
// clr = lr / (1 + (t - 1) lr_decay)
template <class T>
void adagrad_step(T* const* p, T* const* sum, const T* const* g, const double* step,
                  const int64_t* n, int64_t count, const AdagradHyper& h) {
    const T eps = T(h.eps), wd = T(h.weight_decay);
    const bool use_wd = h.weight_decay != 0;
    for_each_block(n, count, 10, [&](int64_t i, int64_t b, int64_t e) {
        const T neg_clr = T(-(h.lr / (1 + (step[i] - 1) * h.lr_decay)));
        const int64_t len = e - b;
        T* pi = p[i] + b;
        T* si = sum[i] + b;
        T d[kBlock], std_[kBlock];
        load_grad(d, g[i] + b, len, h.maximize);
        if (use_wd) add_scaled(d, pi, wd, len);
        decay_add_square(si, d, T(1), T(1), len);  // state_sum.addcmul_(d, d, value=1)
        for (int64_t j = 0; j < len; ++j) std_[j] = std::sqrt(si[j]) + eps;
        addcdiv(pi, d, std_, neg_clr, len);
    });
}

namespace {

// |g|^p of one element in double, as every lane of norm_block forms it
template <int Mode>
inline double norm_term(double a, double p) {
    if constexpr (Mode == 2) return a * a;
    else if constexpr (Mode == 1) return std::fabs(a);
    else return std::pow(std::fabs(a), p);
}

#if defined(__AVX2__)
// kNormLanes double lanes in 8 registers of 4 (the AVX-512 build too: on Zen 4, which splits a
// 512-bit operation in two, the 256-bit loop was faster, 14 against 17 us on 0.94 MB in L2);
// lane l holds the block's elements j = l (mod kNormLanes)
using NormV = __m256d;
constexpr int kNormW = 4;
inline NormV norm_zero() { return _mm256_setzero_pd(); }
inline NormV norm_load(const float* x) { return _mm256_cvtps_pd(_mm_loadu_ps(x)); }
inline NormV norm_load(const double* x) { return _mm256_loadu_pd(x); }
inline NormV norm_add(NormV a, NormV b) { return _mm256_add_pd(a, b); }
inline NormV norm_mul(NormV a, NormV b) { return _mm256_mul_pd(a, b); }
inline NormV norm_fma(NormV a, NormV b, NormV c) { return _mm256_fmadd_pd(a, b, c); }
inline NormV norm_abs(NormV a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
inline void norm_store(double* y, NormV a) { _mm256_storeu_pd(y, a); }
constexpr int kNormRegs = static_cast<int>(kNormLanes) / kNormW;
#endif

// sum over the block g[0, len) (len <= kNormBlock) of norm_term (Mode 2: g g, 1: |g|, 0:
// |g|^p) in kNormLanes lanes, element j into lane j % kNormLanes, then the lanes added in a fixed
// tree. (A float32 g g is exact in double, so a fused multiply-add there rounds once as the
// separate add does; a float64 one is not, so it is multiplied, then added.)
template <class T, int Mode>
double norm_block(const T* g, int64_t len, double p) {
    double lanes[kNormLanes] = {};
    int64_t j = 0;
#if defined(__AVX2__)
    if constexpr (Mode != 0) {
        NormV acc[kNormRegs];
        for (int q = 0; q < kNormRegs; ++q) acc[q] = norm_zero();
        for (; j + kNormLanes <= len; j += kNormLanes)
            for (int q = 0; q < kNormRegs; ++q) {
                const NormV x = norm_load(g + j + q * kNormW);
                if constexpr (Mode == 1) acc[q] = norm_add(acc[q], norm_abs(x));
                else if constexpr (sizeof(T) == sizeof(float)) acc[q] = norm_fma(x, x, acc[q]);
                else acc[q] = norm_add(acc[q], norm_mul(x, x));
            }
        for (int q = 0; q < kNormRegs; ++q) norm_store(lanes + q * kNormW, acc[q]);
    }
#else
    if constexpr (Mode != 0)
        for (; j + kNormLanes <= len; j += kNormLanes)
            for (int64_t l = 0; l < kNormLanes; ++l)
                lanes[l] += norm_term<Mode>(double(g[j + l]), p);
#endif
    for (int64_t l = 0; j < len; ++j, l = (l + 1) % kNormLanes)
        lanes[l] += norm_term<Mode>(double(g[j]), p);
    for (int64_t w = kNormLanes / 2; w >= 1; w /= 2)
        for (int64_t l = 0; l < w; ++l) lanes[l] += lanes[l + w];
    return lanes[0];
}

// max |g| over the block (exact, any order), NaN if an element is NaN
template <class T>
double max_block(const T* g, int64_t len) {
    T mx = T(0);
    int nan = 0;
#pragma omp simd reduction(max : mx) reduction(| : nan)
    for (int64_t j = 0; j < len; ++j) {
        const T a = std::fabs(g[j]);
        mx = a > mx ? a : mx;
        nan |= a != a;
    }
    return nan ? std::numeric_limits<double>::quiet_NaN() : double(mx);
}

}  // namespace

template <class T>
double grad_norm(const T* const* g, const int64_t* n, int64_t count, double norm_type) {
    // the blocks, (tensor, first element): a block's value never depends on who computes it
    std::vector<std::pair<int64_t, int64_t>> blocks;
    int64_t total = 0;
    for (int64_t i = 0; i < count; ++i) {
        for (int64_t b = 0; b < n[i]; b += kNormBlock) blocks.emplace_back(i, b);
        total += n[i];
    }
    std::vector<double> part(blocks.size(), 0.0);
    const bool inf = std::isinf(norm_type);
    const int mode = inf ? 3 : norm_type == 2.0 ? 2 : norm_type == 1.0 ? 1 : 0;
    const int64_t flops = mode == 0 ? 40 : 2;
    parallel_chunks(static_cast<int64_t>(blocks.size()), 1, total * flops,
                    [&](int64_t c0, int64_t c1) {
                        for (int64_t c = c0; c < c1; ++c) {
                            const T* x = g[blocks[c].first] + blocks[c].second;
                            const int64_t len =
                                std::min(kNormBlock, n[blocks[c].first] - blocks[c].second);
                            part[c] = mode == 3   ? max_block<T>(x, len)
                                      : mode == 2 ? norm_block<T, 2>(x, len, 2.0)
                                      : mode == 1 ? norm_block<T, 1>(x, len, 1.0)
                                                  : norm_block<T, 0>(x, len, norm_type);
                        }
                    });
    double r = 0.0;
    bool nan = false;
    for (double v : part) {
        if (std::isnan(v)) nan = true;
        if (inf) r = v > r ? v : r;
        else r += v;
    }
    if (!inf) r = mode == 2 ? std::sqrt(r) : mode == 1 ? r : std::pow(r, 1.0 / norm_type);
    // one NaN for every ISA (a NaN's sign and payload would depend on the order)
    return nan || std::isnan(r) ? std::numeric_limits<double>::quiet_NaN() : r;
}

template <class T>
void scale_grads(T* const* g, const int64_t* n, int64_t count, T c) {
    for_each_block(n, count, 1, [&](int64_t i, int64_t b, int64_t e) {
        T* x = g[i];
        for (int64_t j = b; j < e; ++j) x[j] = x[j] * c;
    });
}

#define GD_OPTIM_INSTANTIATE(T)                                                                   \
    template void sgd_gemm_step<T>(T*, T*, T*, const T*, const T*, int64_t, int64_t, int64_t,   \
                                   const SgdHyper&);                                           \
    template void linear_forward_sgd_batch<T>(T*, const T*, T*, const T*, int64_t, int64_t,     \
                                              int64_t, bool, const T*, const T*, int64_t,       \
                                              const SgdHyper&);                                 \
    template void sgd_outer_step<T>(T*, T*, const T*, const T*, int64_t, int64_t,                \
                                    const SgdHyper&);                                            \
    template void sgd_outer_rows<T>(T*, T*, const T*, const T*, int64_t, int64_t, int64_t,       \
                                    const SgdHyper&);                                            \
    template void linear_forward_sgd<T>(T*, const T*, T*, const T*, int64_t, int64_t, const T*,  \
                                        const T*, const SgdHyper&);                               \
    template void sgd_step<T>(T* const*, T* const*, T* const*, const T* const*, const T* const*, \
                              const uint8_t*, const int64_t*, int64_t, const SgdHyper&);         \
    template void precondition_step<T>(T* const*, const T*, const T*, const int64_t*, int64_t,   \
                                       int64_t);                                                  \
    template void adam_step<T>(T* const*, T* const*, T* const*, T* const*, const T* const*,      \
                               const double*, const int64_t*, int64_t, const AdamHyper&);         \
    template double grad_norm<T>(const T* const*, const int64_t*, int64_t, double);              \
    template void scale_grads<T>(T* const*, const int64_t*, int64_t, T);                         \
    template void rmsprop_step<T>(T* const*, T* const*, T* const*, T* const*, const T* const*,   \
                                  const int64_t*, int64_t, const RmspropHyper&);                  \
    template void adagrad_step<T>(T* const*, T* const*, const T* const*, const double*,          \
                                  const int64_t*, int64_t, const AdagradHyper&);
GD_OPTIM_INSTANTIATE(float)
GD_OPTIM_INSTANTIATE(double)
#undef GD_OPTIM_INSTANTIATE

}  // namespace GD_NS
}  // namespace gd

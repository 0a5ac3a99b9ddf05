// The replay loop of gd.compile. Buffer meanings per instruction (p = pointers, i = ints,
// d = doubles), mirroring the eager bindings' kernel calls one for one:
//   linear_fwd   p[y, x, W, b|0]                 i[B, IN, OUT(, 1: then y = relu(y))]
//   linear_bwd   p[dx|0, dW|0, db|0, dy, x, W]   i[B, IN, OUT]
//   act_fwd      p[y, x]                         i[op, N]     d[alpha]
//   act_bwd      p[dx, dy, x|0, y|0]             i[op, N]     d[alpha]
//   (log_)softmax_fwd p[y, x]  i[B, C];  (log_)softmax_bwd p[dx, dy, y]  i[B, C]
//   ce_fwd       p[loss, lse, logits, target]    i[B, C, ignore_index]
//   ce_bwd       p[dlogits, dloss, logits, lse, target]  i[dloss_stride, B, C, ignore_index]
//   mse_fwd      p[out, a, b]                    i[N]
//   mse_bwd      p[da, a, b, dloss|0]            i[N]         d[scale]  (times dloss[0] if given)
//   sum_all      p[out, x] i[N];  sum_axis p[y, x] i[outer, R, inner]
//   gemm         p[C, A, B]  i[ta, tb, M, N, K, lda, ldb, ldc]  d[alpha, beta]
//   scale        p[out, x, factor (double)]      i[N]         out = x * T(factor)
//   count_scale  p[out (double), target]         i[B, ignore_index]  out = 1 / #valid (or NaN)
//   copy         p[dst, src]                     i[bytes]
//   sgd          lists[params, grads, bufs]      i[sizes...]  d[lr, momentum, dampening,
//                                                               weight_decay, nesterov, maximize]
//                a diagonal lr: lists[..., lr (a pointer into it per parameter)];
//                a matrix lr: p[eta (N, N), direction (N)] lists[..., [], direction per parameter]
//                (sgd_step writes the direction, then precondition_step: p -= eta @ direction)
//   linear_bwd_sgd  p[dx|0, dW, db|0, dy, x, W, b|0]  i[B, IN, OUT]  d[as sgd]
//                lists[[W's momentum buffer] or [], [b's] or []]: linear_bwd at batch B <=
//                kFuseSgdMaxBatch fused with the SGD update of W (and b when given), each tile
//                of dW applied while it is in registers or L1 (B = 1: sgd_outer_step, else
//                sgd_gemm_step); made by Program::optimize, bitwise equal to the pair.
//                i[3] = 1 (set_lazy): dW is not stored; materialize(index) writes it on demand
//   ew           p[y, x0|0, x1|0, x2|0]  i[op, nd, shape (nd), y strides (nd), x0..x2 strides
//                (nd each, in elements, 0 where broadcast)]  d[s0, s1, s2]: the elementwise family
//                (elementwise.hpp), one instruction for every op; a null xk is the scalar sk
//   reduce       p[y|0, idx|0, x]  i[op (Red), nd, axes (bit mask), keepdim, shape (nd),
//                x's element strides (nd)]  d[param]: the kernel of _core.reduce
//   adam         lists[params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq, step (float32 0-d)]
//                i[sizes...]  d[lr, beta1, beta2, eps, weight_decay, amsgrad, maximize,
//                               decoupled]; reads step + 1 as the step number, then step += 1
//   rmsprop      lists[params, grads, square_avg, grad_avg, momentum_buffer, step (float32 0-d)]
//                i[sizes...]  d[lr, alpha, eps, weight_decay, momentum, centered, maximize];
//                grad_avg / momentum_buffer [] when off; then step += 1
//   adagrad      lists[params, grads, sum, step (float32 0-d)]  i[sizes...]
//                d[lr, lr_decay, eps, weight_decay, maximize]; reads step + 1, then step += 1
//   norm         batch norm, layer norm, embedding: i[0] picks the kernel (layouts in norm.hpp)
//   clip_norm    p[norm (double)]  lists[grads]  i[sizes...]  d[norm_type, max_norm(, 1)]
//                (clip_grad_norm below: scales the gradients in place when the norm is too big;
//                d[2] = 1: only the norm, the update after it scales (fuse_clip))
//   adam or sgd fused with the clip_norm before it (fuse_clip): p[that norm]  d[..., max_norm]:
//                scales each gradient (stored back) by the clip coefficient as it reads it
#include "program.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>
#include <string>

#include "conv.hpp"
#include "fuse.hpp"
#include "instr_registry.hpp"
#include "kernels.hpp"
#include "norm.hpp"
#include "parallel.hpp"

namespace gd {
namespace {

template <class T>
T* P(const Instr& in, size_t k) {
    return static_cast<T*>(in.p[k]);
}

// The eager binding checks targets before the kernel reads logits[target]; a replay must too.
void check_targets(const int64_t* t, int64_t B, int64_t C, int64_t ignore_index) {
    for (int64_t r = 0; r < B; ++r)
        if (t[r] != ignore_index && (t[r] < 0 || t[r] >= C))
            throw std::invalid_argument("cross_entropy (compiled step): target[" +
                                        std::to_string(r) + "] = " + std::to_string(t[r]) +
                                        " is out of range for " + std::to_string(C) + " classes");
}

// Batches up to this fuse a linear_bwd with its weight's SGD update (fuse_sgd): their weight
// gradient has one K block in every GEMM path (gemm.cpp), so the fused update forms it with the
// same bits.
constexpr int64_t kFuseSgdMaxBatch = 32;

inline SgdHyper sgd_hyper(const std::vector<double>& d) {
    return SgdHyper{d[0], d[1], d[2], d[3], d[4] != 0, d[5] != 0};
}

// linear_bwd_sgd: dx and db, dW unless lazy, the bias's update, and W's unless update_w is false
// (a deferred update: Program::run_deferrable)
template <class T>
void bwd_sgd(const Instr& in, bool update_w) {
    const KernelTable<T>& K = kernels<T>();
    const auto& i = in.i;
    int64_t OUT = i[2];
    const int64_t IN = i[1];
    T* dW = P<T>(in, 1);
    T* W = P<T>(in, 5);
    const T* dy = P<T>(in, 3);
    const T* x = P<T>(in, 4);
    const int64_t B = i[0];
    const SgdHyper h = sgd_hyper(in.d);
    const uint8_t fresh = 0;  // momentum buffers exist after recording (bias below)
    // dx (and db) first: dx reads W before its update, exactly as the unfused pair
    if (in.p[0] != nullptr || in.p[2] != nullptr)
        K.linear_backward(P<T>(in, 0), nullptr, P<T>(in, 2), dy, x, W, B, IN, OUT);
    T* wbuf = in.lists[0].empty() ? nullptr : static_cast<T*>(in.lists[0][0]);
    // dW itself is stored only when not lazy (i[3] = 1: materialize() stores it later)
    const bool store_dw = i.size() < 4 || i[3] == 0;
    if (B > 1) {
        if (update_w) K.sgd_gemm_step(W, wbuf, store_dw ? dW : nullptr, dy, x, B, OUT, IN, h);
        else if (store_dw) K.gemm(true, false, OUT, IN, B, T(1), dy, OUT, x, IN, T(0), dW, IN);
    } else {
        // W's update takes its gradient dy[o] x[j] as it goes (the K = 1 product's bits)
        if (store_dw) K.gemm(true, false, OUT, IN, 1, T(1), dy, OUT, x, IN, T(0), dW, IN);
        if (update_w) K.sgd_outer_step(W, wbuf, dy, x, OUT, IN, h);
    }
    if (in.p[6] != nullptr) {
        T* pb = P<T>(in, 6);
        T* bbuf = in.lists[1].empty() ? nullptr : static_cast<T*>(in.lists[1][0]);
        const T* pg = P<T>(in, 2);
        K.sgd_step(&pb, bbuf != nullptr ? &bbuf : nullptr, nullptr, &pg, nullptr, &fresh, &OUT, 1,
                   h);
    }
}

}  // namespace

template <class T>
double clip_grad_norm(T* const* grads, const int64_t* sizes, int64_t n, double norm_type,
                      double max_norm, bool error_if_nonfinite, bool scale) {
    const KernelTable<T>& K = kernels<T>();
    const double total = K.grad_norm(grads, sizes, n, norm_type);
    if (error_if_nonfinite && !std::isfinite(total)) return total;
    double coef;
    if (scale && clip_scales(total, max_norm, coef))
        K.scale_grads(grads, sizes, n, static_cast<T>(coef));
    return total;
}

template double clip_grad_norm<float>(float* const*, const int64_t*, int64_t, double, double,
                                      bool, bool);
template double clip_grad_norm<double>(double* const*, const int64_t*, int64_t, double, double,
                                       bool, bool);

namespace {

// an optimizer's per-parameter step counts (0-d float32) += 1, in float32 as eager
void increment_steps(const std::vector<void*>& steps) {
    for (void* p : steps) {
        float* s = static_cast<float*>(p);
        *s = *s + 1.0f;
    }
}

template <class T>
void run_one(const Instr& in) {
    const KernelTable<T>& K = kernels<T>();
    const auto& i = in.i;
    const auto& d = in.d;
    switch (in.code) {
        case Code::linear_fwd:
            if (i.size() > 3 && i[3] != 0)  // a ReLU fused in (fuse_relu)
                K.linear_forward_relu(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), P<T>(in, 3), i[0],
                                      i[1], i[2]);
            else
                K.linear_forward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), P<T>(in, 3), i[0], i[1],
                                 i[2]);
            break;
        case Code::linear_bwd:
            K.linear_backward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), P<T>(in, 3), P<T>(in, 4),
                              P<T>(in, 5), i[0], i[1], i[2]);
            break;
        case Code::act_fwd:
            K.activation_forward(static_cast<Act>(i[0]), P<T>(in, 0), P<T>(in, 1), i[1], T(d[0]));
            break;
        case Code::act_bwd:
            K.activation_backward(static_cast<Act>(i[0]), P<T>(in, 0), P<T>(in, 1), P<T>(in, 2),
                                  P<T>(in, 3), i[1], T(d[0]));
            break;
        case Code::softmax_fwd: K.softmax_forward(P<T>(in, 0), P<T>(in, 1), i[0], i[1]); break;
        case Code::softmax_bwd:
            K.softmax_backward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), i[0], i[1]);
            break;
        case Code::log_softmax_fwd:
            K.log_softmax_forward(P<T>(in, 0), P<T>(in, 1), i[0], i[1]);
            break;
        case Code::log_softmax_bwd:
            K.log_softmax_backward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), i[0], i[1]);
            break;
        case Code::ce_fwd:
            check_targets(static_cast<const int64_t*>(in.p[3]), i[0], i[1], i[2]);
            K.cross_entropy_forward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2),
                                    static_cast<const int64_t*>(in.p[3]), i[0], i[1], i[2]);
            break;
        case Code::ce_bwd:
            K.cross_entropy_backward(P<T>(in, 0), P<T>(in, 1), i[0], P<T>(in, 2), P<T>(in, 3),
                                     static_cast<const int64_t*>(in.p[4]), i[1], i[2], i[3]);
            break;
        case Code::mse_fwd: K.mse_forward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), i[0]); break;
        case Code::mse_bwd: {
            const double s = in.p[3] != nullptr ? d[0] * double(*P<T>(in, 3)) : d[0];
            K.mse_backward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), i[0], T(s));
            break;
        }
        case Code::sum_all: K.sum_all(P<T>(in, 0), P<T>(in, 1), i[0]); break;
        case Code::sum_axis: K.sum_axis(P<T>(in, 0), P<T>(in, 1), i[0], i[1], i[2]); break;
        case Code::reduce:
            K.reduce(static_cast<Red>(i[0]), P<T>(in, 0), static_cast<int64_t*>(in.p[1]),
                     P<T>(in, 2), &i[4], &i[4 + i[1]], i[1], static_cast<uint64_t>(i[2]), d[0]);
            break;
        case Code::gemm:
            K.gemm(i[0] != 0, i[1] != 0, i[2], i[3], i[4], T(d[0]), P<T>(in, 1), i[5], P<T>(in, 2),
                   i[6], T(d[1]), P<T>(in, 0), i[7]);
            break;
        case Code::scale: {
            const T f = T(*static_cast<const double*>(in.p[2]));
            const T* x = P<T>(in, 1);
            T* out = P<T>(in, 0);
            for (int64_t k = 0; k < i[0]; ++k) out[k] = x[k] * f;
            break;
        }
        case Code::count_scale: {
            const int64_t* t = static_cast<const int64_t*>(in.p[1]);
            int64_t n = 0;
            for (int64_t k = 0; k < i[0]; ++k) n += t[k] != i[1];
            *static_cast<double*>(in.p[0]) =
                n ? 1.0 / double(n) : std::numeric_limits<double>::quiet_NaN();
            break;
        }
        case Code::copy: std::memcpy(in.p[0], in.p[1], static_cast<size_t>(i[0])); break;
        case Code::sgd: {
            // the pointer lists as the kernel's T* arrays (void* and T* share their
            // representation on every platform this builds for): no allocation per replay
            const auto& L = in.lists;
            static_assert(sizeof(void*) == sizeof(T*), "pointer lists");
            T* const* params = reinterpret_cast<T* const*>(L[0].data());
            const T* const* grads = reinterpret_cast<const T* const*>(L[1].data());
            T* const* bufs = L[2].empty() ? nullptr : reinterpret_cast<T* const*>(L[2].data());
            SgdHyper h{d[0], d[1], d[2], d[3], d[4] != 0, d[5] != 0};
            if (in.p.size() == 1)  // fuse_clip: the clip_norm before left its scaling to us
                h.scale_grad = clip_scales(*static_cast<const double*>(in.p[0]), d[6],
                                           h.grad_scale);
            thread_local std::vector<uint8_t> fresh;  // all 0: buffers exist after recording
            if (fresh.size() < L[0].size()) fresh.resize(L[0].size(), 0);
            const auto count = static_cast<int64_t>(L[0].size());
            const T* const* diag = L.size() > 3 && !L[3].empty()
                                       ? reinterpret_cast<const T* const*>(L[3].data())
                                       : nullptr;
            T* const* dir =
                L.size() > 4 && !L[4].empty() ? reinterpret_cast<T* const*>(L[4].data()) : nullptr;
            K.sgd_step(params, bufs, dir, grads, diag, fresh.data(), i.data(), count, h);
            if (dir != nullptr) {  // a matrix learning rate, as the eager binding applies it
                int64_t N = 0;
                for (int64_t k = 0; k < count; ++k) N += i[k];
                K.precondition_step(params, P<T>(in, 0), P<T>(in, 1),
                                    i.data(), count, N);
            }
            break;
        }
        case Code::linear_bwd_sgd: bwd_sgd<T>(in, true); break;
        case Code::clip_norm: {
            static_assert(sizeof(void*) == sizeof(T*), "pointer lists");
            *static_cast<double*>(in.p[0]) =
                clip_grad_norm<T>(reinterpret_cast<T* const*>(in.lists[0].data()), i.data(),
                                  static_cast<int64_t>(in.lists[0].size()), d[0], d[1], false,
                                  !(d.size() > 2 && d[2] != 0));
            break;
        }
        case Code::conv: conv_instr_run(in.p, i, in.f64); break;
        case Code::ew: {
            // (the binding converts its Python scalars to T the same way)
            const int64_t nd = i[1];
            const int64_t* shape = i.data() + 2;
            const int64_t* ys = shape + nd;
            const int64_t* xs[3] = {ys + nd, ys + 2 * nd, ys + 3 * nd};
            const void* xp[3] = {in.p[1], in.p[2], in.p[3]};
            const T s[3] = {T(d[0]), T(d[1]), T(d[2])};
            K.elementwise(static_cast<Ew>(i[0]), P<T>(in, 0), ys, xp, xs, s, shape, nd);
            break;
        }
        case Code::rmsprop: {
            const auto& L = in.lists;
            static_assert(sizeof(void*) == sizeof(T*), "pointer lists");
            const auto list = [&](size_t l) {
                return L[l].empty() ? nullptr : reinterpret_cast<T* const*>(L[l].data());
            };
            const RmspropHyper h{d[0], d[1], d[2], d[3], d[4], d[5] != 0, d[6] != 0};
            K.rmsprop_step(list(0), list(2), list(3), list(4),
                           reinterpret_cast<const T* const*>(L[1].data()), i.data(),
                           static_cast<int64_t>(L[0].size()), h);
            increment_steps(L[5]);
            break;
        }
        case Code::adagrad: {
            const auto& L = in.lists;
            static_assert(sizeof(void*) == sizeof(T*), "pointer lists");
            thread_local std::vector<double> steps;
            steps.clear();
            for (void* s : L[3]) steps.push_back(double(*static_cast<const float*>(s)) + 1.0);
            const AdagradHyper h{d[0], d[1], d[2], d[3], d[4] != 0};
            K.adagrad_step(reinterpret_cast<T* const*>(L[0].data()),
                           reinterpret_cast<T* const*>(L[2].data()),
                           reinterpret_cast<const T* const*>(L[1].data()), steps.data(), i.data(),
                           static_cast<int64_t>(L[0].size()), h);
            increment_steps(L[3]);
            break;
        }
        case Code::adam: {
            const auto& L = in.lists;
            const size_t n = L[0].size();
            std::vector<T*> params, m, v, vmax;
            std::vector<const T*> grads;
            std::vector<double> steps;
            for (size_t k = 0; k < n; ++k) {
                params.push_back(static_cast<T*>(L[0][k]));
                grads.push_back(static_cast<const T*>(L[1][k]));
                m.push_back(static_cast<T*>(L[2][k]));
                v.push_back(static_cast<T*>(L[3][k]));
                if (!L[4].empty()) vmax.push_back(static_cast<T*>(L[4][k]));
                steps.push_back(double(*static_cast<const float*>(L[5][k])) + 1.0);
            }
            AdamHyper h{d[0], d[1], d[2], d[3], d[4], d[5] != 0, d[6] != 0, d[7] != 0};
            if (!in.p.empty())  // fuse_clip: the clip_norm before left its scaling to us
                h.scale_grad = clip_scales(*static_cast<const double*>(in.p[0]), d[8],
                                           h.grad_scale);
            K.adam_step(params.data(), m.data(), v.data(), vmax.empty() ? nullptr : vmax.data(),
                        grads.data(), steps.data(), i.data(), static_cast<int64_t>(n), h);
            for (size_t k = 0; k < n; ++k) {  // the optimizer's step += 1, in float32 as eager
                float* s = static_cast<float*>(L[5][k]);
                *s = *s + 1.0f;
            }
            break;
        }
        case Code::norm: run_norm_instr(in); break;  // batch/layer norm, embedding (norm.hpp)
        case Code::call: instr_kind(i[0]).run(in); break;
        case Code::ew_fused: run_fused<T>(in); break;
    }
}

}  // namespace

template <class T>
void Program::run_deferrable(const Instr& in, bool defer) const {
    const Deferred& df = defer_[static_cast<size_t>(in.defer)];
    if (in.code == Code::linear_fwd) {
        if (!df.pending) {
            run_one<T>(in);
            return;
        }
        const auto& i = in.i;
        if (i[0] == 1)
            kernels<T>().linear_forward_sgd(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), P<T>(in, 3),
                                            i[1], i[2], df.dy<T>(), df.x<T>(), df.h);
        else
            kernels<T>().linear_forward_sgd_batch(
                P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), P<T>(in, 3), i[0], i[1], i[2],
                i.size() > 3 && i[3] != 0, df.dy<T>(), df.x<T>(), i[0], df.h);
        df.pending = false;
        return;
    }
    // the linear_bwd_sgd (its linear_fwd ran earlier in this run: nothing is pending here)
    if (!defer) {
        run_one<T>(in);
        return;
    }
    bwd_sgd<T>(in, false);
    const auto& i = in.i;
    std::memcpy(df.dy<T>(), in.p[3], static_cast<size_t>(i[0] * i[2]) * sizeof(T));
    std::memcpy(df.x<T>(), in.p[4], static_cast<size_t>(i[0] * i[1]) * sizeof(T));
    df.h = sgd_hyper(in.d);  // (the learning rate may change before the update is applied)
    df.pending = true;
}

void Program::step(const Instr& in, bool defer) const {
    if (in.defer >= 0) {
        if (in.f64) run_deferrable<double>(in, defer);
        else run_deferrable<float>(in, defer);
    } else if (in.f64) {
        run_one<double>(in);
    } else {
        run_one<float>(in);
    }
}

void Program::run(bool defer) const {
    for (const Instr& in : code_) step(in, defer);
}

std::vector<double> Program::profile(int repeat, bool defer) const {
    using clock = std::chrono::steady_clock;
    std::vector<std::vector<double>> t(code_.size());
    for (int r = 0; r < repeat; ++r)
        for (size_t k = 0; k < code_.size(); ++k) {
            const auto t0 = clock::now();
            step(code_[k], defer);
            t[k].push_back(std::chrono::duration<double>(clock::now() - t0).count());
        }
    flush();
    std::vector<double> med;
    for (auto& v : t) {
        if (v.empty()) {
            med.push_back(0.0);
            continue;
        }
        std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
        med.push_back(v[v.size() / 2]);
    }
    return med;
}

bool Program::pending() const {
    for (const Deferred& df : defer_)
        if (df.pending) return true;
    return false;
}

void Program::flush() const {
    for (const Deferred& df : defer_) {
        if (!df.pending) continue;
        const Instr& in = code_[df.bwd];
        const auto& i = in.i;
        if (in.f64 && i[0] == 1)
            kernels<double>().sgd_outer_step(P<double>(in, 5), nullptr, df.dy<double>(),
                                             df.x<double>(), i[2], i[1], df.h);
        else if (in.f64)
            kernels<double>().sgd_gemm_step(P<double>(in, 5), nullptr, nullptr, df.dy<double>(),
                                            df.x<double>(), i[0], i[2], i[1], df.h);
        else if (i[0] == 1)
            kernels<float>().sgd_outer_step(P<float>(in, 5), nullptr, df.dy<float>(),
                                            df.x<float>(), i[2], i[1], df.h);
        else
            kernels<float>().sgd_gemm_step(P<float>(in, 5), nullptr, nullptr, df.dy<float>(),
                                           df.x<float>(), i[0], i[2], i[1], df.h);
        df.pending = false;
    }
}

std::vector<void*> Program::deferred_weights() const {
    std::vector<void*> w;
    for (const Deferred& df : defer_) w.push_back(code_[df.bwd].p[5]);
    return w;
}

std::vector<Operand> operands(const Instr& in) {
    const int64_t e = in.f64 ? 8 : 4;  // element bytes
    const auto& i = in.i;
    std::vector<Operand> ops;
    const auto R = [&](int slot, int64_t n) {
        if (in.p[slot] != nullptr) ops.push_back({in.p[slot], n, true, false, slot});
    };
    const auto W = [&](int slot, int64_t n) {
        if (in.p[slot] != nullptr) ops.push_back({in.p[slot], n, false, true, slot});
    };
    const auto RW = [&](int slot, int64_t n) {
        if (in.p[slot] != nullptr) ops.push_back({in.p[slot], n, true, true, slot});
    };
    switch (in.code) {
        case Code::linear_fwd:
            W(0, e * i[0] * i[2]);
            R(1, e * i[0] * i[1]);
            R(2, e * i[2] * i[1]);
            R(3, e * i[2]);
            break;
        case Code::linear_bwd:
            W(0, e * i[0] * i[1]);
            W(1, e * i[2] * i[1]);
            W(2, e * i[2]);
            R(3, e * i[0] * i[2]);
            if (in.p[1] != nullptr) R(4, e * i[0] * i[1]);
            if (in.p[0] != nullptr) R(5, e * i[2] * i[1]);
            break;
        case Code::linear_bwd_sgd:
            W(0, e * i[0] * i[1]);
            if (i.size() < 4 || i[3] == 0) W(1, e * i[2] * i[1]);  // lazy: written on demand
            W(2, e * i[2]);
            R(3, e * i[0] * i[2]);
            R(4, e * i[0] * i[1]);
            RW(5, e * i[2] * i[1]);
            RW(6, e * i[2]);
            if (!in.lists[0].empty()) ops.push_back({in.lists[0][0], e * i[2] * i[1], true, true, -1});
            if (!in.lists[1].empty()) ops.push_back({in.lists[1][0], e * i[2], true, true, -1});
            break;
        case Code::act_fwd: W(0, e * i[1]); R(1, e * i[1]); break;
        case Code::act_bwd:
            W(0, e * i[1]);
            R(1, e * i[1]);
            R(2, e * i[1]);
            R(3, e * i[1]);
            break;
        case Code::softmax_fwd:
        case Code::log_softmax_fwd: W(0, e * i[0] * i[1]); R(1, e * i[0] * i[1]); break;
        case Code::softmax_bwd:
        case Code::log_softmax_bwd:
            W(0, e * i[0] * i[1]);
            R(1, e * i[0] * i[1]);
            R(2, e * i[0] * i[1]);
            break;
        case Code::ce_fwd:
            W(0, e);
            W(1, e * i[0]);
            R(2, e * i[0] * i[1]);
            R(3, 8 * i[0]);
            break;
        case Code::ce_bwd:
            W(0, e * i[1] * i[2]);
            R(1, i[0] != 0 ? e * i[1] : e);
            R(2, e * i[1] * i[2]);
            R(3, e * i[1]);
            R(4, 8 * i[1]);
            break;
        case Code::mse_fwd: W(0, e); R(1, e * i[0]); R(2, e * i[0]); break;
        case Code::mse_bwd:
            W(0, e * i[0]);
            R(1, e * i[0]);
            R(2, e * i[0]);
            R(3, e);
            break;
        case Code::sum_all: W(0, e); R(1, e * i[0]); break;
        case Code::sum_axis: W(0, e * i[0] * i[2]); R(1, e * i[0] * i[1] * i[2]); break;
        case Code::reduce: {
            // outputs: one element per kept position; x: the bytes between its lowest and
            // highest element (any strides, negative ones too)
            const int64_t nd = i[1];
            int64_t out = 1, lo = 0, hi = 0, count = 1;
            for (int64_t d = 0; d < nd; ++d) {
                const int64_t n = i[4 + d], st = i[4 + nd + d];
                count *= n;
                if (!((static_cast<uint64_t>(i[2]) >> d) & 1u)) out *= n;
                if (n > 0) (st < 0 ? lo : hi) += (n - 1) * st;
            }
            W(0, e * out);
            W(1, 8 * out);
            if (count > 0 && in.p[2] != nullptr)
                ops.push_back({static_cast<char*>(in.p[2]) + e * lo, e * (hi - lo + 1), true,
                               false, 2});
            break;
        }
        case Code::gemm:
            if (in.d[1] != 0.0) RW(0, e * i[2] * i[3]);
            else W(0, e * i[2] * i[3]);
            R(1, e * i[2] * i[4]);
            R(2, e * i[4] * i[3]);
            break;
        case Code::scale: W(0, e * i[0]); R(1, e * i[0]); R(2, 8); break;
        case Code::count_scale: W(0, 8); R(1, 8 * i[0]); break;
        case Code::copy: W(0, i[0]); R(1, i[0]); break;
        case Code::clip_norm: {  // the norm; every gradient is read and may be scaled
            const bool norm_only = in.d.size() > 2 && in.d[2] != 0;
            W(0, 8);
            for (size_t k = 0; k < in.lists[0].size(); ++k)
                ops.push_back({in.lists[0][k], e * i[k], true, !norm_only, -1});
            break;
        }
        case Code::conv:
            for (const ConvOperand& o : conv_instr_operands(in.p, i, e))
                ops.push_back({in.p[o.slot], o.bytes, o.read, o.write, o.slot});
            break;
        case Code::ew: {
            // each array operand's byte range, from the shape and its strides
            const int64_t nd = i[1];
            const int64_t* shape = i.data() + 2;
            const EwInfo& info = kEwOps[i[0]];
            for (int k = 0; k < 4; ++k) {
                int64_t lo, hi;
                if (in.p[k] == nullptr || !ew_span(shape, shape + nd * (k + 1), nd, lo, hi))
                    continue;
                const bool byte = (k == 1 && info.cond_first) || (k == 0 && info.bool_out);
                const int64_t item = byte ? 1 : e;
                ops.push_back({static_cast<char*>(in.p[k]) + lo * item, (hi - lo + 1) * item,
                               k > 0, k == 0, k});
            }
            break;
        }
        case Code::sgd:
        case Code::adam:
        case Code::rmsprop:
        case Code::adagrad: {
            // lists: params (rw), grads (r), then state (rw); the last list of adam, rmsprop
            // and adagrad is float32 steps; sgd's list 3 is a diagonal lr (r), list 4 the
            // direction of a matrix lr (p[0] eta (N, N), p[1] the direction (N))
            const auto& L = in.lists;
            const bool sgd = in.code == Code::sgd;
            for (size_t l = 0; l < L.size(); ++l)
                for (size_t k = 0; k < L[l].size(); ++k) {
                    const bool step = !sgd && l + 1 == L.size();
                    // (an adam or sgd fused with a clip_norm writes the clipped gradients)
                    const bool read_only = (l == 1 && in.p.size() != 1) || (sgd && l == 3);
                    ops.push_back({L[l][k], step ? 4 : e * i[k], true, !read_only, -1});
                }
            if ((in.code == Code::adam || sgd) && in.p.size() == 1) R(0, 8);  // clip's norm
            if (sgd && in.p.size() >= 2) {
                int64_t N = 0;
                for (size_t k = 0; k < L[0].size(); ++k) N += i[k];
                R(0, e * N * N);
                RW(1, e * N);
            }
            break;
        }
        case Code::norm: norm_instr_operands(in, ops); break;
        case Code::call: instr_kind(i[0]).operands(in, ops); break;
        case Code::ew_fused: fused_operands(in, ops); break;
    }
    return ops;
}

namespace {

// dW = dy^T x of a linear_bwd_sgd (batch 1: an outer product), as its unfused replay writes it
template <class T>
void materialize_dw(const Instr& in) {
    const auto& i = in.i;
    kernels<T>().gemm(true, false, i[2], i[1], i[0], T(1), P<T>(in, 3), i[2], P<T>(in, 4), i[1],
                      T(0), P<T>(in, 1), i[1]);
}

}  // namespace

bool Program::materialize(size_t index) const {
    if (index >= code_.size() || code_[index].code != Code::linear_bwd_sgd) return false;
    if (code_[index].f64) materialize_dw<double>(code_[index]);
    else materialize_dw<float>(code_[index]);
    return true;
}

bool Program::set_lazy(size_t index, bool lazy) {
    if (index >= code_.size() || code_[index].code != Code::linear_bwd_sgd) return false;
    Instr& in = code_[index];
    in.i.resize(4);
    in.i[3] = lazy ? 1 : 0;
    return true;
}

std::vector<std::pair<int64_t, int64_t>> Program::traffic() const {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const Instr& in : code_) {
        int64_t rd = 0, wr = 0;
        for (const Operand& o : operands(in)) {
            if (o.read) rd += o.bytes;
            if (o.write) wr += o.bytes;
        }
        if (in.defer >= 0) {  // as a deferring replay runs it (plan_defer)
            const int64_t e = in.f64 ? 8 : 4, w = e * in.i[1] * in.i[2];
            const int64_t dyx = e * in.i[0] * (in.i[1] + in.i[2]);
            if (in.code == Code::linear_fwd) {  // + the update: W written, dy and x copies read
                wr += w;
                rd += dyx;
            } else {  // - W's update, + the copies of dy and x
                rd -= w;
                wr += dyx - w;
            }
        }
        out.emplace_back(rd, wr);
    }
    return out;
}

std::vector<int64_t> Program::flops() const {
    std::vector<int64_t> out;
    for (const Instr& in : code_) {
        const auto& i = in.i;
        int64_t f = 0;
        switch (in.code) {
            case Code::linear_fwd:
                f = 2 * i[0] * i[1] * i[2] + (i.size() > 3 && i[3] != 0 ? i[0] * i[2] : 0);
                break;
            case Code::linear_bwd:
                f = 2 * i[0] * i[1] * i[2] * ((in.p[0] != nullptr) + (in.p[1] != nullptr)) +
                    (in.p[2] != nullptr) * i[0] * i[2];
                break;
            case Code::gemm: f = 2 * i[2] * i[3] * i[4]; break;
            case Code::conv: f = conv_instr_flops(in.p, i); break;
            case Code::call: f = instr_kind(i[0]).flops(in); break;
            case Code::ew_fused: f = fused_flops(in); break;
            case Code::ew: {  // one operation per element of the iteration shape
                f = 1;
                for (int64_t k = 0; k < i[1]; ++k) f *= i[2 + k];
                break;
            }
            case Code::linear_bwd_sgd:  // dx, dW, db and a 2-flop update per parameter
                f = 2 * i[0] * i[1] * i[2] * (1 + (in.p[0] != nullptr)) + 3 * i[2] * (i[1] + 1);
                break;
            case Code::reduce: {  // per element of x: red_flops_per_element
                int64_t count = 1;
                for (int64_t d = 0; d < i[1]; ++d) count *= i[4 + d];
                f = count * red_flops_per_element(static_cast<Red>(i[0]));
                break;
            }
            default: {
                // elementwise and reductions: one operation per element written or read
                int64_t elems = 0;
                const int64_t e = in.f64 ? 8 : 4;
                for (const Operand& o : operands(in)) elems = std::max(elems, o.bytes / e);
                f = elems;
            }
        }
        out.push_back(f);
    }
    return out;
}

int64_t Program::footprint() const {
    int64_t total = 0;
    for (const auto& [a, b] : ranges()) total += int64_t(b - a);
    return total;
}

namespace {

bool overlaps(const void* a, int64_t na, const void* b, int64_t nb) {
    const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
    return na > 0 && nb > 0 && x < y + uintptr_t(nb) && y < x + uintptr_t(na);
}

// Does instruction `in` read (want_read) or write (want_write) memory overlapping [p, p + n)?
bool touches(const Instr& in, const void* p, int64_t n, bool want_read, bool want_write) {
    for (const Operand& o : operands(in))
        if (((want_read && o.read) || (want_write && o.write)) && overlaps(o.ptr, o.bytes, p, n))
            return true;
    return false;
}

}  // namespace

template <class F>
void Program::for_each_pointer_into(const void* from, int64_t bytes, const F& f) {
    const auto lo = reinterpret_cast<uintptr_t>(from);
    const auto visit = [&](void*& q) {
        const auto a = reinterpret_cast<uintptr_t>(q);
        if (q != nullptr && a >= lo && a < lo + uintptr_t(bytes)) f(q, int64_t(a - lo));
    };
    for (Instr& in : code_) {
        for (void*& q : in.p) visit(q);
        for (auto& l : in.lists)
            for (void*& q : l) visit(q);
    }
}

void Program::rebind(void* from, void* to, int64_t bytes) {
    for_each_pointer_into(from, bytes,
                          [&](void*& q, int64_t off) { q = static_cast<char*>(to) + off; });
}

std::vector<std::pair<void**, int64_t>> Program::pointers_into(const void* from, int64_t bytes) {
    std::vector<std::pair<void**, int64_t>> out;
    for_each_pointer_into(from, bytes, [&](void*& q, int64_t off) { out.emplace_back(&q, off); });
    return out;
}

bool Program::written_or_read_later(const void* p, int64_t bytes) const {
    for (const Instr& in : code_) {
        if (touches(in, p, bytes, false, true)) return true;
        if (in.code == Code::linear_bwd_sgd && in.i.size() >= 4 && in.i[3] != 0 &&
            overlaps(in.p[4], in.i[0] * in.i[1] * (in.f64 ? 8 : 4), p, bytes))
            return true;
    }
    return false;
}

std::vector<std::pair<uintptr_t, uintptr_t>> Program::ranges() const {
    std::vector<std::pair<uintptr_t, uintptr_t>> r, out;
    for (const Instr& in : code_)
        for (const Operand& o : operands(in))
            if (o.bytes > 0) {
                const auto a = reinterpret_cast<uintptr_t>(o.ptr);
                r.emplace_back(a, a + uintptr_t(o.bytes));
            }
    std::sort(r.begin(), r.end());
    for (const auto& [a, b] : r) {
        if (!out.empty() && a <= out.back().second)
            out.back().second = std::max(out.back().second, b);
        else
            out.emplace_back(a, b);
    }
    return out;
}

int Program::optimize(const std::vector<std::pair<void*, int64_t>>& pinned) {
    int removed = 0;
    for (size_t k = 0; k < code_.size();) {
        const Instr& cp = code_[k];
        if (cp.code != Code::copy || cp.i[0] <= 0) {
            ++k;
            continue;
        }
        void* dst = cp.p[0];
        void* src = cp.p[1];
        const int64_t n = cp.i[0];
        bool ok = !overlaps(dst, n, src, n);
        for (const auto& pin : pinned) ok = ok && !overlaps(src, n, pin.first, pin.second);
        // the one writer of src, which must write exactly src through a pointer slot
        int64_t writer = -1;
        for (size_t j = 0; ok && j < code_.size(); ++j) {
            if (j == k) continue;
            if (touches(code_[j], src, n, true, false)) ok = false;  // someone else reads src
            if (!touches(code_[j], src, n, false, true)) continue;
            if (writer != -1 || j > k) ok = false;
            writer = static_cast<int64_t>(j);
        }
        int slot = -1;
        if (ok && writer >= 0) {
            for (const Operand& o : operands(code_[writer]))
                if (o.write && o.ptr == src && o.bytes == n && o.slot >= 0 && !o.read) slot = o.slot;
            // the writer must not touch dst itself, nor anything between it and the copy
            for (size_t j = static_cast<size_t>(writer); slot >= 0 && j < k; ++j)
                if (touches(code_[j], dst, n, true, true)) slot = -1;
        }
        if (slot < 0) {
            ++k;
            continue;
        }
        code_[writer].p[slot] = dst;
        code_.erase(code_.begin() + static_cast<std::ptrdiff_t>(k));
        ++removed;
    }
    removed += fuse_relu(pinned) + fuse_sgd() + fuse_clip();
    if (fusion_enabled()) removed += fuse_elementwise(code_, pinned);  // (fuse.hpp)
    return removed;
}

// clip_norm (scaling its gradients) directly followed by the adam or sgd (no matrix lr) that
// reads exactly those gradients (same list, same sizes, same dtype): the clip_norm only computes
// the norm and the update scales each gradient block by T(coef) as it loads it, storing it back.
// The scaled values, the update and the gradients left behind are bitwise those of the pair (each
// element is the same rounded product, read once by the update), and the gradients are read and
// written once instead of twice. Removes nothing (returns 0).
int Program::fuse_clip() {
    for (size_t k = 0; k + 1 < code_.size(); ++k) {
        Instr& cl = code_[k];
        Instr& ad = code_[k + 1];
        // (an sgd with a matrix lr has pointers: not fused)
        const bool adam = ad.code == Code::adam && ad.d.size() == 8;
        const bool sgd = ad.code == Code::sgd && ad.d.size() == 6;
        if (cl.code != Code::clip_norm || cl.d.size() != 2 || !(adam || sgd) ||
            ad.f64 != cl.f64 || !ad.p.empty() || ad.lists.size() < 2 ||
            ad.lists[1] != cl.lists[0] || ad.i != cl.i)
            continue;
        // no gradient may overlap a parameter or a state buffer the update writes
        const int64_t e = cl.f64 ? 8 : 4;
        bool ok = true;
        for (size_t g = 0; ok && g < cl.lists[0].size(); ++g)
            for (size_t l = 0; ok && l < ad.lists.size(); ++l) {
                if (l == 1) continue;
                const bool steps = adam && l + 1 == ad.lists.size();  // float32 step counts
                for (size_t q = 0; ok && q < ad.lists[l].size(); ++q)
                    ok = !overlaps(cl.lists[0][g], e * cl.i[g], ad.lists[l][q],
                                   steps ? 4 : e * ad.i[q]);
            }
        if (!ok) continue;
        cl.d.push_back(1);
        ad.p = {cl.p[0]};
        ad.d.push_back(cl.d[1]);
    }
    return 0;
}

// linear_fwd (batch > 1) or a conv forward (conv.hpp, kind 0) writing X, then act_fwd relu X -> Y,
// where nothing else reads or writes X (not pinned either) and nothing from the producer up to the
// act_fwd touches Y: the producer writes Y with the ReLU applied as its GEMM's epilogue
// (linear_forward_relu; the conv forward's relu flag), and the act_fwd goes. Bitwise the same
// values in Y; X is not written.
int Program::fuse_relu(const std::vector<std::pair<void*, int64_t>>& pinned) {
    int removed = 0;
    for (size_t a = 0; a < code_.size();) {
        const Instr& act = code_[a];
        if (act.code != Code::act_fwd || static_cast<Act>(act.i[0]) != Act::relu) {
            ++a;
            continue;
        }
        void* X = act.p[1];
        void* Y = act.p[0];
        const int64_t n = (act.f64 ? 8 : 4) * act.i[1];
        size_t L = a;
        while (L > 0 && !touches(code_[L - 1], X, n, false, true)) --L;
        bool ok = L > 0 && n > 0 && !overlaps(X, n, Y, n), conv = false;
        if (ok) {
            --L;
            const Instr& lf = code_[L];
            ok = lf.code == Code::linear_fwd && lf.f64 == act.f64 && lf.i.size() == 3 &&
                 lf.i[0] > 1 && lf.p[0] == X && (act.f64 ? 8 : 4) * lf.i[0] * lf.i[2] == n;
            conv = lf.code == Code::conv && lf.f64 == act.f64 && lf.p[0] == X &&
                   conv_fwd_relu_fusable(lf.i, n / (act.f64 ? 8 : 4));
            ok = ok || conv;
        }
        for (const auto& pin : pinned) ok = ok && !overlaps(X, n, pin.first, pin.second);
        for (size_t j = 0; ok && j < code_.size(); ++j)
            if (j != a && j != L && touches(code_[j], X, n, true, true)) ok = false;
        for (size_t j = L; ok && j < a; ++j)
            if (touches(code_[j], Y, n, true, true)) ok = false;
        if (!ok) {
            ++a;
            continue;
        }
        code_[L].p[0] = Y;
        if (conv) code_[L].i[1 + kConvInts] = 1;
        else code_[L].i.push_back(1);
        code_.erase(code_.begin() + static_cast<std::ptrdiff_t>(a));
        ++removed;
    }
    return removed;
}

// linear_bwd at batch <= kFuseSgdMaxBatch followed (later) by the sgd instruction that updates its weight with
// its dW -> one linear_bwd_sgd, when nothing in between touches the weight, its gradient or its
// momentum buffer and nothing else writes that gradient. The bias joins when the same holds.
int Program::fuse_sgd() {
    int removed = 0;
    for (size_t L = 0; L < code_.size(); ++L) {
        if (code_[L].code != Code::linear_bwd || code_[L].i[0] < 1 ||
            code_[L].i[0] > kFuseSgdMaxBatch || code_[L].p[1] == nullptr)
            continue;
        const Instr& lb = code_[L];
        const int64_t e = lb.f64 ? 8 : 4, IN = lb.i[1], OUT = lb.i[2];
        void* dW = lb.p[1];
        void* db = lb.p[2];
        void* Wp = lb.p[5];
        size_t S = L + 1;
        int64_t kw = -1;
        for (; S < code_.size() && kw < 0; ++S) {
            if (code_[S].code != Code::sgd || code_[S].f64 != lb.f64) continue;
            if (code_[S].lists.size() > 3 || !code_[S].p.empty()) continue;  // an array lr
            const auto& G = code_[S].lists[1];
            for (size_t k = 0; k < G.size(); ++k)
                if (G[k] == dW) kw = static_cast<int64_t>(k);
        }
        if (kw < 0) continue;
        --S;
        Instr& sg = code_[S];
        const bool mom = !sg.lists[2].empty();
        if (sg.lists[0][kw] != Wp || sg.i[kw] != OUT * IN) continue;
        // may the update of (param p, grad g, buffer m) move from S back to L?
        const auto movable = [&](void* p, void* g, void* m, int64_t bytes) {
            for (size_t j = L + 1; j < S; ++j)
                if (touches(code_[j], p, bytes, true, true) || touches(code_[j], g, bytes, true, true) ||
                    (m != nullptr && touches(code_[j], m, bytes, true, true)))
                    return false;
            for (size_t j = 0; j < code_.size(); ++j)
                if (j != L && j != S && touches(code_[j], g, bytes, false, true)) return false;
            return true;
        };
        void* mw = mom ? sg.lists[2][kw] : nullptr;
        if (!movable(Wp, dW, mw, e * OUT * IN)) continue;
        int64_t kb = -1;
        if (db != nullptr)
            for (size_t k = 0; k < sg.lists[1].size(); ++k)
                if (sg.lists[1][k] == db && sg.i[k] == OUT &&
                    movable(sg.lists[0][k], db, mom ? sg.lists[2][k] : nullptr, e * OUT))
                    kb = static_cast<int64_t>(k);
        Instr f;
        f.code = Code::linear_bwd_sgd;
        f.f64 = lb.f64;
        f.p = {lb.p[0], dW, db, lb.p[3], lb.p[4], Wp, kb >= 0 ? sg.lists[0][kb] : nullptr};
        f.i = {lb.i[0], IN, OUT};
        f.d = sg.d;
        f.lists = {mom ? std::vector<void*>{mw} : std::vector<void*>{},
                   mom && kb >= 0 ? std::vector<void*>{sg.lists[2][kb]} : std::vector<void*>{}};
        // drop the moved parameters from the sgd instruction (higher index first)
        std::vector<int64_t> drop{kw};
        if (kb >= 0) drop.push_back(kb);
        std::sort(drop.rbegin(), drop.rend());
        for (int64_t k : drop) {
            for (auto& l : sg.lists)
                if (!l.empty()) l.erase(l.begin() + k);
            sg.i.erase(sg.i.begin() + k);
        }
        code_[L] = std::move(f);
        if (sg.lists[0].empty()) {
            code_.erase(code_.begin() + static_cast<std::ptrdiff_t>(S));
            ++removed;
        }
    }
    return removed;
}

int Program::plan_defer() {
    flush();
    for (Instr& in : code_) in.defer = -1;
    defer_.clear();
    for (size_t L = 0; L < code_.size(); ++L) {
        const Instr& bw = code_[L];
        // (a layer that passes a gradient on reads W in its backward anyway: deferring its
        // update measured no faster; docs/performance.md)
        if (bw.code != Code::linear_bwd_sgd || !bw.lists[0].empty() || bw.p[0] != nullptr)
            continue;
        const int64_t e = bw.f64 ? 8 : 4, B = bw.i[0], IN = bw.i[1], OUT = bw.i[2];
        void* W = bw.p[5];
        // linear_forward_sgd(_batch) runs on one thread, as the product and update do below
        // this size (they run in parallel above it, and so would their unfused pair)
        if (IN < 2 || OUT < 1 || 2 * B * OUT * IN >= kMatrixParallelFlops) continue;
        const int64_t bytes = e * OUT * IN;
        bool later = false;
        for (size_t j = L + 1; j < code_.size() && !later; ++j)
            later = touches(code_[j], W, bytes, true, true);
        if (later) continue;
        size_t F = 0;
        while (F < L && !touches(code_[F], W, bytes, true, true)) ++F;
        const Instr& fw = code_[F];
        // (at batch 1 a plain forward; at a larger batch its ReLU may be fused in)
        if (F == L || fw.code != Code::linear_fwd || fw.f64 != bw.f64 ||
            (B == 1 && fw.i.size() != 3) || fw.i[0] != B || fw.i[1] != IN ||
            fw.i[2] != OUT || fw.p[2] != W || fw.defer >= 0)
            continue;
        Deferred df;
        df.fwd = F;
        df.bwd = L;
        if (bw.f64) {
            df.dy64.resize(static_cast<size_t>(B * OUT));
            df.x64.resize(static_cast<size_t>(B * IN));
        } else {
            df.dy32.resize(static_cast<size_t>(B * OUT));
            df.x32.resize(static_cast<size_t>(B * IN));
        }
        code_[F].defer = code_[L].defer = static_cast<int>(defer_.size());
        defer_.push_back(std::move(df));
    }
    return static_cast<int>(defer_.size());
}

static const char* const kNames[] = {"linear_fwd", "linear_bwd", "act_fwd", "act_bwd",
                                     "softmax_fwd", "softmax_bwd", "log_softmax_fwd",
                                     "log_softmax_bwd", "ce_fwd", "ce_bwd", "mse_fwd", "mse_bwd",
                                     "sum_all", "sum_axis", "gemm", "scale", "count_scale", "copy",
                                     "sgd", "adam", "linear_bwd_sgd", "clip_norm", "ew",
                                     "reduce", "rmsprop", "adagrad", "norm", "conv", "call",
                                     "ew_fused"};
static_assert(sizeof(kNames) / sizeof(kNames[0]) == static_cast<size_t>(Code::ew_fused) + 1,
              "kNames must name every Code");

Code code_from_name(const std::string& name) {
    for (int k = 0; k < static_cast<int>(sizeof(kNames) / sizeof(kNames[0])); ++k)
        if (name == kNames[k]) return static_cast<Code>(k);
    throw std::invalid_argument("unknown program instruction '" + name + "'");
}

const char* code_name(Code c) { return kNames[static_cast<int>(c)]; }

namespace {
std::vector<InstrKind>& instr_kinds() {
    static std::vector<InstrKind> kinds;
    return kinds;
}
}  // namespace

int64_t register_instr_kind(const InstrKind& kind) {
    auto& kinds = instr_kinds();
    for (size_t k = 0; k < kinds.size(); ++k)
        if (std::string(kinds[k].name) == kind.name) return static_cast<int64_t>(k);
    kinds.push_back(kind);
    return static_cast<int64_t>(kinds.size() - 1);
}

const InstrKind& instr_kind(int64_t id) {
    const auto& kinds = instr_kinds();
    if (id < 0 || static_cast<size_t>(id) >= kinds.size())
        throw std::out_of_range("program: no registered instruction kind " + std::to_string(id));
    return kinds[static_cast<size_t>(id)];
}

}  // namespace gd

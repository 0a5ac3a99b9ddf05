// Program's interpreter: run, step, profile, the deferred weight updates' replay half
// (run_deferrable, flush) and lazy weight gradients (materialize), clip_grad_norm (shared with
// the eager binding), the instruction names and the registry of instruction kinds
// (instr_registry.hpp). What each instruction reads and writes, and the flops it costs, are in
// program_analysis.cpp; the passes that rewrite a recorded program (optimize, the fusions,
// plan_defer) in program_passes.cpp.
//
// The replay loop of gd.compile. Buffer meanings per instruction (p = pointers, i = ints,
// d = doubles), mirroring the eager bindings' kernel calls one for one:
//   linear_fwd   p[y, x, W, b|0]                 i[B, IN, OUT(, 1: then y = relu(y))]
//   linear_bwd   p[dx|0, dW|0, db|0, dy, x, W]   i[B, IN, OUT]
//   act_fwd      p[y, x]                         i[op, N]     d[alpha]
//   act_bwd      p[dx, dy, x|0, y|0]             i[op, N]     d[alpha]
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
//   adam         lists[params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq, step (float32 0-d)]
//                i[sizes...]  d[lr, beta1, beta2, eps, weight_decay, amsgrad, maximize,
//                               decoupled]; reads step + 1 as the step number, then step += 1
//   rmsprop      lists[params, grads, square_avg, grad_avg, momentum_buffer, step (float32 0-d)]
//                i[sizes...]  d[lr, alpha, eps, weight_decay, momentum, centered, maximize];
//                grad_avg / momentum_buffer [] when off; then step += 1
//   adagrad      lists[params, grads, sum, step (float32 0-d)]  i[sizes...]
//                d[lr, lr_decay, eps, weight_decay, maximize]; reads step + 1, then step += 1
//   clip_norm    p[norm (double)]  lists[grads]  i[sizes...]  d[norm_type, max_norm(, 1)]
//                (clip_grad_norm below: scales the gradients in place when the norm is too big;
//                d[2] = 1: only the norm, the update after it scales (fuse_clip))
//   adam or sgd fused with the clip_norm before it (fuse_clip): p[that norm]  d[..., max_norm]:
//                scales each gradient (stored back) by the clip coefficient as it reads it
//   call         i[kind, ...]: a registered instruction kind (instr_registry.hpp), laid out,
//                run and analysed by the binding file that registered it (its layouts are
//                listed there): softmax, log-softmax and the losses (bind_loss.cpp), sums and
//                reductions (bind_reduce.cpp), gemm (bind_linear.cpp), scale and count_scale
//                (bind_program.cpp), batch/layer norm and embedding (bind_norm.cpp),
//                gather/scatter/take (bind_index.cpp), dropout masks (bind_random.cpp).
// The instructions above keep a Code of their own because a pass (program_passes.cpp, fuse.cpp),
// the replay or gd.compile's Python side matches them by it (docs/architecture.md).
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
#include "program_internal.hpp"
#include "fuse.hpp"
#include "instr_registry.hpp"
#include "kernels.hpp"
#include "parallel.hpp"

namespace gd {
namespace {

template <class T>
T* P(const Instr& in, size_t k) {
    return static_cast<T*>(in.p[k]);
}

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
    if (lazy) {
        // dW read by another instruction (a norm of .grad after the step, a hand-written update
        // of it) must be stored by every run: those read it from memory, not through .grad
        const int64_t bytes = (in.f64 ? 8 : 4) * in.i[1] * in.i[2];
        for (size_t j = 0; j < code_.size() && lazy; ++j)
            if (j != index && program_detail::touches(code_[j], in.p[1], bytes, true, false))
                lazy = false;
    }
    in.i[3] = lazy ? 1 : 0;
    return true;
}

static const char* const kNames[] = {"linear_fwd", "linear_bwd", "act_fwd", "act_bwd",
                                     "copy",
                                     "sgd", "adam", "linear_bwd_sgd", "clip_norm", "ew",
                                     "rmsprop", "adagrad", "conv", "call",
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

int64_t find_instr_kind(const std::string& name) {
    const auto& kinds = instr_kinds();
    for (size_t k = 0; k < kinds.size(); ++k)
        if (name == kinds[k].name) return static_cast<int64_t>(k);
    return -1;
}

const InstrKind& instr_kind(int64_t id) {
    const auto& kinds = instr_kinds();
    if (id < 0 || static_cast<size_t>(id) >= kinds.size())
        throw std::out_of_range("program: no registered instruction kind " + std::to_string(id));
    return kinds[static_cast<size_t>(id)];
}

}  // namespace gd

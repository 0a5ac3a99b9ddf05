// The replay loop of gd.compile. Buffer meanings per instruction (p = pointers, i = ints,
// d = doubles), mirroring the eager bindings' kernel calls one for one:
//   linear_fwd   p[y, x, W, b|0]                 i[B, IN, OUT]
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
//   adam         lists[params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq, step (float32 0-d)]
//                i[sizes...]  d[lr, beta1, beta2, eps, weight_decay, amsgrad, maximize,
//                               decoupled]; reads step + 1 as the step number, then step += 1
#include "program.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels.hpp"

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

template <class T>
void run_one(const Instr& in) {
    const KernelTable<T>& K = kernels<T>();
    const auto& i = in.i;
    const auto& d = in.d;
    switch (in.code) {
        case Code::linear_fwd:
            K.linear_forward(P<T>(in, 0), P<T>(in, 1), P<T>(in, 2), P<T>(in, 3), i[0], i[1], i[2]);
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
            const auto& L = in.lists;
            std::vector<T*> params, bufs;
            std::vector<const T*> grads;
            for (void* q : L[0]) params.push_back(static_cast<T*>(q));
            for (void* q : L[1]) grads.push_back(static_cast<const T*>(q));
            for (void* q : L[2]) bufs.push_back(static_cast<T*>(q));
            const SgdHyper h{d[0], d[1], d[2], d[3], d[4] != 0, d[5] != 0};
            const std::vector<uint8_t> fresh(params.size(), 0);  // buffers exist after recording
            K.sgd_step(params.data(), bufs.empty() ? nullptr : bufs.data(), nullptr, grads.data(),
                       nullptr, fresh.data(), i.data(), static_cast<int64_t>(params.size()), h);
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
            const AdamHyper h{d[0], d[1], d[2], d[3], d[4], d[5] != 0, d[6] != 0, d[7] != 0};
            K.adam_step(params.data(), m.data(), v.data(), vmax.empty() ? nullptr : vmax.data(),
                        grads.data(), steps.data(), i.data(), static_cast<int64_t>(n), h);
            for (size_t k = 0; k < n; ++k) {  // the optimizer's step += 1, in float32 as eager
                float* s = static_cast<float*>(L[5][k]);
                *s = *s + 1.0f;
            }
            break;
        }
    }
}

}  // namespace

void Program::run() const {
    for (const Instr& in : code_) {
        if (in.f64) run_one<double>(in);
        else run_one<float>(in);
    }
}

Code code_from_name(const std::string& name) {
    static const char* names[] = {"linear_fwd", "linear_bwd", "act_fwd", "act_bwd",
                                  "softmax_fwd", "softmax_bwd", "log_softmax_fwd",
                                  "log_softmax_bwd", "ce_fwd", "ce_bwd", "mse_fwd", "mse_bwd",
                                  "sum_all", "sum_axis", "gemm", "scale", "count_scale", "copy",
                                  "sgd", "adam"};
    for (int k = 0; k < static_cast<int>(sizeof(names) / sizeof(names[0])); ++k)
        if (name == names[k]) return static_cast<Code>(k);
    throw std::invalid_argument("unknown program instruction '" + name + "'");
}

}  // namespace gd

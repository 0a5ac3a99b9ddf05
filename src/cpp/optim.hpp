// Fused optimizer updates: one call updates every tensor of a parameter group, in PyTorch's
// order of floating-point operations (torch/optim/*.py, the single-tensor path).
// Shape legend: tensor i of `count` has n[i] elements; p[i] is its parameter, g[i] its gradient,
// the state buffers (buf, m, v, ...) of tensor i have n[i] elements too. N = sum of n[i].
// A whole list may be null when the option that needs it is off (buf without momentum, vmax
// without amsgrad, ...). g[i] may alias p[i]; no other overlap is allowed.
#pragma once
#include "common.hpp"
#include "kernels.hpp"

namespace gd {
namespace GD_NS {

// SGD with momentum / dampening / Nesterov / weight decay / maximize. The step direction d is
// the usual one (the momentum buffer, or grad + momentum * buffer for Nesterov); then
//   dir == null, lr_diag == null: p -= lr * d
//   dir == null, lr_diag[i] (n[i]):  p -= lr_diag * d (a diagonal learning rate)
//   dir[i] (n[i]) non-null: d is written there and p is left alone (precondition_step applies it)
// fresh[i] != 0 marks a momentum buffer that starts now: buf = d (PyTorch's first step).
template <class T>
void sgd_step(T* const* p, T* const* buf, T* const* dir, const T* const* g, const T* const* lr_diag,
              const uint8_t* fresh, const int64_t* n, int64_t count, const SgdHyper& h);

// sgd_step on one tensor W (OUT, IN) whose gradient is the outer product dy (OUT) x (IN), a
// batch-1 linear layer's dW, never stored; buf (OUT * IN) null without momentum, not fresh.
template <class T>
void sgd_outer_step(T* W, T* buf, const T* dy, const T* x, int64_t OUT, int64_t IN,
                    const SgdHyper& h);
// sgd_step on one tensor W (OUT, IN) whose gradient is dy^T x (dy (B, OUT), x (B, IN)), a linear
// layer's dW at batch B, formed tile by tile in registers with the bits gemm(true, false, OUT,
// IN, B, 1, dy, OUT, x, IN, 0, dW, IN) stores for B <= 512 / sizeof(T) (one K block) and applied
// at once: W is read and written once. dW (OUT * IN) receives the gradient when not null; buf as
// for sgd_outer_step. Bitwise the GEMM followed by sgd_step, for any thread count.
template <class T>
void sgd_gemm_step(T* W, T* buf, T* dW, const T* dy, const T* x, int64_t B, int64_t OUT,
                   int64_t IN, const SgdHyper& h);
// Rows [o0, o1) of sgd_outer_step, on the calling thread (each row's bits do not depend on how
// rows are grouped).
template <class T>
void sgd_outer_rows(T* W, T* buf, const T* dy, const T* x, int64_t o0, int64_t o1, int64_t IN,
                    const SgdHyper& h);

// Batch-1 forward of a layer whose weight first takes a deferred batch-1 SGD update (gd.compile):
// sgd_outer_step(W, nullptr, dy_old, x_old, OUT, IN, h), then linear_forward(y, x, W, b, 1, IN,
// OUT), bitwise (IN >= 2, no momentum buffer), on the calling thread.
template <class T>
void linear_forward_sgd(T* y, const T* x, T* W, const T* b, int64_t IN, int64_t OUT,
                        const T* dy_old, const T* x_old, const SgdHyper& h);

// linear_forward_sgd at batch B >= 2 (relu: linear_forward_relu): sgd_gemm_step(W, nullptr,
// nullptr, dy_old (B_old, OUT), x_old (B_old, IN), B_old, OUT, IN, h), then the forward, bitwise,
// in one pass over W when the forward's product takes gemm's row-dot path; on the calling thread
// then (gd.compile defers only products below gemm's parallel threshold).
template <class T>
void linear_forward_sgd_batch(T* y, const T* x, T* W, const T* b, int64_t B, int64_t IN,
                              int64_t OUT, bool relu, const T* dy_old, const T* x_old,
                              int64_t B_old, const SgdHyper& h);

// eta (N, N), d (N) -> p -= eta @ d, with p the concatenation of p[i] in order
template <class T>
void precondition_step(T* const* p, const T* eta, const T* d, const int64_t* n, int64_t count,
                       int64_t N);

// Adam (decoupled = false) and AdamW (decoupled = true); step[i] is tensor i's step count after
// this step (1 on the first), vmax null unless amsgrad.
template <class T>
void adam_step(T* const* p, T* const* m, T* const* v, T* const* vmax, const T* const* g,
               const double* step, const int64_t* n, int64_t count, const AdamHyper& h);

// The joint norm of order norm_type of the count gradients g[i] (n[i] elements each):
//   +inf: max |g| (NaN if any element is NaN), exact;
//   p > 0: (sum |g|^p)^(1/p), |g|^p (g g for p = 2, |g| for p = 1, else std::pow) formed and
//   summed in double. Each tensor is cut into blocks of kNormBlock elements; within a block
//   element j adds into lane j % kNormLanes (in element order), the lanes are added in a fixed
//   tree, and the block sums in tensor and block order. Neither the vector width nor the thread
//   count changes that order and no multiply-add is fused, so every ISA and thread count gives
//   the same bits. (For float32 gradients g g is exact in double.)
constexpr int64_t kNormLanes = 32;
constexpr int64_t kNormBlock = 4096;
template <class T>
double grad_norm(const T* const* g, const int64_t* n, int64_t count, double norm_type);

// g[i] *= c, element by element
template <class T>
void scale_grads(T* const* g, const int64_t* n, int64_t count, T c);

// RMSprop; grad_avg null unless centered, buf null unless momentum > 0.
template <class T>
void rmsprop_step(T* const* p, T* const* square_avg, T* const* grad_avg, T* const* buf,
                  const T* const* g, const int64_t* n, int64_t count, const RmspropHyper& h);

// Adagrad; step[i] as for Adam.
template <class T>
void adagrad_step(T* const* p, T* const* sum, const T* const* g, const double* step,
                  const int64_t* n, int64_t count, const AdagradHyper& h);

}  // namespace GD_NS
}  // namespace gd

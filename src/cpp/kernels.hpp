// The kernel table: one set of function pointers per instruction set and dtype.
// Bindings call gd::kernels<T>().<op>(...); dispatch.cpp decides which ISA's table is active.
// Shape legend: B batch rows, IN/OUT features, R reduced length, N element count.
#pragma once
#include <cstdint>

#include "elementwise.hpp"
#include "reduce_ops.hpp"

namespace gd {

// Elementwise nonlinearities; alpha is the slope of leaky_relu, the threshold of softplus and
// unused otherwise.
enum class Act : int { relu = 0, leaky_relu, tanh, sigmoid, softplus, gelu, gelu_tanh, exp, log };

// Optimizer hyperparameters (optim.cpp), PyTorch's names and meanings.
struct SgdHyper {
    double lr, momentum, dampening, weight_decay;
    bool nesterov, maximize;
    bool scale_grad = false;  // sgd_step only: as AdamHyper's
    double grad_scale = 1.0;
};
struct AdamHyper {
    double lr, beta1, beta2, eps, weight_decay;
    bool amsgrad, maximize, decoupled;
    // gd.compile's clip_grad_norm_ fused into the update (Program::fuse_clip): each gradient
    // element is first replaced by g * T(grad_scale) (stored back), as a separate scaling pass
    // would have left it
    bool scale_grad = false;
    double grad_scale = 1.0;
};
struct RmspropHyper { double lr, alpha, eps, weight_decay, momentum; bool centered, maximize; };
struct AdagradHyper { double lr, lr_decay, eps, weight_decay; bool maximize; };

template <class T>
struct KernelTable {
    // C (M, N) = alpha * op(A) op(B) + beta * C, row-major with leading dimensions; op = transpose.
    void (*gemm)(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                 const T* B, int64_t ldb, T beta, T* C, int64_t ldc);
    // x (B, IN), W (OUT, IN), b (OUT) or null -> y (B, OUT)
    void (*linear_forward)(T* y, const T* x, const T* W, const T* b, int64_t B, int64_t IN,
                           int64_t OUT);
    // linear_forward then a ReLU of y in place (each thread's slab right after its product)
    void (*linear_forward_relu)(T* y, const T* x, const T* W, const T* b, int64_t B, int64_t IN,
                                int64_t OUT);
    // sgd_outer_step(W, null, dy_old, x_old, OUT, IN, h) then linear_forward(y, x, W, b, 1, IN,
    // OUT) in one pass over W (gd.compile's deferred update; IN >= 2; one thread)
    void (*linear_forward_sgd)(T* y, const T* x, T* W, const T* b, int64_t IN, int64_t OUT,
                               const T* dy_old, const T* x_old, const SgdHyper& h);
    // the same at batch B (relu: then y = relu(y)), the deferred update from dy_old (B_old, OUT)
    // and x_old (B_old, IN) (optim.hpp)
    void (*linear_forward_sgd_batch)(T* y, const T* x, T* W, const T* b, int64_t B, int64_t IN,
                                     int64_t OUT, bool relu, const T* dy_old, const T* x_old,
                                     int64_t B_old, const SgdHyper& h);
    // dy (B, OUT) -> dx (B, IN), dW (OUT, IN), db (OUT); a null output is skipped
    void (*linear_backward)(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t B,
                            int64_t IN, int64_t OUT);
    // x (N) -> y (N)
    void (*activation_forward)(Act op, T* y, const T* x, int64_t N, T alpha);
    // dy, x, y (N) -> dx (N); each op reads x or y (the saved one), the other may be null
    void (*activation_backward)(Act op, T* dx, const T* dy, const T* x, const T* y, int64_t N,
                                T alpha);
    // y = op(x[0], x[1], x[2]) over a broadcast iteration shape; every operand strided, a null
    // x[k] the scalar s[k] (elementwise.hpp)
    void (*elementwise)(Ew op, T* y, const int64_t* y_stride, const void* const* x,
                        const int64_t* const* x_stride, const T* s, const int64_t* shape,
                        int64_t ndim);
    // x (B, C) -> y (B, C), row-wise
    void (*softmax_forward)(T* y, const T* x, int64_t B, int64_t C);
    void (*softmax_backward)(T* dx, const T* dy, const T* y, int64_t B, int64_t C);
    void (*log_softmax_forward)(T* y, const T* x, int64_t B, int64_t C);
    void (*log_softmax_backward)(T* dx, const T* dy, const T* y, int64_t B, int64_t C);
    // logits (B, C), target (B) -> loss (B), lse (B) (saved for backward)
    void (*cross_entropy_forward)(T* loss, T* lse, const T* logits, const int64_t* target,
                                  int64_t B, int64_t C, int64_t ignore_index);
    // dloss (B) with stride 0 or 1 -> dlogits (B, C)
    void (*cross_entropy_backward)(T* dlogits, const T* dloss, int64_t dloss_stride,
                                   const T* logits, const T* lse, const int64_t* target, int64_t B,
                                   int64_t C, int64_t ignore_index);
    // a, b (N) -> out[0] = sum (a - b)^2
    void (*mse_forward)(T* out, const T* a, const T* b, int64_t N);
    // -> da (N) = scale * (a - b)
    void (*mse_backward)(T* da, const T* a, const T* b, int64_t N, T scale);
    // x (outer, R, inner) -> y (outer, inner)
    void (*sum_axis)(T* y, const T* x, int64_t outer, int64_t R, int64_t inner);
    // x (N) -> out[0]
    void (*sum_all)(T* out, const T* x, int64_t N);
    // x (shape, element strides: any layout, read in place) -> y and/or idx (C-contiguous over
    // the dims not in the bit mask `axes`); Red and param in reduce_ops.hpp; null outputs skipped
    void (*reduce)(Red op, T* y, int64_t* idx, const T* x, const int64_t* shape,
                   const int64_t* strides, int64_t nd, uint64_t axes, double param);
    // Optimizer steps over a list of `count` tensors: tensor i's parameter p[i], gradient g[i]
    // and state buffers all hold n[i] elements; one call updates a whole parameter group.
    // A null list means the option that needs it is off (see optim.hpp).
    void (*sgd_step)(T* const* p, T* const* buf, T* const* dir, const T* const* g,
                     const T* const* lr_diag, const uint8_t* fresh, const int64_t* n,
                     int64_t count, const SgdHyper& h);
    // sgd_step on W (OUT, IN) with the gradient dy (OUT) x (IN) computed on the fly (batch 1)
    void (*sgd_outer_step)(T* W, T* buf, const T* dy, const T* x, int64_t OUT, int64_t IN,
                           const SgdHyper& h);
    // sgd_step on W (OUT, IN) with the gradient dy^T x (dy (B, OUT), x (B, IN)) formed tile by
    // tile as the update goes (a small batch); also stored into dW unless it is null
    void (*sgd_gemm_step)(T* W, T* buf, T* dW, const T* dy, const T* x, int64_t B, int64_t OUT,
                          int64_t IN, const SgdHyper& h);
    // eta (N, N), d (N) -> p -= eta @ d, p the concatenation of p[i] (n[i]), N = sum n[i]
    void (*precondition_step)(T* const* p, const T* eta, const T* d, const int64_t* n,
                              int64_t count, int64_t N);
    void (*adam_step)(T* const* p, T* const* m, T* const* v, T* const* vmax, const T* const* g,
                      const double* step, const int64_t* n, int64_t count, const AdamHyper& h);
    // nn.utils.clip_grad_norm_'s norm of order norm_type (> 0 or +inf) of the count gradients
    // g[i] (n[i] elements), the same bits on every ISA and thread count (optim.hpp)
    double (*grad_norm)(const T* const* g, const int64_t* n, int64_t count, double norm_type);
    // g[i] *= c for every tensor
    void (*scale_grads)(T* const* g, const int64_t* n, int64_t count, T c);
    void (*rmsprop_step)(T* const* p, T* const* square_avg, T* const* grad_avg, T* const* buf,
                         const T* const* g, const int64_t* n, int64_t count,
                         const RmspropHyper& h);
    void (*adagrad_step)(T* const* p, T* const* sum, const T* const* g, const double* step,
                         const int64_t* n, int64_t count, const AdagradHyper& h);
    // x[0..count) (N each) -> y and y2 (N, y2 may be null) = the ranks' sum in rank order /
    // count (collective.hpp)
    void (*average_ranks)(T* y, T* y2, const T* const* x, int64_t count, int64_t N);
};

struct Kernels {
    const char* isa;
    KernelTable<float> f32;
    KernelTable<double> f64;
};

// Tables compiled for each ISA (table.cpp, once per ISA the target has: CMakeLists.txt).
const Kernels& kernels_baseline();
const Kernels& kernels_avx2();
const Kernels& kernels_avx512();
const Kernels& kernels_neon();

// The active table (dispatch.cpp).
const Kernels& active_kernels();
template <class T>
const KernelTable<T>& kernels();
template <>
inline const KernelTable<float>& kernels<float>() { return active_kernels().f32; }
template <>
inline const KernelTable<double>& kernels<double>() { return active_kernels().f64; }

// The ISAs this build has, best first: isa_name(i) for i < isa_count() (x86-64: avx512, avx2,
// baseline; aarch64: neon, baseline; other targets: baseline).
int isa_count();
const char* isa_name(int index);
// Selects a built ISA by name; returns false if the CPU lacks it (or it was not built).
bool select_isa(const char* name);
bool cpu_supports_isa(const char* name);
const char* best_isa();
// Bit i: the table of isa_name(i) has been built in this process.
unsigned tables_built();

}  // namespace gd

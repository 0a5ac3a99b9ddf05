// Fills this ISA's kernel table (compiled once per ISA, see CMakeLists.txt).
#include "activation.hpp"
#include "collective.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"
#include "kernels.hpp"
#include "linear.hpp"
#include "loss.hpp"
#include "optim.hpp"
#include "reduce.hpp"

namespace gd {
namespace GD_NS {
namespace {
template <class T>
KernelTable<T> make_table() {
    KernelTable<T> t{};
    t.gemm = &gemm<T>;
    t.linear_forward = &linear_forward<T>;
    t.linear_forward_sgd = &linear_forward_sgd<T>;
    t.linear_forward_sgd_batch = &linear_forward_sgd_batch<T>;
    t.linear_forward_relu = &linear_forward_relu<T>;
    t.linear_backward = &linear_backward<T>;
    t.activation_forward = &activation_forward<T>;
    t.activation_backward = &activation_backward<T>;
    t.elementwise = &elementwise<T>;
    t.softmax_forward = &softmax_forward<T>;
    t.softmax_backward = &softmax_backward<T>;
    t.log_softmax_forward = &log_softmax_forward<T>;
    t.log_softmax_backward = &log_softmax_backward<T>;
    t.cross_entropy_forward = &cross_entropy_forward<T>;
    t.cross_entropy_backward = &cross_entropy_backward<T>;
    t.mse_forward = &mse_forward<T>;
    t.mse_backward = &mse_backward<T>;
    t.sum_axis = &sum_axis<T>;
    t.sum_all = &sum_all<T>;
    t.reduce = &reduce_axes<T>;
    t.sgd_step = &sgd_step<T>;
    t.sgd_outer_step = &sgd_outer_step<T>;
    t.sgd_gemm_step = &sgd_gemm_step<T>;
    t.precondition_step = &precondition_step<T>;
    t.adam_step = &adam_step<T>;
    t.rmsprop_step = &rmsprop_step<T>;
    t.grad_norm = &grad_norm<T>;
    t.scale_grads = &scale_grads<T>;
    t.adagrad_step = &adagrad_step<T>;
    t.average_ranks = &average_ranks<T>;
    return t;
}
}  // namespace
}  // namespace GD_NS

const Kernels& GD_CONCAT(kernels_, GD_ISA)() {
    static const Kernels k{GD_STR(GD_ISA), GD_NS::make_table<float>(), GD_NS::make_table<double>()};
    return k;
}

}  // namespace gd

// Elementwise nonlinearities, each a forward/backward pair of scalar formulas; the loops that
// apply them are generic (map_forward / map_backward) so the compiler vectorises what it can;
// exp, log, log1p, tanh, sigmoid and gelu are vmath.hpp's (branch-free: they vectorise, and give the
// same bits on every ISA).
// Shape legend: x, y, dx, dy (N). NaN propagates as in NumPy (x <= 0 is false for NaN).
// At NaN, +-inf and the kinks each derivative is PyTorch's (docs/special-values.md, checked by
// tests/test_special_values.py): the comparisons below are written so that NaN falls on
// PyTorch's side of each select.
#include "activation.hpp"

#include <cmath>

#include "parallel.hpp"
#include "vmath.hpp"

namespace gd {
namespace GD_NS {
namespace {

constexpr int64_t kChunk = 1 << 14;

// y = max(x, 0); dy/dx = 0 for x <= 0 (PyTorch's choice at the kink), else 1. The backward
// may be handed y in place of x (same sign, same NaNs). "x <= 0 ? 0 : dy", not "x > 0 ? dy : 0":
// at NaN the gradient passes, as in PyTorch's threshold_backward.
struct Relu {
    template <class T> static T forward(T x, T) { return x <= T(0) ? T(0) : x; }
    template <class T> static T backward(T dy, T x, T, T) { return x <= T(0) ? T(0) : dy; }
};

// y = x for x > 0, alpha x otherwise
struct LeakyRelu {
    template <class T> static T forward(T x, T a) { return x > T(0) ? x : a * x; }
    template <class T> static T backward(T dy, T x, T, T a) { return x > T(0) ? dy : a * dy; }
};

// dy/dx = 1 - y^2, from the saved output
struct Tanh {
    template <class T> static T forward(T x, T) { return vm::tanh(x); }
    template <class T> static T backward(T dy, T, T y, T) { return dy * (T(1) - y * y); }
};

// Stable for large |x|: exp is only taken of -|x|, so it never overflows.
// dy/dx = y (1 - y), from the saved output
struct Sigmoid {
    template <class T> static T forward(T x, T) { return vm::sigmoid(x); }
    template <class T> static T backward(T dy, T, T y, T) { return dy * y * (T(1) - y); }
};

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|); dy/dx = sigmoid(x). Above the
// threshold t (alpha) PyTorch's softplus is the identity, so y = x and dy/dx = 1 there; t = +inf
// gives the exact function everywhere.
struct Softplus {
    template <class T> static T forward(T x, T t) {
        const T y = (x > T(0) ? x : T(0)) + vm::log1p(vm::exp(-std::fabs(x)));
        return x != x || x > t ? x : y;
    }
    template <class T> static T backward(T dy, T x, T, T t) {
        return x > t ? dy : dy * Sigmoid::forward(x, T(0));
    }
};

// gelu(x) = x Phi(x) with Phi the standard normal CDF; dy/dx = Phi(x) + x phi(x) (vmath.hpp:
// computed in double and rounded once; Phi of a negative x from erfc, without cancellation)
struct Gelu {
    template <class T> static T forward(T x, T) { return vm::gelu(x); }
    template <class T> static T backward(T dy, T x, T, T) { return dy * vm::gelu_grad(x); }
};

// PyTorch's approximate='tanh': 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3);
// dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx, t = tanh(u). Every operation rounds on its own (no
// fused multiply-add), so that every ISA gives the same bits, as for the other activations.
struct GeluTanh {
    template <class T> static T forward(T x, T) {
        const T u = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x);
        return T(0.5) * x * (T(1) + vm::tanh(u));
    }
    template <class T> static T backward(T dy, T x, T, T) {
        const T u = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x);
        const T t = vm::tanh(u);
        const T du = T(0.79788456080286535588) * (T(1) + T(3) * T(0.044715) * x * x);
        return dy * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
    }
};

// dy/dx = y, from the saved output
struct Exp {
    template <class T> static T forward(T x, T) { return vm::exp(x); }
    template <class T> static T backward(T dy, T, T y, T) { return dy * y; }
};

// dy/dx = 1 / x
struct Log {
    template <class T> static T forward(T x, T) { return vm::log(x); }
    template <class T> static T backward(T dy, T x, T, T) { return dy / x; }
};

template <class Op, class T>
void map_forward(T* GD_RESTRICT y, const T* GD_RESTRICT x, int64_t N, T alpha) {
    parallel_chunks(N, kChunk, 8 * N, [&](int64_t i0, int64_t i1) {
#pragma omp simd
        for (int64_t i = i0; i < i1; ++i) y[i] = Op::forward(x[i], alpha);
    });
}

// x or y may be null when Op does not read it; a zero stands in.
template <class Op, class T>
void map_backward(T* GD_RESTRICT dx, const T* GD_RESTRICT dy, const T* x, const T* y, int64_t N,
                  T alpha) {
    parallel_chunks(N, kChunk, 8 * N, [&](int64_t i0, int64_t i1) {
        if (x != nullptr && y != nullptr) {
            for (int64_t i = i0; i < i1; ++i) dx[i] = Op::backward(dy[i], x[i], y[i], alpha);
        } else if (x != nullptr) {
#pragma omp simd
            for (int64_t i = i0; i < i1; ++i) dx[i] = Op::backward(dy[i], x[i], T(0), alpha);
        } else {
#pragma omp simd
            for (int64_t i = i0; i < i1; ++i) dx[i] = Op::backward(dy[i], T(0), y[i], alpha);
        }
    });
}

}  // namespace

template <class T>
void activation_forward(Act op, T* y, const T* x, int64_t N, T alpha) {
    switch (op) {
        case Act::relu: return map_forward<Relu>(y, x, N, alpha);
        case Act::leaky_relu: return map_forward<LeakyRelu>(y, x, N, alpha);
        case Act::tanh: return map_forward<Tanh>(y, x, N, alpha);
        case Act::sigmoid: return map_forward<Sigmoid>(y, x, N, alpha);
        case Act::softplus: return map_forward<Softplus>(y, x, N, alpha);
        case Act::gelu: return map_forward<Gelu>(y, x, N, alpha);
        case Act::gelu_tanh: return map_forward<GeluTanh>(y, x, N, alpha);
        case Act::exp: return map_forward<Exp>(y, x, N, alpha);
        case Act::log: return map_forward<Log>(y, x, N, alpha);
    }
}

template <class T>
void activation_backward(Act op, T* dx, const T* dy, const T* x, const T* y, int64_t N, T alpha) {
    switch (op) {
        case Act::relu: return map_backward<Relu>(dx, dy, x, y, N, alpha);
        case Act::leaky_relu: return map_backward<LeakyRelu>(dx, dy, x, y, N, alpha);
        case Act::tanh: return map_backward<Tanh>(dx, dy, x, y, N, alpha);
        case Act::sigmoid: return map_backward<Sigmoid>(dx, dy, x, y, N, alpha);
        case Act::softplus: return map_backward<Softplus>(dx, dy, x, y, N, alpha);
        case Act::gelu: return map_backward<Gelu>(dx, dy, x, y, N, alpha);
        case Act::gelu_tanh: return map_backward<GeluTanh>(dx, dy, x, y, N, alpha);
        case Act::exp: return map_backward<Exp>(dx, dy, x, y, N, alpha);
        case Act::log: return map_backward<Log>(dx, dy, x, y, N, alpha);
    }
}

template void activation_forward<float>(Act, float*, const float*, int64_t, float);
template void activation_forward<double>(Act, double*, const double*, int64_t, double);
template void activation_backward<float>(Act, float*, const float*, const float*, const float*,
                                         int64_t, float);
template void activation_backward<double>(Act, double*, const double*, const double*,
                                          const double*, int64_t, double);

}  // namespace GD_NS
}  // namespace gd

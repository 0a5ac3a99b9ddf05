// The kernels of every ISA this build has, without Python: against naive double-precision
// oracles within rounding-error bounds, vmath.hpp's functions in ulps of a long double oracle and
// bit for bit across ISAs, 1 thread against 2 bit for bit, and the bitwise contract
// of gd.compile at batch 1 (the fused SGD forward equals the update then the forward). Runs
// natively or under QEMU (.ci/aarch64); exit status 1 on any failure.
// Build: cmake -S . -B build/kernel-test -DGRADDESC_KERNEL_TEST=ON (CMakeLists.txt).
// Shape legend as in kernels.hpp: B batch rows, IN/OUT features, N element count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "conv.hpp"
#include "kernels.hpp"
#include "parallel.hpp"

namespace {

using gd::Act;
using gd::KernelTable;

int g_failures = 0;
int64_t g_checks = 0;
std::string g_where;  // ISA, dtype, threads

void fail(const std::string& what) {
    if (g_failures < 40) std::fprintf(stderr, "FAIL [%s] %s\n", g_where.c_str(), what.c_str());
    ++g_failures;
}

// A fixed pseudo-random sequence (splitmix64), the same on every platform and standard library.
struct Rng {
    uint64_t s;
    double uniform(double lo, double hi) {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return lo + (hi - lo) * static_cast<double>(z >> 11) * 0x1.0p-53;
    }
    template <class T>
    std::vector<T> vec(size_t n, double lo = -1, double hi = 1) {
        std::vector<T> v(n);
        for (auto& x : v) x = static_cast<T>(uniform(lo, hi));
        return v;
    }
};

template <class T>
constexpr double kEps = std::numeric_limits<T>::epsilon();

// got[i] within tol[i] of want[i] (a NaN wanted must be a NaN got)
template <class T>
void check_close(const std::string& name, const T* got, const std::vector<double>& want,
                 const std::vector<double>& tol) {
    ++g_checks;
    for (size_t i = 0; i < want.size(); ++i) {
        const double g = static_cast<double>(got[i]);
        const bool ok = std::isnan(want[i]) ? std::isnan(g) : std::fabs(g - want[i]) <= tol[i];
        if (!ok) {
            char buf[256];
            std::snprintf(buf, sizeof buf, "%s: element %zu is %.17g, want %.17g (tolerance %.3g)",
                          name.c_str(), i, g, want[i], tol[i]);
            fail(buf);
            return;
        }
    }
}

template <class T>
void check_equal_bits(const std::string& name, const std::vector<T>& a, const std::vector<T>& b) {
    ++g_checks;
    if (a.size() != b.size() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) != 0) {
        size_t i = 0;
        while (i < a.size() && i < b.size() && std::memcmp(&a[i], &b[i], sizeof(T)) == 0) ++i;
        fail(name + ": not bitwise equal (first difference at element " + std::to_string(i) + ")");
    }
}

// Everything a test run wrote, for the 1-thread against 2-thread comparison.
template <class T>
struct Outputs {
    std::vector<T> v;
    void add(const T* p, size_t n) { v.insert(v.end(), p, p + n); }
    void add(const std::vector<T>& x) { add(x.data(), x.size()); }
};

// ---------------------------------------------------------------------------------------- gemm

template <class T>
void test_gemm(const KernelTable<T>& k, Outputs<T>& out) {
    struct Shape {
        int64_t M, N, K;
    };
    // matrix-vector (M = 1, N = 1), outer product (K = 1), tiny, the short-M paths (in place,
    // row dots), several K blocks, and one large enough for several threads
    const Shape shapes[] = {{1, 37, 53},  {29, 1, 41},  {13, 17, 1},  {3, 5, 7},    {5, 33, 300},
                            {45, 70, 33}, {19, 9, 130}, {64, 71, 600}, {170, 150, 170}};
    const double ab[][2] = {{1, 0}, {0.75, -1.25}, {1, 1}, {-2, 0.5}};
    Rng rng{1};
    int variant = 0;
    for (const Shape& s : shapes)
        for (int t = 0; t < 4; ++t) {
            const bool ta = t & 1, tb = t & 2;
            const double alpha = ab[variant % 4][0], beta = ab[variant % 4][1];
            ++variant;
            // padded leading dimensions; one case with rows 4 KiB apart (packed A path)
            const int64_t a_rows = ta ? s.K : s.M, a_cols = ta ? s.M : s.K;
            const int64_t b_rows = tb ? s.N : s.K, b_cols = tb ? s.K : s.N;
            constexpr int64_t page = 4096 / int64_t(sizeof(T));
            const int64_t lda = s.M == 64 && !ta ? (a_cols + page - 1) / page * page : a_cols + 3;
            const int64_t ldb = b_cols + 1, ldc = s.N + 5;
            const auto A = rng.vec<T>(static_cast<size_t>(a_rows * lda)), B = rng.vec<T>(static_cast<size_t>(b_rows * ldb));
            auto C = rng.vec<T>(static_cast<size_t>(s.M * ldc));
            if (beta == 0)  // never read: a NaN there must not reach the result
                for (auto& c : C) c = std::numeric_limits<T>::quiet_NaN();
            const std::vector<T> C0 = C;
            k.gemm(ta, tb, s.M, s.N, s.K, T(alpha), A.data(), lda, B.data(), ldb, T(beta),
                   C.data(), ldc);
            std::vector<double> want, tol, got_all;
            std::vector<T> got;
            for (int64_t i = 0; i < s.M; ++i)
                for (int64_t j = 0; j < ldc; ++j) {
                    double w, bound;
                    if (j < s.N) {
                        double acc = 0, mag = 0;
                        for (int64_t q = 0; q < s.K; ++q) {
                            const double a = ta ? A[q * lda + i] : A[i * lda + q];
                            const double b = tb ? B[j * ldb + q] : B[q * ldb + j];
                            acc += a * b;
                            mag += std::fabs(a * b);
                        }
                        const double c0 = beta == 0 ? 0.0 : double(C0[i * ldc + j]);
                        w = alpha * acc + beta * c0;
                        bound = 2 * (s.K + 4) * kEps<T> * (std::fabs(alpha) * mag +
                                                           std::fabs(beta * c0));
                    } else {  // the padding of C is never written
                        w = C0[i * ldc + j];
                        bound = 0;
                    }
                    want.push_back(w);
                    tol.push_back(bound);
                    got.push_back(C[i * ldc + j]);
                }
            char name[96];
            std::snprintf(name, sizeof name, "gemm ta=%d tb=%d %lldx%lldx%lld alpha=%g beta=%g",
                          int(ta), int(tb), (long long)s.M, (long long)s.N, (long long)s.K, alpha,
                          beta);
            if (beta == 0) {  // the padding holds NaN, compare it by bits
                for (size_t q = 0; q < got.size(); ++q)
                    if (q % static_cast<size_t>(ldc) >= static_cast<size_t>(s.N)) {
                        want[q] = 0;
                        got[q] = std::isnan(got[q]) ? T(0) : T(1);
                    }
            }
            check_close(name, got.data(), want, tol);
            out.add(C);
        }
}

// -------------------------------------------------------------------------------------- linear

template <class T>
void test_linear(const KernelTable<T>& k, Outputs<T>& out) {
    struct Shape {
        int64_t B, IN, OUT;
    };
    const Shape shapes[] = {{1, 1, 3}, {1, 37, 11}, {4, 13, 70}, {33, 130, 70}};
    Rng rng{2};
    for (const Shape& s : shapes)
        for (int bias = 0; bias < 2; ++bias) {
            const auto x = rng.vec<T>(static_cast<size_t>(s.B * s.IN)), W = rng.vec<T>(static_cast<size_t>(s.OUT * s.IN));
            const auto b = rng.vec<T>(static_cast<size_t>(s.OUT)), dy = rng.vec<T>(static_cast<size_t>(s.B * s.OUT));
            const T* bp = bias ? b.data() : nullptr;
            std::vector<T> y(static_cast<size_t>(s.B * s.OUT)), yr(y.size());
            k.linear_forward(y.data(), x.data(), W.data(), bp, s.B, s.IN, s.OUT);
            k.linear_forward_relu(yr.data(), x.data(), W.data(), bp, s.B, s.IN, s.OUT);
            std::vector<double> want, want_relu, tol;
            for (int64_t r = 0; r < s.B; ++r)
                for (int64_t o = 0; o < s.OUT; ++o) {
                    double acc = bias ? double(b[o]) : 0.0, mag = std::fabs(acc);
                    for (int64_t i = 0; i < s.IN; ++i) {
                        acc += double(x[r * s.IN + i]) * W[o * s.IN + i];
                        mag += std::fabs(double(x[r * s.IN + i]) * W[o * s.IN + i]);
                    }
                    want.push_back(acc);
                    want_relu.push_back(acc > 0 ? acc : 0.0);
                    tol.push_back(2 * (s.IN + 4) * kEps<T> * mag);
                }
            const std::string tag = "B=" + std::to_string(s.B) + " IN=" + std::to_string(s.IN) +
                                    " OUT=" + std::to_string(s.OUT) + " bias=" + std::to_string(bias);
            check_close("linear_forward " + tag, y.data(), want, tol);
            check_close("linear_forward_relu " + tag, yr.data(), want_relu, tol);

            std::vector<T> dx(x.size()), dW(W.size()), db(b.size());
            k.linear_backward(dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), s.B,
                              s.IN, s.OUT);
            std::vector<double> wdx, tdx, wdw, tdw, wdb, tdb;
            for (int64_t r = 0; r < s.B; ++r)  // dx = dy W
                for (int64_t i = 0; i < s.IN; ++i) {
                    double acc = 0, mag = 0;
                    for (int64_t o = 0; o < s.OUT; ++o) {
                        acc += double(dy[r * s.OUT + o]) * W[o * s.IN + i];
                        mag += std::fabs(double(dy[r * s.OUT + o]) * W[o * s.IN + i]);
                    }
                    wdx.push_back(acc);
                    tdx.push_back(2 * (s.OUT + 4) * kEps<T> * mag);
                }
            for (int64_t o = 0; o < s.OUT; ++o)  // dW = dy^T x
                for (int64_t i = 0; i < s.IN; ++i) {
                    double acc = 0, mag = 0;
                    for (int64_t r = 0; r < s.B; ++r) {
                        acc += double(dy[r * s.OUT + o]) * x[r * s.IN + i];
                        mag += std::fabs(double(dy[r * s.OUT + o]) * x[r * s.IN + i]);
                    }
                    wdw.push_back(acc);
                    tdw.push_back(2 * (s.B + 4) * kEps<T> * mag);
                }
            for (int64_t o = 0; o < s.OUT; ++o) {  // db = sum over the batch of dy
                double acc = 0, mag = 0;
                for (int64_t r = 0; r < s.B; ++r) {
                    acc += dy[r * s.OUT + o];
                    mag += std::fabs(double(dy[r * s.OUT + o]));
                }
                wdb.push_back(acc);
                tdb.push_back(2 * (s.B + 4) * kEps<T> * mag);
            }
            check_close("linear_backward dx " + tag, dx.data(), wdx, tdx);
            check_close("linear_backward dW " + tag, dW.data(), wdw, tdw);
            check_close("linear_backward db " + tag, db.data(), wdb, tdb);
            out.add(y);
            out.add(yr);
            out.add(dx);
            out.add(dW);
            out.add(db);
        }
}

// --------------------------------------------------------------------------------- activations

// The oracle: each nonlinearity and its derivative in double precision.
double act_forward(Act op, double x, double a) {
    const double c = 0.79788456080286535588;  // sqrt(2 / pi)
    switch (op) {
        case Act::relu: return x > 0 ? x : 0.0;
        case Act::leaky_relu: return x > 0 ? x : a * x;
        case Act::tanh: return std::tanh(x);
        case Act::sigmoid: return 1 / (1 + std::exp(-x));
        case Act::softplus: return x > a ? x : std::log1p(std::exp(x));  // a: the threshold
        case Act::gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
        case Act::gelu_tanh: return 0.5 * x * (1 + std::tanh(c * (x + 0.044715 * x * x * x)));
        case Act::exp: return std::exp(x);
        case Act::log: return std::log(x);
    }
    return 0;
}

double act_derivative(Act op, double x, double a) {
    const double c = 0.79788456080286535588;
    switch (op) {
        case Act::relu: return x > 0 ? 1.0 : 0.0;
        case Act::leaky_relu: return x > 0 ? 1.0 : a;
        case Act::tanh: return 1 - std::tanh(x) * std::tanh(x);
        case Act::sigmoid: {
            const double s = 1 / (1 + std::exp(-x));
            return s * (1 - s);
        }
        case Act::softplus: return x > a ? 1.0 : 1 / (1 + std::exp(-x));
        case Act::gelu:
            return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) +
                   x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
        case Act::gelu_tanh: {
            const double t = std::tanh(c * (x + 0.044715 * x * x * x));
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
        }
        case Act::exp: return std::exp(x);
        case Act::log: return 1 / x;
    }
    return 0;
}

template <class T>
void test_activations(const KernelTable<T>& k, Outputs<T>& out) {
    const Act ops[] = {Act::relu, Act::leaky_relu, Act::tanh,      Act::sigmoid, Act::softplus,
                       Act::gelu, Act::gelu_tanh,  Act::exp,       Act::log};
    const char* names[] = {"relu", "leaky_relu", "tanh", "sigmoid", "softplus",
                           "gelu", "gelu_tanh",  "exp",  "log"};
    Rng rng{3};
    // 70001: more than one parallel chunk (parallel.hpp), and not a multiple of a vector
    for (int64_t N : {int64_t(1), int64_t(7), int64_t(70001)})
        for (int q = 0; q < 9; ++q) {
            const Act op = ops[q];
            const T alpha = T(0.1);
            auto x = rng.vec<T>(static_cast<size_t>(N), -4, 4);
            for (auto& v : x) {
                if (op == Act::log) v = std::fabs(v) + T(0.05);
                else if (std::fabs(v) < T(1e-3)) v = T(0.5);  // away from the kink at 0
            }
            const auto dy = rng.vec<T>(static_cast<size_t>(N));
            std::vector<T> y(x.size()), dx(x.size());
            k.activation_forward(op, y.data(), x.data(), N, alpha);
            // each op reads the saved tensor it needs: y for tanh, sigmoid and exp, else x
            const bool from_y = op == Act::tanh || op == Act::sigmoid || op == Act::exp;
            k.activation_backward(op, dx.data(), dy.data(), from_y ? nullptr : x.data(),
                                  from_y ? y.data() : nullptr, N, alpha);
            std::vector<double> wy, ty, wdx, tdx;
            for (int64_t i = 0; i < N; ++i) {
                const double f = act_forward(op, x[i], alpha);
                const double d = double(dy[i]) * act_derivative(op, x[i], alpha);
                wy.push_back(f);
                ty.push_back(32 * kEps<T> * (1 + std::fabs(f)));
                wdx.push_back(d);
                // from y: the rounding of y (relative) is amplified by at most |x| in the slope
                tdx.push_back(64 * kEps<T> * (1 + std::fabs(double(x[i]))) *
                              (1 + std::fabs(d) + std::fabs(double(dy[i]))));
            }
            const std::string tag = std::string(names[q]) + " N=" + std::to_string(N);
            check_close("activation_forward " + tag, y.data(), wy, ty);
            check_close("activation_backward " + tag, dx.data(), wdx, tdx);
            out.add(y);
            out.add(dx);
        }
}

// ------------------------------------------------------------------------ vmath (vmath.hpp)

// |got - want| in ulps of T at want (the denormal ulp below the normal range); 0 where both are
// the same non-finite value, a large number where only one is finite
template <class T>
double ulp_error(T got, long double want) {
    const long double g = static_cast<long double>(got);
    if (std::isnan(want) || std::isnan(g)) return std::isnan(want) && std::isnan(g) ? 0 : 1e30;
    const long double max = std::numeric_limits<T>::max();
    if (std::fabs(want) > max || std::isinf(g)) {
        const long double rounded = static_cast<long double>(static_cast<T>(want));
        return rounded == g ? 0 : 1e30;  // want beyond max: it must round to what got is
    }
    int e = 0;
    std::frexp(static_cast<double>(std::fabs(want)), &e);  // want in [2^(e-1), 2^e)
    const int lowest = std::numeric_limits<T>::min_exponent;  // 2^(lowest-1) = min normal
    const int exponent = (want == 0 ? lowest : std::max(e, lowest)) - 1;
    const long double ulp = std::ldexp(1.0L, exponent - (std::numeric_limits<T>::digits - 1));
    return static_cast<double>(std::fabs(g - want) / ulp);
}

// The oracle in long double (x86-64: 80 bits; aarch64: 128 bits).
long double vmath_oracle(int f, long double x) {
    switch (f) {
        case 0: return std::exp(x);
        case 1: return std::log(x);
        case 2: return std::log1p(x);
        case 3: return std::tanh(x);
        case 4: return 1 / (1 + std::exp(-x));
        default: return x * 0.5L * std::erfc(-x / std::sqrt(2.0L));  // gelu
    }
}

template <class T>
std::vector<T>& vmath_first_isa() {
    static std::vector<T> v;
    return v;
}

// exp, log, log1p (elementwise kernel) and tanh, sigmoid, gelu (activation kernel) over sweeps of
// each domain (range-reduction seams, overflow and underflow thresholds, denormals, +-0, +-inf,
// NaN) within the bounds of docs/performance-vmath.md, and the same bits on every ISA.
template <class T>
void test_vmath(const KernelTable<T>& k, const char* isa) {
    const bool f32 = sizeof(T) == 4;
    const T inf = std::numeric_limits<T>::infinity();
    const T specials[] = {std::numeric_limits<T>::quiet_NaN(), inf, -inf, T(0), -T(0),
                          std::numeric_limits<T>::denorm_min(), std::numeric_limits<T>::min(),
                          std::numeric_limits<T>::max(), -std::numeric_limits<T>::max(),
                          T(1), T(-1)};
    struct Fn { const char* name; double lo, hi, bound; };
    const Fn fns[] = {
        {"exp", f32 ? -104.5 : -746.0, f32 ? 89.0 : 710.0, 1.0},
        {"log", 0.0, 4.0, 1.5},
        {"log1p", -1.0, 3.0, 1.5},
        {"tanh", -10.0, 10.0, 1.5},
        {"sigmoid", f32 ? -110.0 : -750.0, 40.0, 1.5},
        {"gelu", f32 ? -15.0 : -38.5, 8.0, f32 ? 1.0 : 8.0},
    };
    std::vector<T> all;
    const int64_t n = 20001;  // odd: a scalar tail after the vector loop
    for (int f = 0; f < 6; ++f) {
        std::vector<T> x(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i)
            x[i] = static_cast<T>(fns[f].lo + (fns[f].hi - fns[f].lo) * double(i) / double(n - 1));
        // a finer sweep across each seam: tanh's 0.625, gelu's |x| / sqrt 2 = 0.75, log's
        // sqrt 2, and small |x| (log1p, tanh keep relative accuracy there)
        const double seam = f == 3 ? 0.625 : f == 5 ? -1.0606601717798212 : f == 1 ? 1.4142 : 0;
        for (int64_t i = 0; i < 2001; ++i) x.push_back(static_cast<T>(seam + (i - 1000) * 1e-6));
        for (T v : specials) x.push_back(v);
        const int64_t N = static_cast<int64_t>(x.size());
        std::vector<T> y(x.size());
        if (f < 3) {
            const gd::Ew op = f == 0 ? gd::Ew::exp : f == 1 ? gd::Ew::log : gd::Ew::log1p;
            const int64_t shape[1] = {N}, st[1] = {1};
            const void* xs[3] = {x.data(), nullptr, nullptr};
            const int64_t* xst[3] = {st, nullptr, nullptr};
            k.elementwise(op, y.data(), st, xs, xst, nullptr, shape, 1);
        } else {
            const Act op = f == 3 ? Act::tanh : f == 4 ? Act::sigmoid : Act::gelu;
            k.activation_forward(op, y.data(), x.data(), N, T(0));
        }
        double worst = 0;
        int64_t at = 0;
        for (int64_t i = 0; i < N; ++i) {
            const double e = ulp_error(y[i], vmath_oracle(f, static_cast<long double>(x[i])));
            if (e > worst) worst = e, at = i;
        }
        ++g_checks;
        if (worst > fns[f].bound) {
            char buf[200];
            std::snprintf(buf, sizeof buf, "vmath %s: %.3g ulp at x = %.17g (bound %.2g)",
                          fns[f].name, worst, double(x[at]), fns[f].bound);
            fail(buf);
        }
        all.insert(all.end(), y.begin(), y.end());
    }
    std::vector<T>& first = vmath_first_isa<T>();
    if (first.empty()) first = all;
    else check_equal_bits(std::string("vmath outputs, ") + isa + " vs the first ISA", all, first);
}

// ------------------------------------------------------------------------------------- losses

template <class T>
void test_losses(const KernelTable<T>& k, Outputs<T>& out) {
    Rng rng{4};
    // 67 x 33: enough rows for several threads (loss.cpp's kExpWork estimate)
    for (const auto& [B, C] : {std::pair<int64_t, int64_t>{1, 1}, {3, 10}, {67, 33}}) {
        const auto x = rng.vec<T>(static_cast<size_t>(B * C), -5, 5), dy = rng.vec<T>(static_cast<size_t>(B * C));
        std::vector<T> y(x.size()), ly(x.size()), dx(x.size()), ldx(x.size());
        k.softmax_forward(y.data(), x.data(), B, C);
        k.log_softmax_forward(ly.data(), x.data(), B, C);
        k.softmax_backward(dx.data(), dy.data(), y.data(), B, C);
        k.log_softmax_backward(ldx.data(), dy.data(), ly.data(), B, C);
        std::vector<double> wy, wly, wdx, wldx, tol, tol_log;
        std::vector<double> lse(static_cast<size_t>(B));
        for (int64_t r = 0; r < B; ++r) {
            double m = -INFINITY, s = 0, sdy = 0, dot = 0;
            for (int64_t c = 0; c < C; ++c) m = std::max(m, double(x[r * C + c]));
            for (int64_t c = 0; c < C; ++c) s += std::exp(double(x[r * C + c]) - m);
            lse[static_cast<size_t>(r)] = m + std::log(s);
            for (int64_t c = 0; c < C; ++c) {
                const double p = std::exp(double(x[r * C + c]) - lse[static_cast<size_t>(r)]);
                sdy += dy[r * C + c];
                dot += double(dy[r * C + c]) * p;
            }
            for (int64_t c = 0; c < C; ++c) {
                const double p = std::exp(double(x[r * C + c]) - lse[static_cast<size_t>(r)]);
                wy.push_back(p);
                wly.push_back(double(x[r * C + c]) - lse[static_cast<size_t>(r)]);
                wdx.push_back(p * (double(dy[r * C + c]) - dot));
                wldx.push_back(double(dy[r * C + c]) - p * sdy);
                tol.push_back(8 * (C + 4) * kEps<T>);
                tol_log.push_back(8 * (C + 4) * kEps<T> * (1 + std::fabs(wly.back())));
            }
        }
        const std::string tag = std::to_string(B) + "x" + std::to_string(C);
        check_close("softmax_forward " + tag, y.data(), wy, tol);
        check_close("log_softmax_forward " + tag, ly.data(), wly, tol_log);
        check_close("softmax_backward " + tag, dx.data(), wdx, tol);
        check_close("log_softmax_backward " + tag, ldx.data(), wldx, tol_log);

        // cross-entropy; the last row's target is ignore_index (loss 0, gradient 0)
        const int64_t ignore = -100;
        std::vector<int64_t> target(static_cast<size_t>(B));
        for (int64_t r = 0; r < B; ++r) target[static_cast<size_t>(r)] = (r * 7) % C;
        if (B > 1) target[static_cast<size_t>(B - 1)] = ignore;
        std::vector<T> loss(static_cast<size_t>(B)), lse_got(static_cast<size_t>(B)), dl(x.size()), dl_s(x.size());
        k.cross_entropy_forward(loss.data(), lse_got.data(), x.data(), target.data(), B, C, ignore);
        const auto dloss = rng.vec<T>(static_cast<size_t>(B));
        k.cross_entropy_backward(dl.data(), dloss.data(), 1, x.data(), lse_got.data(),
                                 target.data(), B, C, ignore);
        k.cross_entropy_backward(dl_s.data(), dloss.data(), 0, x.data(), lse_got.data(),
                                 target.data(), B, C, ignore);
        std::vector<double> wl, wlse, tl, wg, wg_s, tg;
        for (int64_t r = 0; r < B; ++r) {
            const int64_t t = target[static_cast<size_t>(r)];
            wlse.push_back(lse[static_cast<size_t>(r)]);
            wl.push_back(t == ignore ? 0.0 : lse[static_cast<size_t>(r)] - x[r * C + t]);
            tl.push_back(8 * (C + 4) * kEps<T> * (1 + std::fabs(lse[static_cast<size_t>(r)])));
            for (int64_t c = 0; c < C; ++c) {
                const double p = std::exp(double(x[r * C + c]) - lse[static_cast<size_t>(r)]) - (c == t);
                wg.push_back(t == ignore ? 0.0 : double(dloss[static_cast<size_t>(r)]) * p);
                wg_s.push_back(t == ignore ? 0.0 : double(dloss[0]) * p);
                tg.push_back(8 * (C + 4) * kEps<T>);
            }
        }
        check_close("cross_entropy_forward loss " + tag, loss.data(), wl, tl);
        check_close("cross_entropy_forward lse " + tag, lse_got.data(), wlse, tl);
        check_close("cross_entropy_backward " + tag, dl.data(), wg, tg);
        check_close("cross_entropy_backward stride 0 " + tag, dl_s.data(), wg_s, tg);
        for (const auto* v : {&y, &ly, &dx, &ldx, &loss, &lse_got, &dl, &dl_s}) out.add(*v);
    }
}

// ------------------------------------------------------------------------------------- optim

// One SGD step in double, PyTorch's rule (optim.cpp's sgd_block); buf is updated.
void sgd_oracle(std::vector<double>& p, std::vector<double>& buf, const std::vector<double>& g,
                bool fresh, const gd::SgdHyper& h) {
    for (size_t j = 0; j < p.size(); ++j) {
        double d = h.maximize ? -g[j] : g[j];
        d += h.weight_decay * p[j];
        if (h.momentum != 0) {
            buf[j] = fresh ? d : buf[j] * h.momentum + (1 - h.dampening) * d;
            d = h.nesterov ? d + h.momentum * buf[j] : buf[j];
        }
        p[j] -= h.lr * d;
    }
}

template <class T>
std::vector<double> widen(const std::vector<T>& v) {
    return std::vector<double>(v.begin(), v.end());
}

template <class T>
void test_optim(const KernelTable<T>& k, Outputs<T>& out) {
    Rng rng{5};
    // 70000 elements: a parallel step (optim.cpp's for_each_block), and two small tensors
    const int64_t n[] = {70000, 37, 1};
    const int64_t count = 3;
    const gd::SgdHyper sgds[] = {{0.1, 0, 0, 0, false, false},
                                 {0.05, 0.9, 0.1, 0.01, false, false},
                                 {0.05, 0.9, 0, 0, true, true}};
    for (const gd::SgdHyper& h : sgds) {
        std::vector<std::vector<T>> p, buf, g;
        std::vector<std::vector<double>> wp, wbuf;
        for (int64_t i = 0; i < count; ++i) {
            p.push_back(rng.vec<T>(static_cast<size_t>(n[i])));
            buf.push_back(std::vector<T>(static_cast<size_t>(n[i])));
            wp.push_back(widen(p.back()));
            wbuf.push_back(std::vector<double>(static_cast<size_t>(n[i])));
        }
        for (int step = 0; step < 2; ++step) {
            std::vector<T*> pp, bp;
            std::vector<const T*> gp;
            g.clear();
            for (int64_t i = 0; i < count; ++i) g.push_back(rng.vec<T>(static_cast<size_t>(n[i])));
            for (int64_t i = 0; i < count; ++i) {
                pp.push_back(p[i].data());
                bp.push_back(buf[i].data());
                gp.push_back(g[i].data());
            }
            const std::vector<uint8_t> fresh(static_cast<size_t>(count), uint8_t(step == 0));
            k.sgd_step(pp.data(), h.momentum != 0 ? bp.data() : nullptr, nullptr, gp.data(),
                       nullptr, h.momentum != 0 ? fresh.data() : nullptr, n, count, h);
            for (int64_t i = 0; i < count; ++i) {
                sgd_oracle(wp[i], wbuf[i], widen(g[i]), step == 0, h);
                std::vector<double> tol(wp[i].size());
                for (size_t j = 0; j < tol.size(); ++j) tol[j] = 16 * kEps<T> * (1 + std::fabs(wp[i][j]));
                check_close("sgd_step momentum=" + std::to_string(h.momentum) + " step " +
                                std::to_string(step) + " tensor " + std::to_string(i),
                            p[i].data(), wp[i], tol);
            }
        }
        for (const auto& v : p) out.add(v);
    }

    // Adam, AMSGrad with L2 weight decay, AdamW: two steps
    const gd::AdamHyper adams[] = {{1e-2, 0.9, 0.999, 1e-8, 0, false, false, false},
                                   {1e-2, 0.8, 0.99, 1e-6, 0.1, true, false, false},
                                   {1e-2, 0.9, 0.999, 1e-8, 0.1, false, true, true}};
    for (const gd::AdamHyper& h : adams) {
        std::vector<std::vector<T>> p, m, v, vmax;
        std::vector<std::vector<double>> wp, wm, wv, wvmax;
        for (int64_t i = 0; i < count; ++i) {
            p.push_back(rng.vec<T>(static_cast<size_t>(n[i])));
            m.push_back(std::vector<T>(static_cast<size_t>(n[i])));
            v.push_back(std::vector<T>(static_cast<size_t>(n[i])));
            vmax.push_back(std::vector<T>(static_cast<size_t>(n[i])));
            wp.push_back(widen(p.back()));
            wm.push_back(std::vector<double>(static_cast<size_t>(n[i])));
            wv.push_back(wm.back());
            wvmax.push_back(wm.back());
        }
        for (int step = 1; step <= 2; ++step) {
            std::vector<std::vector<T>> g;
            std::vector<T*> pp, mp, vp, xp;
            std::vector<const T*> gp;
            for (int64_t i = 0; i < count; ++i) g.push_back(rng.vec<T>(static_cast<size_t>(n[i])));
            for (int64_t i = 0; i < count; ++i) {
                pp.push_back(p[i].data());
                mp.push_back(m[i].data());
                vp.push_back(v[i].data());
                xp.push_back(vmax[i].data());
                gp.push_back(g[i].data());
            }
            const std::vector<double> steps(static_cast<size_t>(count), double(step));
            k.adam_step(pp.data(), mp.data(), vp.data(), h.amsgrad ? xp.data() : nullptr,
                        gp.data(), steps.data(), n, count, h);
            const double bc1 = 1 - std::pow(h.beta1, step), bc2 = 1 - std::pow(h.beta2, step);
            for (int64_t i = 0; i < count; ++i) {
                std::vector<double> tol(wp[i].size());
                for (size_t j = 0; j < wp[i].size(); ++j) {
                    double d = h.maximize ? -double(g[i][j]) : double(g[i][j]);
                    if (h.decoupled) wp[i][j] *= 1 - h.lr * h.weight_decay;
                    else d += h.weight_decay * wp[i][j];
                    wm[i][j] += (1 - h.beta1) * (d - wm[i][j]);
                    wv[i][j] = h.beta2 * wv[i][j] + (1 - h.beta2) * d * d;
                    wvmax[i][j] = std::max(wvmax[i][j], wv[i][j]);
                    const double s = h.amsgrad ? wvmax[i][j] : wv[i][j];
                    const double denom = std::sqrt(s) / std::sqrt(bc2) + h.eps;
                    wp[i][j] -= h.lr / bc1 * wm[i][j] / denom;
                    // the step is about lr; its rounding is relative to that
                    tol[j] = 64 * kEps<T> * (1 + std::fabs(wp[i][j]));
                }
                check_close("adam_step amsgrad=" + std::to_string(h.amsgrad) +
                                " decoupled=" + std::to_string(h.decoupled) + " step " +
                                std::to_string(step) + " tensor " + std::to_string(i),
                            p[i].data(), wp[i], tol);
            }
        }
        for (const auto& x : p) out.add(x);
    }
}

// ---------------------------------------------------------------- the compiled step at batch 1

// gd.compile's deferred update at batch 1: linear_forward_sgd applies the previous step's SGD
// update to W as it reads it for this step's forward. Its W and y must equal, bit for bit, those
// of the eager step: the gradient dW = dy^T x (linear_backward, a K = 1 product), sgd_step, then
// linear_forward; and those of sgd_outer_step then linear_forward (the compiled step's unfused
// update).
template <class T>
void test_fused_sgd_forward(const KernelTable<T>& k, Outputs<T>& out) {
    Rng rng{6};
    const gd::SgdHyper hypers[] = {{0.1, 0, 0, 0, false, false},     // plain: one pass
                                   {0.05, 0, 0, 0.01, false, false},  // weight decay: blocks
                                   {0.05, 0, 0, 0, false, true}};     // maximize: blocks
    for (const gd::SgdHyper& h : hypers)
        for (const auto& [IN, OUT] : {std::pair<int64_t, int64_t>{2, 1}, {3, 5}, {37, 11},
                                      {300, 60}, {784, 33}})
            for (int bias = 0; bias < 2; ++bias) {
                const auto W0 = rng.vec<T>(static_cast<size_t>(OUT * IN)), b = rng.vec<T>(static_cast<size_t>(OUT));
                const auto x_old = rng.vec<T>(static_cast<size_t>(IN)), dy_old = rng.vec<T>(static_cast<size_t>(OUT));
                const auto x = rng.vec<T>(static_cast<size_t>(IN));
                const T* bp = bias ? b.data() : nullptr;
                // eager: gradient, update, forward
                std::vector<T> We = W0, dW(W0.size()), ye(static_cast<size_t>(OUT));
                k.linear_backward(nullptr, dW.data(), nullptr, dy_old.data(), x_old.data(),
                                  We.data(), 1, IN, OUT);
                T* pp[] = {We.data()};
                const T* gp[] = {dW.data()};
                const int64_t n[] = {OUT * IN};
                k.sgd_step(pp, nullptr, nullptr, gp, nullptr, nullptr, n, 1, h);
                k.linear_forward(ye.data(), x.data(), We.data(), bp, 1, IN, OUT);
                // compiled, unfused: the update without a stored gradient, then the forward
                std::vector<T> Wo = W0, yo(static_cast<size_t>(OUT));
                k.sgd_outer_step(Wo.data(), nullptr, dy_old.data(), x_old.data(), OUT, IN, h);
                k.linear_forward(yo.data(), x.data(), Wo.data(), bp, 1, IN, OUT);
                // compiled, fused
                std::vector<T> Wf = W0, yf(static_cast<size_t>(OUT));
                k.linear_forward_sgd(yf.data(), x.data(), Wf.data(), bp, IN, OUT, dy_old.data(),
                                     x_old.data(), h);
                const std::string tag = "IN=" + std::to_string(IN) + " OUT=" +
                                        std::to_string(OUT) + " bias=" + std::to_string(bias) +
                                        " wd=" + std::to_string(h.weight_decay) +
                                        " maximize=" + std::to_string(h.maximize);
                check_equal_bits("sgd_outer_step W vs sgd_step W " + tag, Wo, We);
                check_equal_bits("sgd_outer_step y vs eager y " + tag, yo, ye);
                check_equal_bits("linear_forward_sgd W vs eager W " + tag, Wf, We);
                check_equal_bits("linear_forward_sgd y vs eager y " + tag, yf, ye);
                out.add(yf);
                out.add(Wf);
            }
}

// ------------------------------------------------------------------------------ conv and pool

// The conv table of the active ISA (as bind_conv.cpp picks it).
template <class T>
const gd::ConvTable<T>& conv_table() {
    const char* isa = gd::active_kernels().isa;
    const gd::ConvKernels* k = &gd::conv_kernels_baseline();
#if GD_BUILT_AVX512
    if (std::strcmp(isa, "avx512") == 0) k = &gd::conv_kernels_avx512();
#endif
#if GD_BUILT_AVX2
    if (std::strcmp(isa, "avx2") == 0) k = &gd::conv_kernels_avx2();
#endif
#if GD_BUILT_NEON
    if (std::strcmp(isa, "neon") == 0) k = &gd::conv_kernels_neon();
#endif
    (void)isa;
    if constexpr (sizeof(T) == sizeof(float)) return k->f32;
    else return k->f64;
}

// conv2d forward and backward against direct double loops (y = sum over taps; dx, dw by the
// same taps), and a 2x2 max pool with its indices and backward.
template <class T>
void test_conv(Outputs<T>& out) {
    const gd::ConvTable<T>& k = conv_table<T>();
    // N C H W, OC KH KW G, SH SW, PH PW, DH DW, OH OW
    const gd::ConvShape shapes[] = {{3, 4, 7, 9, 6, 3, 2, 2, 2, 1, 1, 1, 1, 2, 4, 8},
                                    {1, 2, 5, 5, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 5, 5},
                                    {40, 3, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 6, 6}};
    Rng rng{7};
    for (const gd::ConvShape& s : shapes) {
        const int64_t Cg = s.C / s.G, OCg = s.OC / s.G;
        const auto x = rng.vec<T>(static_cast<size_t>(s.N * s.C * s.H * s.W));
        const auto w = rng.vec<T>(static_cast<size_t>(s.OC * Cg * s.KH * s.KW));
        const auto b = rng.vec<T>(static_cast<size_t>(s.OC));
        const auto dy = rng.vec<T>(static_cast<size_t>(s.N * s.OC * s.OH * s.OW));
        std::vector<T> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
        k.conv2d_forward(y.data(), x.data(), w.data(), b.data(), s, false);
        k.conv2d_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s);
        std::vector<double> wy(y.size()), ty(y.size()), wdx(x.size(), 0.0), tdx(x.size(), 0.0),
            wdw(w.size(), 0.0), tdw(w.size(), 0.0), wdb(b.size(), 0.0), tdb(b.size(), 0.0);
        for (int64_t n = 0; n < s.N; ++n)
            for (int64_t o = 0; o < s.OC; ++o)
                for (int64_t oh = 0; oh < s.OH; ++oh)
                    for (int64_t ow = 0; ow < s.OW; ++ow) {
                        const size_t yi = static_cast<size_t>(((n * s.OC + o) * s.OH + oh) * s.OW + ow);
                        double acc = b[o], mag = std::fabs(double(b[o]));
                        const double g = dy[yi];
                        wdb[o] += g;
                        tdb[o] += std::fabs(g);
                        for (int64_t c = 0; c < Cg; ++c)
                            for (int64_t kh = 0; kh < s.KH; ++kh)
                                for (int64_t kw = 0; kw < s.KW; ++kw) {
                                    const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
                                    const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
                                    if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                                    const size_t xi = static_cast<size_t>(
                                        ((n * s.C + (o / OCg) * Cg + c) * s.H + ih) * s.W + iw);
                                    const size_t wi = static_cast<size_t>(
                                        ((o * Cg + c) * s.KH + kh) * s.KW + kw);
                                    acc += double(x[xi]) * w[wi];
                                    mag += std::fabs(double(x[xi]) * w[wi]);
                                    wdx[xi] += g * w[wi];
                                    tdx[xi] += std::fabs(g * w[wi]);
                                    wdw[wi] += g * x[xi];
                                    tdw[wi] += std::fabs(g * x[xi]);
                                }
                        wy[yi] = acc;
                        ty[yi] = 4 * (Cg * s.KH * s.KW + 4) * kEps<T> * mag;
                    }
        const double m = 4 * kEps<T> * double(s.N * s.OH * s.OW * s.OC + Cg * s.KH * s.KW + 8);
        for (auto* v : {&tdx, &tdw, &tdb})
            for (double& e : *v) e *= m;
        const std::string tag = "N=" + std::to_string(s.N) + " C=" + std::to_string(s.C) +
                                " G=" + std::to_string(s.G);
        check_close("conv2d_forward " + tag, y.data(), wy, ty);
        check_close("conv2d_backward dx " + tag, dx.data(), wdx, tdx);
        check_close("conv2d_backward dw " + tag, dw.data(), wdw, tdw);
        check_close("conv2d_backward db " + tag, db.data(), wdb, tdb);
        out.add(y);
        out.add(dx);
        out.add(dw);
        out.add(db);
    }
    // max pool 2x2, stride 2, on 5 x 4 planes (the last row is left out, as with floor mode)
    const int64_t P = 6, H = 5, W = 4, OH = 2, OW = 2;
    const int64_t hs[] = {0, 2}, hn[] = {2, 2}, ws[] = {0, 2}, wn[] = {2, 2};
    const gd::PoolShape ps{P, H, W, OH, OW, 1, 1, hs, hn, ws, wn};
    const auto x = rng.vec<T>(static_cast<size_t>(P * H * W));
    const auto dy = rng.vec<T>(static_cast<size_t>(P * OH * OW));
    std::vector<T> y(dy.size()), dx(x.size());
    std::vector<int64_t> idx(dy.size());
    k.maxpool2d_forward(y.data(), idx.data(), x.data(), ps);
    k.maxpool2d_backward(dx.data(), dy.data(), idx.data(), ps);
    std::vector<double> wy, wdx(x.size(), 0.0), zero(x.size(), 0.0);
    for (int64_t p = 0; p < P; ++p)
        for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
                int64_t best = (2 * oh) * W + 2 * ow;
                for (int64_t i = 0; i < 2; ++i)
                    for (int64_t j = 0; j < 2; ++j) {
                        const int64_t q = (2 * oh + i) * W + 2 * ow + j;
                        if (x[static_cast<size_t>(p * H * W + q)] > x[static_cast<size_t>(p * H * W + best)]) best = q;
                    }
                wy.push_back(x[static_cast<size_t>(p * H * W + best)]);
                wdx[static_cast<size_t>(p * H * W + best)] += dy[static_cast<size_t>((p * OH + oh) * OW + ow)];
                ++g_checks;
                if (idx[static_cast<size_t>((p * OH + oh) * OW + ow)] != best) fail("maxpool2d_forward: wrong index");
            }
    check_close("maxpool2d_forward", y.data(), wy, std::vector<double>(wy.size(), 0.0));
    check_close("maxpool2d_backward", dx.data(), wdx, zero);
    out.add(y);
    out.add(dx);
}

template <class T>
std::vector<T> run_all(const KernelTable<T>& k) {
    Outputs<T> out;
    test_gemm(k, out);
    test_linear(k, out);
    test_activations(k, out);
    test_losses(k, out);
    test_optim(k, out);
    test_fused_sgd_forward(k, out);
    test_conv(out);
    return out.v;
}

template <class T>
void run_isa(const char* isa, const char* dtype) {
    g_where = std::string(isa) + " " + dtype;
    test_vmath(gd::kernels<T>(), isa);
    std::vector<T> first;
    for (int threads : {1, 2}) {
        gd::set_num_threads(threads);
        g_where = std::string(isa) + " " + dtype + " " + std::to_string(threads) + " thread(s)";
        const std::vector<T> got = run_all(gd::kernels<T>());
        if (threads == 1) first = got;
        else check_equal_bits("all outputs, 2 threads vs 1", got, first);
    }
}

}  // namespace

int main() {
    int tested = 0;
    for (int i = 0; i < gd::isa_count(); ++i) {
        const char* isa = gd::isa_name(i);
        if (!gd::select_isa(isa)) {
            std::printf("kernel_test: %s skipped (this CPU lacks it)\n", isa);
            continue;
        }
        run_isa<float>(isa, "float32");
        run_isa<double>(isa, "float64");
        std::printf("kernel_test: %s done\n", isa);
        ++tested;
    }
    std::printf("kernel_test: %d ISA(s) of %d, %lld checks, %d failure(s), OpenMP %s\n", tested,
                gd::isa_count(), static_cast<long long>(g_checks), g_failures,
                GD_HAVE_OPENMP ? "on" : "off");
    return g_failures == 0 && tested > 0 ? 0 : 1;
}

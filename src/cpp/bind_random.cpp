// Random masks drawn inside kernels, so that gd.compile can record them: dropout's keep mask.
//
// The numbers come from a counter-based generator: element k of a draw is a hash of the
// generator's key and of (counter + k), and the draw then advances the counter by the number of
// elements. The state is two uint64 values that the kernel reads and writes in place, so a
// recorded program advances the same state that an eager call does: a compiled step draws the
// same masks as the eager step would, and every element's value depends on its index only (not
// on the thread count or the ISA; the kernel is compiled once).
//
// The hash is SplitMix64's output function applied to key + (counter + k) * golden ratio, a
// bijection of the 64-bit input with good avalanche; the top 24 (float32) or 53 (float64) bits
// give u in [0, 1), and an element is kept when u >= p.
#include <cstdint>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bind_common.hpp"
#include "instr_registry.hpp"
#include "parallel.hpp"

namespace gd {
namespace {

inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// out[k] = scale where u_k >= p, else 0, for k < n; state[1] += n.
template <class T>
void dropout_mask(T* out, int64_t n, double p, double scale, uint64_t* state) {
    const uint64_t key = state[0], ctr = state[1];
    constexpr int bits = sizeof(T) == 4 ? 24 : 53;
    const T keep = T(scale);
    // u >= p  <=>  top bits >= ceil(p 2^bits): the comparison in integers, exact
    const double lim = p * double(uint64_t(1) << bits);
    uint64_t t = static_cast<uint64_t>(lim);
    if (double(t) < lim) ++t;
    parallel_chunks(n, 4096, n * 4, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
            const uint64_t r = mix(key + (ctr + uint64_t(k)) * 0x9E3779B97F4A7C15ULL);
            out[k] = (r >> (64 - bits)) >= t ? keep : T(0);
        }
    });
    state[1] = ctr + uint64_t(n);
}

// dropout_mask: p [out, state]; i [kind, n]; d [p, scale]
int64_t g_mask_kind = -1;

void mask_run(const Instr& in) {
    auto* st = static_cast<uint64_t*>(in.p[1]);
    if (in.f64)
        dropout_mask(static_cast<double*>(in.p[0]), in.i[1], in.d[0], in.d[1], st);
    else
        dropout_mask(static_cast<float*>(in.p[0]), in.i[1], in.d[0], in.d[1], st);
}

void mask_operands(const Instr& in, std::vector<Operand>& ops) {
    ops.push_back({in.p[0], in.i[1] * (in.f64 ? 8 : 4), false, true, 0});
    ops.push_back({in.p[1], 16, true, true, 1});
}

int64_t mask_flops(const Instr& in) { return in.i[1]; }

bool mask_valid(size_t nptrs, const std::vector<int64_t>& i, size_t nreals) {
    return nptrs == 2 && i.size() == 2 && i[1] >= 0 && nreals == 2;
}

}  // namespace

namespace bind {
namespace {

struct Mask {
    std::vector<int64_t> shape;
    int64_t n = 1;
    py::array state;
    double p = 0, scale = 1;
};

Mask parse_mask(const std::vector<int64_t>& shape, double p, const py::handle& state) {
    const char* op = "dropout_mask";
    Mask m;
    m.shape = shape;
    for (int64_t s : shape) {
        if (s < 0) value_error(std::string(op) + ": argument 'shape' " + shape_str(shape) +
                               " has a negative size");
        m.n *= s;
    }
    if (!(p >= 0 && p < 1))
        value_error(std::string(op) + ": argument 'p' must be in [0, 1), got " +
                    std::to_string(p));
    m.p = p;
    m.scale = 1.0 / (1.0 - p);
    m.state = as_array(state, op, "state");
    check_array<uint64_t>(m.state, op, "state");
    check_shape(m.state, op, "state", {2});
    if (!m.state.writeable()) value_error(std::string(op) + ": argument 'state' is read-only");
    return m;
}

py::array mask(const std::vector<int64_t>& shape, double p, const py::handle& state, bool f64) {
    Mask m = parse_mask(shape, p, state);
    auto* st = static_cast<uint64_t*>(m.state.mutable_data());
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array out = new_array<T>(m.shape);
        T* o = out_ptr<T>(out);
        // (the GIL stays held: two Python threads drawing from one generator take turns)
        dropout_mask(o, m.n, m.p, m.scale, st);
        return out;
    };
    return f64 ? go(double{}) : go(float{});
}

py::tuple mask_args(const std::vector<int64_t>& shape, double p, const py::handle& state,
                    bool f64, const py::handle& result) {
    Mask m = parse_mask(shape, p, state);
    py::array out = as_array(result, "dropout_mask", "result");
    check_shape(out, "dropout_mask", "result", m.shape);
    std::vector<uintptr_t> ptrs{addr(out), addr(m.state)};
    std::vector<std::pair<uintptr_t, int64_t>> reads{span_of(m.state)};
    return py::make_tuple(ptrs, std::vector<int64_t>{g_mask_kind, m.n},
                          std::vector<double>{m.p, m.scale}, f64, reads);
}

}  // namespace

void bind_random(py::module_& m) {
    g_mask_kind = register_instr_kind(
        {"dropout_mask", &mask_run, &mask_operands, &mask_flops, &mask_valid});
    m.def("dropout_mask", &mask, py::arg("shape"), py::arg("p"), py::arg("state"),
          py::arg("f64") = false,
          "A float32 (float64 when f64) array of `shape`: 1/(1-p) where the generator's draw u "
          "in [0, 1) is >= p, else 0. state: the generator's uint64 [key, counter], advanced "
          "in place by the number of elements.");
    m.def("dropout_mask_args", &mask_args, py::arg("shape"), py::arg("p"), py::arg("state"),
          py::arg("f64") = false, py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for dropout_mask(...) = result.");
    add_record_args(m, {{"dropout_mask", "dropout_mask_args"}});
}

}  // namespace bind
}  // namespace gd

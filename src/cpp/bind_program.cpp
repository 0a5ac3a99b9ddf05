// Bindings for gd.compile's replay (graddesc/_compile.py builds the instructions) and the two
// small helpers it needs the eager path to share with it: scale and count_scale.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bind_common.hpp"
#include "bind_instr.hpp"
#include "conv.hpp"
#include "instr_registry.hpp"
#include "program.hpp"

namespace gd {
namespace bind {
namespace {

// scale and count_scale are also registered instruction kinds (instr_registry.hpp), recorded
// through scale_args / count_scale_args (the same parse as the bindings). Layouts (after the id):
//   scale        p[out, x, factor (0-d float64)]  i[N]                out = x * T(factor)
//   count_scale  p[out (0-d float64), target]     i[B, ignore_index]  out = 1 / #valid (or NaN)
int64_t g_scale_kind = -1, g_count_scale_kind = -1;

struct ScaleArgs {
    py::array x, f;
    bool f64 = false;
};

ScaleArgs parse_scale(const py::handle& xo, const py::handle& fo) {
    const char* op = "scale";
    ScaleArgs s;
    s.x = as_array(xo, op, "x");
    s.f = as_array(fo, op, "factor");
    check_array<double>(s.f, op, "factor");
    check_shape(s.f, op, "factor", {});
    s.f64 = float_kind(s.x, op, "x") == 'd';
    instr::check_float_array(s.x, s.f64, op, "x");
    return s;
}

template <class T>
void scale_kernel(T* out, const T* x, double factor, int64_t n) {
    const T fac = T(factor);
    for (int64_t k = 0; k < n; ++k) out[k] = x[k] * fac;
}

// x (any shape), factor 0-d float64 -> x * T(factor)
py::array scale(const py::handle& xo, const py::handle& fo) {
    const ScaleArgs s = parse_scale(xo, fo);
    const auto go = [&](auto tag) -> py::array {
        using T = decltype(tag);
        py::array out = new_array<T>(shape_of(s.x));
        scale_kernel<T>(out_ptr<T>(out), in_ptr<T>(s.x), *in_ptr<double>(s.f), s.x.size());
        return out;
    };
    return s.f64 ? go(double{}) : go(float{});
}

py::tuple scale_args(const py::handle& xo, const py::handle& fo, const py::handle& result) {
    const ScaleArgs s = parse_scale(xo, fo);
    py::array out = instr::checked_result(result, "scale", "result", s.f64, shape_of(s.x));
    return instr::instr_tuple({addr(out), addr(s.x), addr(s.f)},
                              {g_scale_kind, int64_t(s.x.size())}, {}, s.f64, {s.x, s.f});
}

template <class T>
void scale_run_t(const Instr& in) {
    scale_kernel<T>(instr::P<T>(in, 0), instr::P<T>(in, 1), *instr::P<double>(in, 2), in.i[1]);
}

void scale_operands(const Instr& in, std::vector<Operand>& ops) {
    const int64_t e = in.f64 ? 8 : 4;
    instr::operand(in, ops, 0, e * in.i[1], true);
    instr::operand(in, ops, 1, e * in.i[1], false);
    instr::operand(in, ops, 2, 8, false);
}

py::array parse_count_scale(const py::handle& to) {
    const char* op = "count_scale";
    py::array t = as_array(to, op, "target");
    check_array<int64_t>(t, op, "target");
    check_ndim(t, op, "target", 1, 1);
    return t;
}

// 1 / (number of entries of t[0, n) != ignore_index), NaN if none
double count_scale_kernel(const int64_t* t, int64_t n, int64_t ignore_index) {
    int64_t valid = 0;
    for (int64_t k = 0; k < n; ++k) valid += t[k] != ignore_index;
    return valid ? 1.0 / double(valid) : std::numeric_limits<double>::quiet_NaN();
}

// target (B,) int64 -> 0-d float64 1 / (number of entries != ignore_index), NaN if none
py::array count_scale(const py::handle& to, int64_t ignore_index) {
    const py::array t = parse_count_scale(to);
    py::array out = new_array<double>({});
    *out_ptr<double>(out) = count_scale_kernel(in_ptr<int64_t>(t), t.size(), ignore_index);
    return out;
}

py::tuple count_scale_args(const py::handle& to, int64_t ignore_index, const py::handle& result) {
    const py::array t = parse_count_scale(to);
    py::array out = as_array(result, "count_scale", "result");
    check_array<double>(out, "count_scale", "result");
    check_shape(out, "count_scale", "result", {});
    return instr::instr_tuple({addr(out), addr(t)},
                              {g_count_scale_kind, int64_t(t.size()), ignore_index}, {}, false,
                              {t});
}

void count_scale_run(const Instr& in) {
    *instr::P<double>(in, 0) = count_scale_kernel(instr::P<const int64_t>(in, 1), in.i[1], in.i[2]);
}

void count_scale_operands(const Instr& in, std::vector<Operand>& ops) {
    instr::operand(in, ops, 0, 8, true);
    instr::operand(in, ops, 1, 8 * in.i[1], false);
}

// one operation per target (what Program::flops counted for it as a built-in instruction)
int64_t count_scale_flops(const Instr& in) { return std::max<int64_t>(1, in.i[1]); }

// nn.utils.clip_grad_norm_'s kernel (gd::clip_grad_norm, shared with the replay): gradients
// (a list of float32 or float64 arrays of one dtype, scaled in place) -> the norm, 0-d float64;
// with error_if_nonfinite a non-finite norm raises RuntimeError (PyTorch's message) instead, the
// gradients left as they were
py::array clip_norm(const py::handle& go, double norm_type, double max_norm,
                    bool error_if_nonfinite) {
    const char* op = "clip_norm";
    if (!py::isinstance<py::list>(go) && !py::isinstance<py::tuple>(go))
        type_error(std::string(op) + ": argument 'grads' must be a list of numpy.ndarray, got " +
                   py::str(py::type::of(go)).cast<std::string>());
    py::sequence seq = py::reinterpret_borrow<py::sequence>(go);
    if (py::len(seq) == 0) value_error(std::string(op) + ": argument 'grads' is empty");
    if (!(norm_type > 0.0))
        value_error(std::string(op) + ": norm_type must be positive, got " +
                    std::to_string(norm_type));
    std::vector<py::array> arrays;
    for (py::size_t k = 0; k < py::len(seq); ++k)
        arrays.push_back(as_array(seq[k], op, ("grads[" + std::to_string(k) + "]").c_str()));
    py::array out = new_array<double>({});
    double* norm = out_ptr<double>(out);
    dispatch_float(arrays[0], op, "grads[0]", [&](auto tag) {
        using T = decltype(tag);
        std::vector<T*> ptrs;
        std::vector<int64_t> sizes;
        for (size_t k = 0; k < arrays.size(); ++k) {
            const std::string name = "grads[" + std::to_string(k) + "]";
            check_array<T>(arrays[k], op, name.c_str());
            if (!arrays[k].writeable())
                value_error(std::string(op) + ": argument '" + name + "' is read-only");
            ptrs.push_back(static_cast<T*>(arrays[k].mutable_data()));
            sizes.push_back(static_cast<int64_t>(arrays[k].size()));
        }
        py::gil_scoped_release release;
        *norm = clip_grad_norm<T>(ptrs.data(), sizes.data(), static_cast<int64_t>(ptrs.size()),
                                  norm_type, max_norm, error_if_nonfinite);
        return 0;
    });
    if (error_if_nonfinite && !std::isfinite(*norm))
        throw std::runtime_error(
            "The total norm of order " + py::repr(py::float_(norm_type)).cast<std::string>() +
            " for gradients from `parameters` is non-finite, so it cannot be clipped. To "
            "disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`");
    return out;
}

// a copy of x (C-contiguous): the gradient a leaf receives first (recordable, unlike np.array)
py::array copy_array(const py::handle& xo) {
    const char* op = "copy_array";
    py::array x = as_array(xo, op, "x");
    return dispatch_float(x, op, "x", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "x");
        py::array out = new_array<T>(shape_of(x));
        if (x.nbytes() > 0) std::memcpy(out.mutable_data(), x.data(), static_cast<size_t>(x.nbytes()));
        return out;
    });
}

void add_instr(Program& prog, const std::string& name, bool f64, const std::vector<uintptr_t>& ptrs,
               const std::vector<int64_t>& ints, const std::vector<double>& reals,
               const std::vector<std::vector<uintptr_t>>& lists) {
    Instr in;
    // a registered kind's own name stands for a 'call' of it: ints are the kind's, after i[0]
    if (const int64_t kind = find_instr_kind(name); kind >= 0) {
        std::vector<int64_t> with_id{kind};
        with_id.insert(with_id.end(), ints.begin(), ints.end());
        add_instr(prog, "call", f64, ptrs, with_id, reals, lists);
        return;
    }
    try {
        in.code = code_from_name(name);
    } catch (const std::invalid_argument& e) {
        value_error(std::string("Program.add: ") + e.what());
    }
    in.f64 = f64;
    if (in.code == Code::ew) {  // the replay indexes these blindly: check the layout once
        const bool ok = ints.size() >= 2 && ints[0] >= 0 && ints[0] < kEwCount && ints[1] >= 0 &&
                        ints[1] <= kEwMaxDims &&
                        ints.size() == static_cast<size_t>(2 + 5 * ints[1]) &&
                        ptrs.size() == 4 && reals.size() == 3;
        if (!ok)
            value_error("Program.add: an 'ew' instruction takes 4 pointers, 3 reals and ints "
                        "[op, nd, shape, 4 x strides] (see elementwise_args)");
    }
    if (in.code == Code::call) {
        if (ints.empty()) value_error("Program.add: a 'call' instruction needs ints[0], its kind");
        const InstrKind* kind = nullptr;
        try {
            kind = &instr_kind(ints[0]);
        } catch (const std::out_of_range& e) {
            value_error(std::string("Program.add: ") + e.what());
        }
        if (!kind->valid(ptrs.size(), ints, reals.size()))
            value_error(std::string("Program.add: a malformed '") + kind->name + "' instruction");
    }
    if (in.code == Code::ew_fused)  // (only Program.optimize makes these, from checked members)
        value_error("Program.add: 'ew_fused' instructions are made by Program.optimize");
    if (in.code == Code::conv && !conv_instr_valid(ptrs.size(), ints))
        value_error("Program.add: a malformed 'conv' instruction (see conv.hpp)");
    for (uintptr_t q : ptrs) in.p.push_back(reinterpret_cast<void*>(q));
    in.i = ints;
    in.d = reals;
    for (const auto& l : lists) {
        std::vector<void*> v;
        for (uintptr_t q : l) v.push_back(reinterpret_cast<void*>(q));
        in.lists.push_back(std::move(v));
    }
    prog.add(std::move(in));
}

// Program.profile's replays register no lazily stored weight gradient for a later .grad read
// (gd.compile's replays do): it stores them all at its end, as the eager steps would have.
void store_lazy(const Program& p) {
    const auto& code = p.instructions();
    for (size_t k = 0; k < code.size(); ++k)
        if (code[k].code == Code::linear_bwd_sgd && code[k].i.size() >= 4 && code[k].i[3] != 0)
            p.materialize(k);
}

}  // namespace

void bind_program(py::module_& m) {
    m.def("scale", &scale, py::arg("x"), py::arg("factor"),
          "x * factor (factor a 0-d float64 array, rounded to x's dtype first).");
    m.def("count_scale", &count_scale, py::arg("target"), py::arg("ignore_index"),
          "1 / (number of targets != ignore_index) as a 0-d float64 array (NaN if none).");
    g_scale_kind = register_instr_kind(
        {"scale", &instr::run_by_dtype<scale_run_t<float>, scale_run_t<double>>, &scale_operands,
         [](const Instr& in) { return in.i[1]; }, &instr::layout_valid<3, 2, 0, 1, 2>});
    g_count_scale_kind = register_instr_kind({"count_scale", &count_scale_run,
                                              &count_scale_operands, &count_scale_flops,
                                              &instr::layout_valid<2, 3, 0, 1, 2>});
    m.def("scale_args", &scale_args, py::arg("x"), py::arg("factor"), py::kw_only(),
          py::arg("result"),
          "The instruction gd.compile records for scale(x, factor) = result: "
          "(pointers, ints, reals, float64, [(address, bytes) read]).");
    m.def("count_scale_args", &count_scale_args, py::arg("target"), py::arg("ignore_index"),
          py::kw_only(), py::arg("result"),
          "The instruction gd.compile records for count_scale(target, ignore_index) = result.");
    add_record_args(m, {{"scale", "scale_args"}, {"count_scale", "count_scale_args"}});
    m.def("copy_array", &copy_array, py::arg("x"), "A C-contiguous copy of a float array.");
    m.def("clip_norm", &clip_norm, py::arg("grads"), py::arg("norm_type"), py::arg("max_norm"),
          py::arg("error_if_nonfinite") = false,
          "nn.utils.clip_grad_norm_ in place on a list of gradient arrays (one float dtype): "
          "returns their joint norm (0-d float64; the same bits on every ISA and thread count) "
          "and scales them all by max_norm / (norm + 1e-6) unless that is >= 1 (a NaN norm "
          "scales by NaN, as PyTorch). error_if_nonfinite: a non-finite norm raises "
          "RuntimeError and scales nothing.");
    py::class_<Program>(m, "Program", "A recorded kernel sequence (private: see gd.compile).",
                       py::dynamic_attr())
        .def(py::init<>())
        .def("add", &add_instr, py::arg("name"), py::arg("f64"), py::arg("ptrs"),
             py::arg("ints"), py::arg("reals"), py::arg("lists") = std::vector<std::vector<uintptr_t>>{},
             "Appends an instruction. Pointers are raw addresses of buffers the caller keeps alive. "
             "`name` is a built-in instruction or a registered kind's name (as names() reports "
             "it; then `ints` are the kind's own, without its id).")
        .def("run", [](const Program& p) {
                flush_deferred();
                py::gil_scoped_release nogil;
                p.run();
            }, "Replays every instruction in order (first applying any gd.compile update left "
            "pending; this run leaves none).")
        .def("__len__", &Program::size)
        .def("names", [](const Program& p) {
                std::vector<std::string> n;
                for (const Instr& in : p.instructions())
                    n.emplace_back(in.code == Code::call ? instr_kind(in.i[0]).name
                                                         : code_name(in.code));
                return n;
            }, "The instruction names, in order.")
        .def("profile", [](const Program& p, int repeat, bool defer) {
                if (repeat < 1) value_error("Program.profile: repeat must be >= 1, got " +
                                            std::to_string(repeat));
                flush_deferred();
                py::gil_scoped_release nogil;
                std::vector<double> t = p.profile(repeat, defer);
                store_lazy(p);
                return t;
            }, py::arg("repeat") = 100, py::arg("defer") = false,
            "Median seconds per instruction over `repeat` whole replays (each replay changes "
            "the parameters exactly as run() does; with defer as run(defer=True) does, pending "
            "updates applied at the end).")
        .def("plan_defer", &Program::plan_defer,
             "Finds the batch-1 weight updates a replay may leave pending until the next one "
             "reads the weight (see program.hpp); returns their number.")
        .def("pending", &Program::pending, "Whether a deferred update is pending.")
        .def("optimize", [](Program& p, const std::vector<std::pair<uintptr_t, int64_t>>& pinned) {
                std::vector<std::pair<void*, int64_t>> v;
                for (const auto& q : pinned) v.emplace_back(reinterpret_cast<void*>(q.first), q.second);
                return p.optimize(v);
            }, py::arg("pinned"),
            "Removes copies whose source has one writer and no other reader (that writer writes "
            "the destination instead); `pinned` (address, bytes) ranges are never retargeted "
            "away. Returns the number of instructions removed.")
        .def("param_addr", [](const Program& p, size_t index) -> uintptr_t {
                if (index >= p.size()) value_error("Program.param_addr: no instruction " +
                                                   std::to_string(index));
                const Instr& in = p.instructions()[index];
                if (in.code == Code::linear_bwd_sgd) return reinterpret_cast<uintptr_t>(in.p[5]);
                if (in.lists.empty() || in.lists[0].empty()) return 0;
                return reinterpret_cast<uintptr_t>(in.lists[0][0]);
            }, py::arg("index"),
            "Address of the first parameter an optimizer instruction updates (0 if none).")
        .def("grad_addr", [](const Program& p, size_t index) -> uintptr_t {
                if (index >= p.size() || p.instructions()[index].code != Code::linear_bwd_sgd)
                    value_error("Program.grad_addr: instruction " + std::to_string(index) +
                                " is not a linear_bwd_sgd");
                return reinterpret_cast<uintptr_t>(p.instructions()[index].p[1]);
            }, py::arg("index"), "Address of the dW buffer of a linear_bwd_sgd.")
        .def("set_lazy", [](Program& p, size_t index, bool lazy) {
                if (!p.set_lazy(index, lazy))
                    value_error("Program.set_lazy: instruction " + std::to_string(index) +
                                " is not a linear_bwd_sgd");
                return p.instructions()[index].i[3] == 1;
            }, py::arg("index"), py::arg("lazy"),
            "linear_bwd_sgd: store dW only when materialize(index) is called. Returns whether "
            "it is lazy now: never while another instruction reads dW.")
        .def("materialize", [](const Program& p, size_t index) {
                bool ok;
                {
                    py::gil_scoped_release nogil;
                    ok = p.materialize(index);
                }
                if (!ok) value_error("Program.materialize: instruction " + std::to_string(index) +
                                     " is not a linear_bwd_sgd");
            }, py::arg("index"),
            "Writes a lazy linear_bwd_sgd's dW from the buffers of the last replay.")
        .def("set_real", [](Program& p, size_t index, size_t slot, double value) {
                if (!p.set_real(index, slot, value))
                    value_error("Program.set_real: no real option " + std::to_string(slot) +
                                " in instruction " + std::to_string(index));
            }, py::arg("index"), py::arg("slot"), py::arg("value"),
            "Sets a real option of one instruction (sgd/adam: slot 0 is the learning rate).")
        .def("rebind", [](Program& p, uintptr_t from, uintptr_t to, int64_t bytes) {
                flush_deferred();
                p.rebind(reinterpret_cast<void*>(from), reinterpret_cast<void*>(to), bytes);
            }, py::arg("from_addr"), py::arg("to_addr"), py::arg("nbytes"),
            "Points every operand inside [from_addr, from_addr + nbytes) at the same offset of "
            "to_addr (the caller keeps the new buffer alive).")
        .def("flops", &Program::flops,
             "Floating-point operations per instruction (multiply-add = 2, elementwise = 1).")
        .def("footprint", &Program::footprint,
             "Bytes of distinct memory the program touches (union of all operands).")
        .def("traffic", &Program::traffic,
             "(bytes read, bytes written) per instruction, each operand counted once.")
        .def("writes", [](const Program& p) {
                std::vector<std::pair<uintptr_t, int64_t>> out;
                for (const Instr& in : p.instructions())
                    for (const Operand& o : operands(in))
                        if (o.write) out.emplace_back(reinterpret_cast<uintptr_t>(o.ptr), o.bytes);
                return out;
            }, "(address, bytes) of every buffer range some instruction writes.");
}

}  // namespace bind
}  // namespace gd

// Bindings for the fused optimizer steps: each takes Python lists of NumPy arrays (parameters,
// gradients, state buffers), checks every one of them (dtype, C-contiguity, alignment, shape,
// writeability) with a message naming the op, the list and the index, then updates the whole
// list in one kernel call with the GIL released. The math of the hyperparameters (signs, ranges,
// a symmetric positive semi-definite learning-rate matrix) is checked in python/graddesc/optim.
#include <string>
#include <vector>

#include "bind_common.hpp"
#include "kernels.hpp"

namespace gd {
namespace bind {
namespace {

// A list or tuple argument; anything else is a TypeError.
py::sequence as_sequence(const py::handle& obj, const char* op, const char* arg) {
    if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj))
        type_error(std::string(op) + ": argument '" + arg + "' must be a list of numpy.ndarray, got " +
                   py::str(py::type::of(obj)).cast<std::string>());
    return py::reinterpret_borrow<py::sequence>(obj);
}

// The arrays of one list argument, checked and turned into raw pointers. `arrays` keeps them
// alive (the caller's list already does; this makes it independent of that).
template <class T>
struct ArrayList {
    std::vector<py::array> arrays;
    std::vector<T*> ptrs;
};

// Checks list item `i` of argument `arg`: dtype T, C-contiguous, aligned, shape `shape`
// (unless null) and, for `writable`, not read-only.
template <class T>
py::array checked_item(const py::handle& item, const char* op, const std::string& name,
                       const std::vector<int64_t>* shape, bool writable) {
    py::array a = as_array(item, op, name.c_str());
    check_array<T>(a, op, name.c_str());
    if (shape != nullptr) check_shape(a, op, name.c_str(), *shape);
    if (writable && !a.writeable())
        value_error(std::string(op) + ": argument '" + name + "' is read-only");
    return a;
}

// A list of `count` arrays shaped like the parameters (shapes[i]).
template <class T>
ArrayList<T> gather(const py::handle& obj, const char* op, const char* arg,
                    const std::vector<std::vector<int64_t>>& shapes, bool writable) {
    py::sequence seq = as_sequence(obj, op, arg);
    const size_t count = shapes.size();
    if (static_cast<size_t>(py::len(seq)) != count)
        value_error(std::string(op) + ": argument '" + arg + "' must have " +
                    std::to_string(count) + " arrays (one per parameter), got " +
                    std::to_string(py::len(seq)));
    ArrayList<T> out;
    for (size_t i = 0; i < count; ++i) {
        const std::string name = std::string(arg) + "[" + std::to_string(i) + "]";
        out.arrays.push_back(checked_item<T>(seq[i], op, name, &shapes[i], writable));
        out.ptrs.push_back(static_cast<T*>(out.arrays.back().mutable_data()));
    }
    return out;
}

// The parameters: defines the dtype, the count and the shapes every other list must match.
struct Params {
    py::sequence seq;
    std::vector<std::vector<int64_t>> shapes;
    std::vector<int64_t> sizes;
};

Params read_params(const py::handle& obj, const char* op) {
    Params p{as_sequence(obj, op, "params"), {}, {}};
    for (const py::handle item : p.seq) {
        const std::string name = "params[" + std::to_string(p.shapes.size()) + "]";
        py::array a = as_array(item, op, name.c_str());
        p.shapes.push_back(shape_of(a));
        p.sizes.push_back(static_cast<int64_t>(a.size()));
    }
    return p;
}

// The dtype of params[0] selects float or double (an empty list does nothing).
template <class F>
void dispatch_params(const Params& p, const char* op, F&& f) {
    if (p.shapes.empty()) return;
    py::array first = py::reinterpret_borrow<py::array>(p.seq[0]);
    dispatch_float(first, op, "params[0]", std::forward<F>(f));
}

template <class T>
std::vector<const T*> const_ptrs(const std::vector<T*>& v) {
    return std::vector<const T*>(v.begin(), v.end());
}

// Per-parameter step counts (after this step), as float64.
std::vector<double> read_steps(const py::handle& obj, const char* op, size_t count) {
    py::sequence seq = as_sequence(obj, op, "steps");
    if (static_cast<size_t>(py::len(seq)) != count)
        value_error(std::string(op) + ": argument 'steps' must have " + std::to_string(count) +
                    " entries (one per parameter), got " + std::to_string(py::len(seq)));
    std::vector<double> steps;
    for (const py::handle s : seq) {
        const double t = py::cast<double>(s);
        if (!(t >= 1))
            value_error(std::string(op) + ": argument 'steps' must hold step counts >= 1, got " +
                        std::to_string(t));
        steps.push_back(t);
    }
    return steps;
}

// params, grads (count each), momentum_buffers (count entries, None where a buffer starts now;
// ignored when momentum == 0), lr: float, or an array (N,) (a diagonal) or (N, N) with N the
// total element count, direction: None or (N,) scratch for a matrix lr (the step direction is
// written there; gd.compile's replay uses the same buffer, so both read it at one address)
// -> the momentum buffers (new arrays where None was given), or None
py::object sgd_step(const py::handle& params_o, const py::handle& grads_o, const py::handle& bufs_o,
                    const py::handle& lr_o, double momentum, double dampening, double weight_decay,
                    bool nesterov, bool maximize, const py::handle& dir_o) {
    const char* op = "sgd_step";
    Params P = read_params(params_o, op);
    py::object result = py::none();
    dispatch_params(P, op, [&](auto tag) {
        using T = decltype(tag);
        ArrayList<T> p = gather<T>(params_o, op, "params", P.shapes, true);
        ArrayList<T> g = gather<T>(grads_o, op, "grads", P.shapes, false);
        const size_t count = P.shapes.size();
        int64_t N = 0;
        for (int64_t s : P.sizes) N += s;

        // Momentum buffers: existing ones are checked, missing ones are allocated here.
        std::vector<T*> buf;
        std::vector<uint8_t> fresh;
        py::list bufs_out;
        if (momentum != 0) {
            py::sequence seq = as_sequence(bufs_o, op, "momentum_buffers");
            if (static_cast<size_t>(py::len(seq)) != count)
                value_error(std::string(op) + ": argument 'momentum_buffers' must have " +
                            std::to_string(count) + " entries (one per parameter), got " +
                            std::to_string(py::len(seq)));
            for (size_t i = 0; i < count; ++i) {
                py::array a;
                if (seq[i].is_none()) {
                    a = new_array<T>(P.shapes[i]);
                    fresh.push_back(1);
                } else {
                    const std::string name = "momentum_buffers[" + std::to_string(i) + "]";
                    a = checked_item<T>(seq[i], op, name, &P.shapes[i], true);
                    fresh.push_back(0);
                }
                buf.push_back(out_ptr<T>(a));
                bufs_out.append(a);
            }
            result = bufs_out;
        }

        // The learning rate: a scalar, a diagonal (N,) or a matrix (N, N), in the params' dtype.
        double lr = 0;
        int lr_ndim = 0;
        py::array eta;
        std::vector<const T*> lr_diag;
        if (py::isinstance<py::array>(lr_o)) {
            eta = py::reinterpret_borrow<py::array>(lr_o);
            check_array<T>(eta, op, "lr");
            check_ndim(eta, op, "lr", 1, 2);
            lr_ndim = static_cast<int>(eta.ndim());
            const std::vector<int64_t> want =
                lr_ndim == 1 ? std::vector<int64_t>{N} : std::vector<int64_t>{N, N};
            check_shape(eta, op, "lr", want);
            if (lr_ndim == 1) {
                const T* base = in_ptr<T>(eta);
                int64_t off = 0;
                for (size_t i = 0; i < count; ++i) {
                    lr_diag.push_back(base + off);
                    off += P.sizes[i];
                }
            }
        } else {
            lr = py::cast<double>(lr_o);
        }
        // A matrix: the kernel writes the direction d (N) here (or into `direction`), then
        // p -= eta @ d.
        const bool matrix = lr_ndim == 2;
        py::array direction;
        T* dbase = nullptr;
        if (!dir_o.is_none()) {
            if (!matrix)
                value_error(std::string(op) + ": argument 'direction' is only used with a "
                            "matrix lr");
            direction = checked_item<T>(dir_o, op, "direction", nullptr, true);
            check_shape(direction, op, "direction", {N});
            dbase = out_ptr<T>(direction);
        }
        std::vector<T> d(matrix && dbase == nullptr ? static_cast<size_t>(N) : 0);
        if (matrix && dbase == nullptr) dbase = d.data();
        std::vector<T*> dir;
        if (matrix) {
            int64_t off = 0;
            for (size_t i = 0; i < count; ++i) {
                dir.push_back(dbase + off);
                off += P.sizes[i];
            }
        }

        const SgdHyper h{lr, momentum, dampening, weight_decay, nesterov, maximize};
        const std::vector<const T*> gp = const_ptrs(g.ptrs);
        const T* etap = matrix ? in_ptr<T>(eta) : nullptr;
        {
            py::gil_scoped_release nogil;
            kernels<T>().sgd_step(p.ptrs.data(), buf.empty() ? nullptr : buf.data(),
                                  matrix ? dir.data() : nullptr, gp.data(),
                                  lr_diag.empty() ? nullptr : lr_diag.data(),
                                  fresh.empty() ? nullptr : fresh.data(), P.sizes.data(),
                                  static_cast<int64_t>(count), h);
            if (matrix)
                kernels<T>().precondition_step(p.ptrs.data(), etap, dbase, P.sizes.data(),
                                               static_cast<int64_t>(count), N);
        }
    });
    return result;
}

// params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs (ignored unless amsgrad), steps
void adam_step(const py::handle& params_o, const py::handle& grads_o, const py::handle& m_o,
               const py::handle& v_o, const py::handle& vmax_o, const py::handle& steps_o,
               double lr, double beta1, double beta2, double eps, double weight_decay,
               bool amsgrad, bool maximize, bool decoupled_weight_decay) {
    const char* op = "adam_step";
    Params P = read_params(params_o, op);
    dispatch_params(P, op, [&](auto tag) {
        using T = decltype(tag);
        ArrayList<T> p = gather<T>(params_o, op, "params", P.shapes, true);
        ArrayList<T> g = gather<T>(grads_o, op, "grads", P.shapes, false);
        ArrayList<T> m = gather<T>(m_o, op, "exp_avgs", P.shapes, true);
        ArrayList<T> v = gather<T>(v_o, op, "exp_avg_sqs", P.shapes, true);
        ArrayList<T> vmax;
        if (amsgrad) vmax = gather<T>(vmax_o, op, "max_exp_avg_sqs", P.shapes, true);
        const std::vector<double> steps = read_steps(steps_o, op, P.shapes.size());
        const AdamHyper h{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize,
                          decoupled_weight_decay};
        const std::vector<const T*> gp = const_ptrs(g.ptrs);
        py::gil_scoped_release nogil;
        kernels<T>().adam_step(p.ptrs.data(), m.ptrs.data(), v.ptrs.data(),
                               amsgrad ? vmax.ptrs.data() : nullptr, gp.data(), steps.data(),
                               P.sizes.data(), static_cast<int64_t>(P.sizes.size()), h);
    });
}

// params, grads, square_avgs, grad_avgs (ignored unless centered), momentum_buffers (ignored
// unless momentum > 0)
void rmsprop_step(const py::handle& params_o, const py::handle& grads_o, const py::handle& sq_o,
                  const py::handle& ga_o, const py::handle& buf_o, double lr, double alpha,
                  double eps, double weight_decay, double momentum, bool centered,
                  bool maximize) {
    const char* op = "rmsprop_step";
    Params P = read_params(params_o, op);
    dispatch_params(P, op, [&](auto tag) {
        using T = decltype(tag);
        ArrayList<T> p = gather<T>(params_o, op, "params", P.shapes, true);
        ArrayList<T> g = gather<T>(grads_o, op, "grads", P.shapes, false);
        ArrayList<T> sq = gather<T>(sq_o, op, "square_avgs", P.shapes, true);
        ArrayList<T> ga, buf;
        if (centered) ga = gather<T>(ga_o, op, "grad_avgs", P.shapes, true);
        if (momentum > 0) buf = gather<T>(buf_o, op, "momentum_buffers", P.shapes, true);
        const RmspropHyper h{lr, alpha, eps, weight_decay, momentum, centered, maximize};
        const std::vector<const T*> gp = const_ptrs(g.ptrs);
        py::gil_scoped_release nogil;
        kernels<T>().rmsprop_step(p.ptrs.data(), sq.ptrs.data(),
                                  centered ? ga.ptrs.data() : nullptr,
                                  momentum > 0 ? buf.ptrs.data() : nullptr, gp.data(),
                                  P.sizes.data(), static_cast<int64_t>(P.sizes.size()), h);
    });
}

// params, grads, state_sums, steps
void adagrad_step(const py::handle& params_o, const py::handle& grads_o, const py::handle& sum_o,
                  const py::handle& steps_o, double lr, double lr_decay, double eps,
                  double weight_decay, bool maximize) {
    const char* op = "adagrad_step";
    Params P = read_params(params_o, op);
    dispatch_params(P, op, [&](auto tag) {
        using T = decltype(tag);
        ArrayList<T> p = gather<T>(params_o, op, "params", P.shapes, true);
        ArrayList<T> g = gather<T>(grads_o, op, "grads", P.shapes, false);
        ArrayList<T> s = gather<T>(sum_o, op, "state_sums", P.shapes, true);
        const std::vector<double> steps = read_steps(steps_o, op, P.shapes.size());
        const AdagradHyper h{lr, lr_decay, eps, weight_decay, maximize};
        const std::vector<const T*> gp = const_ptrs(g.ptrs);
        py::gil_scoped_release nogil;
        kernels<T>().adagrad_step(p.ptrs.data(), s.ptrs.data(), gp.data(), steps.data(),
                                  P.sizes.data(), static_cast<int64_t>(P.sizes.size()), h);
    });
}

}  // namespace

void bind_optim(py::module_& m) {
    m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"),
          py::arg("lr"), py::arg("momentum") = 0.0, py::arg("dampening") = 0.0,
          py::arg("weight_decay") = 0.0, py::arg("nesterov") = false, py::arg("maximize") = false,
          py::arg("direction") = py::none(),
          "In-place SGD step over lists of arrays (PyTorch's rule). lr is a float, a diagonal "
          "(N,) or a matrix (N, N) over the concatenated parameters; direction, for a matrix "
          "lr, an (N,) scratch array the step direction is written to. Returns the momentum "
          "buffers (new arrays where None was given) or None without momentum.");
    m.def("adam_step", &adam_step, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"),
          py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"), py::arg("steps"), py::arg("lr"),
          py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
          py::arg("amsgrad") = false, py::arg("maximize") = false,
          py::arg("decoupled_weight_decay") = false,
          "In-place Adam/AdamW step over lists of arrays (PyTorch's rule); steps are the step "
          "counts after this step.");
    m.def("rmsprop_step", &rmsprop_step, py::arg("params"), py::arg("grads"),
          py::arg("square_avgs"), py::arg("grad_avgs"), py::arg("momentum_buffers"), py::arg("lr"),
          py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
          py::arg("centered") = false, py::arg("maximize") = false,
          "In-place RMSprop step over lists of arrays (PyTorch's rule).");
    m.def("adagrad_step", &adagrad_step, py::arg("params"), py::arg("grads"),
          py::arg("state_sums"), py::arg("steps"), py::arg("lr"), py::arg("lr_decay"),
          py::arg("eps"), py::arg("weight_decay"), py::arg("maximize") = false,
          "In-place Adagrad step over lists of arrays (PyTorch's rule); steps are the step counts "
          "after this step.");
}

}  // namespace bind
}  // namespace gd

// Bindings for elementwise nonlinearities: any shape, C-contiguous, float32/float64.
#include <string>

#include "bind_common.hpp"
#include "kernels.hpp"

namespace gd {
namespace bind {
namespace {

struct ActInfo {
    const char* name;
    Act op;
    bool backward_uses_y;  // tanh, sigmoid, exp: the derivative is cheaper from the output
    double default_alpha;  // PyTorch's default: leaky_relu's slope, softplus's threshold
};

constexpr ActInfo kActs[] = {
    {"relu", Act::relu, false, 0.0},          {"leaky_relu", Act::leaky_relu, false, 0.01},
    {"tanh", Act::tanh, true, 0.0},           {"sigmoid", Act::sigmoid, true, 0.0},
    {"softplus", Act::softplus, false, 20.0}, {"gelu", Act::gelu, false, 0.0},
    {"gelu_tanh", Act::gelu_tanh, false, 0.0}, {"exp", Act::exp, true, 0.0},
    {"log", Act::log, false, 0.0},
};

// alpha as given, or the activation's own default when None: one default (0.01) for every
// activation would make softplus linear above 0.01.
double alpha_of(const ActInfo& act, const py::object& alpha, const char* op) {
    if (alpha.is_none()) return act.default_alpha;
    try {
        return alpha.cast<double>();
    } catch (const py::cast_error&) {
        type_error(std::string(op) + ": argument 'alpha' must be a number or None, got " +
                   py::str(py::type::of(alpha)).cast<std::string>());
    }
}

const ActInfo& find_act(const std::string& name, const char* op) {
    for (const ActInfo& a : kActs)
        if (name == a.name) return a;
    std::string names;
    for (const ActInfo& a : kActs) names += std::string(names.empty() ? "" : ", ") + a.name;
    value_error(std::string(op) + ": unknown activation '" + name + "'; expected one of " + names);
}

// x (any shape) -> y (same shape)
py::array activation_forward(const std::string& name, const py::handle& xo,
                             const py::object& alpha_arg) {
    const char* op = "activation_forward";
    const ActInfo& act = find_act(name, op);
    const double alpha = alpha_of(act, alpha_arg, op);
    py::array x = as_array(xo, op, "x");
    return dispatch_float(x, op, "x", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(x, op, "x");
        py::array y = new_array<T>(shape_of(x));
        T* yp = out_ptr<T>(y);
        const T* xp = in_ptr<T>(x);
        const int64_t n = x.size();
        {
            py::gil_scoped_release nogil;
            kernels<T>().activation_forward(act.op, yp, xp, n, T(alpha));
        }
        return y;
    });
}

// dy and the saved input x or output y (same shape) -> dx
py::array activation_backward(const std::string& name, const py::handle& dyo, const py::handle& xo,
                              const py::handle& yo, const py::object& alpha_arg) {
    const char* op = "activation_backward";
    const ActInfo& act = find_act(name, op);
    const double alpha = alpha_of(act, alpha_arg, op);
    py::array dy = as_array(dyo, op, "dy");
    const py::handle& saved = act.backward_uses_y ? yo : xo;
    const char* saved_name = act.backward_uses_y ? "y" : "x";
    if (saved.is_none())
        value_error(std::string(op) + ": '" + name + "' backward needs the saved '" + saved_name +
                    "'");
    py::array s = as_array(saved, op, saved_name);
    return dispatch_float(dy, op, "dy", [&](auto tag) {
        using T = decltype(tag);
        check_array<T>(dy, op, "dy");
        check_array<T>(s, op, saved_name);
        check_shape(s, op, saved_name, shape_of(dy));
        py::array dx = new_array<T>(shape_of(dy));
        T* dxp = out_ptr<T>(dx);
        const T* dyp = in_ptr<T>(dy);
        const T* xp = act.backward_uses_y ? nullptr : in_ptr<T>(s);
        const T* yp = act.backward_uses_y ? in_ptr<T>(s) : nullptr;
        const int64_t n = dy.size();
        {
            py::gil_scoped_release nogil;
            kernels<T>().activation_backward(act.op, dxp, dyp, xp, yp, n, T(alpha));
        }
        return dx;
    });
}

}  // namespace

void bind_activation(py::module_& m) {
    m.def("activation_forward", &activation_forward, py::arg("name"), py::arg("x"),
          py::arg("alpha") = py::none(),
          "y = act(x) elementwise; name in relu, leaky_relu (slope alpha, default 0.01), tanh, "
          "sigmoid, softplus (y = x above the threshold alpha, default 20), gelu, gelu_tanh, exp, "
          "log.");
    m.def("activation_backward", &activation_backward, py::arg("name"), py::arg("dy"),
          py::arg("x") = py::none(), py::arg("y") = py::none(), py::arg("alpha") = py::none(),
          "dx = dy * act'(x); tanh, sigmoid and exp read the saved output y, the others x.");
    py::list uses_y;
    for (const ActInfo& a : kActs)
        if (a.backward_uses_y) uses_y.append(a.name);
    m.attr("ACTIVATIONS_SAVING_OUTPUT") = py::tuple(uses_y);
    // name -> (the kernel's Act id, the default alpha): what gd.compile records, from this table
    py::dict ids;
    for (const ActInfo& a : kActs)
        ids[a.name] = py::make_tuple(static_cast<int>(a.op), a.default_alpha);
    m.attr("ACTIVATIONS") = ids;
}

}  // namespace bind
}  // namespace gd

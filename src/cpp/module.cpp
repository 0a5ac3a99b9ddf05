// The private extension graddesc._core: kernel bindings plus runtime configuration
// (ISA in use, thread budget). Python code calls it through python/graddesc/functional/.
#include <cstdlib>
#include <string>

#include "bind_common.hpp"
#include "kernels.hpp"
#include "parallel.hpp"

namespace gd {
namespace bind {
void bind_linear(py::module_& m);
void bind_activation(py::module_& m);
void bind_elementwise(py::module_& m);
void bind_loss(py::module_& m);
void bind_reduce(py::module_& m);
void bind_program(py::module_& m);
void bind_optim(py::module_& m);
void bind_replay(py::module_& m);
void bind_norm(py::module_& m);
void bind_conv(py::module_& m);
void bind_index(py::module_& m);
void bind_random(py::module_& m);
void bind_intops(py::module_& m);
void bind_sort(py::module_& m);
void bind_collective(py::module_& m);
}  // namespace bind

namespace {
// "avx512, avx2, baseline": the ISAs this build has, for error messages
std::string isa_list() {
    std::string out;
    for (int i = 0; i < isa_count(); ++i) out += (i > 0 ? ", " : "") + std::string(isa_name(i));
    return out;
}

bool is_built_isa(const std::string& name) {
    for (int i = 0; i < isa_count(); ++i)
        if (name == isa_name(i)) return true;
    return false;
}
}  // namespace
}  // namespace gd

PYBIND11_MODULE(_core, m) {
    using namespace gd;
    m.doc() = "graddesc C++ kernels (private: use the graddesc package).";
#ifdef GRADDESC_VERSION
    m.attr("__version__") = GRADDESC_VERSION;
#endif
    m.attr("has_openmp") = bool(GD_HAVE_OPENMP);
    py::tuple isas(isa_count());
    for (int i = 0; i < isa_count(); ++i) isas[i] = py::str(isa_name(i));
    m.attr("ISAS") = isas;  // the ISAs this build has, best first

    // GRADDESC_ISA forces one instruction set; asking for one the CPU lacks is an ImportError,
    // never a crash later on an illegal instruction.
    if (const char* env = std::getenv("GRADDESC_ISA"); env != nullptr && *env != '\0') {
        const std::string want(env);
        if (!is_built_isa(want))
            throw py::import_error("GRADDESC_ISA='" + want + "' is not one of " + isa_list());
        if (!select_isa(want.c_str()))
            throw py::import_error("GRADDESC_ISA='" + want + "' is not supported by this CPU (best: " +
                                   best_isa() + ")");
    } else {
        select_isa(best_isa());
    }

    m.def("isa", [] { return std::string(active_kernels().isa); }, "The instruction set in use.");
    m.def("best_isa", [] { return std::string(best_isa()); }, "The best instruction set this CPU supports.");
    m.def("cpu_supports", [](const std::string& name) { return cpu_supports_isa(name.c_str()); },
          py::arg("name"), "Whether this CPU can run the kernels built for `name`.");
    m.def("_tables_built", [] {
            py::list out;
            for (int i = 0; i < isa_count(); ++i)
                if (tables_built() & (1u << i)) out.append(isa_name(i));
            return out;
        }, "ISAs whose kernel tables were built (run) in this process; for tests.");
    m.def("set_isa", [](const std::string& name) {
            if (!is_built_isa(name))
                throw py::value_error("set_isa: name must be one of " + isa_list() + ", got '" +
                                      name + "'");
            if (!select_isa(name.c_str()))
                throw py::value_error("set_isa: '" + name + "' is not supported by this CPU");
        }, py::arg("name"), "Switches the kernel table (for tests of every ISA path).");
    m.def("get_num_threads", &num_threads, "Threads a parallel kernel may use.");
    m.def("set_num_threads", [](int n) {
            if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
            set_num_threads(n);
        }, py::arg("n"), "Sets the number of threads parallel kernels may use.");

    bind::bind_linear(m);
    bind::bind_activation(m);
    bind::bind_elementwise(m);
    bind::bind_loss(m);
    bind::bind_reduce(m);
    bind::bind_program(m);
    bind::bind_optim(m);
    bind::bind_replay(m);
    bind::bind_norm(m);
    bind::bind_conv(m);
    bind::bind_index(m);
    bind::bind_random(m);
    bind::bind_intops(m);
    bind::bind_sort(m);
    bind::bind_collective(m);
}

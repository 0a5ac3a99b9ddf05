// Bindings for graddesc.distributed's arithmetic (collective.hpp): average_ranks takes the ranks'
// buffers as a list of NumPy arrays (for DistributedDataParallel, views of MPI shared-memory
// windows), checks them (dtype, C-contiguity, alignment, element count, writeability, overlap)
// with a message naming the argument, and runs the kernel with the GIL released.
#include <string>
#include <vector>

#include "bind_common.hpp"
#include "kernels.hpp"

namespace gd {
namespace bind {
namespace {

const char* const kOp = "average_ranks";

template <class T>
void run_average(py::array& out, const py::sequence& seq, const py::handle& out2_obj) {
    const int64_t N = static_cast<int64_t>(out.size());
    if (!out.writeable()) value_error(std::string(kOp) + ": argument 'out' is read-only");
    py::array out2 = py::reinterpret_borrow<py::array>(py::handle(Py_None));
    T* y2 = nullptr;
    if (!out2_obj.is_none()) {
        out2 = as_array(out2_obj, kOp, "out2");
        check_array<T>(out2, kOp, "out2");
        if (static_cast<int64_t>(out2.size()) != N)
            value_error(std::string(kOp) + ": argument 'out2' must have out's " +
                        std::to_string(N) + " elements, got " + std::to_string(out2.size()));
        if (!out2.writeable()) value_error(std::string(kOp) + ": argument 'out2' is read-only");
        check_no_overlap(out, out2, kOp, "out", "out2");
        y2 = out_ptr<T>(out2);
    }
    const size_t count = static_cast<size_t>(py::len(seq));
    std::vector<py::array> arrays;
    std::vector<const T*> ptrs;
    arrays.reserve(count);
    ptrs.reserve(count);
    for (size_t k = 0; k < count; ++k) {
        const std::string name = "inputs[" + std::to_string(k) + "]";
        py::array a = as_array(seq[k], kOp, name.c_str());
        check_array<T>(a, kOp, name.c_str());
        if (static_cast<int64_t>(a.size()) != N)
            value_error(std::string(kOp) + ": argument '" + name + "' must have out's " +
                        std::to_string(N) + " elements, got " + std::to_string(a.size()));
        check_no_overlap(out, a, kOp, "out", name.c_str());
        if (y2 != nullptr) check_no_overlap(out2, a, kOp, "out2", name.c_str());
        arrays.push_back(a);
        ptrs.push_back(in_ptr<T>(arrays.back()));
    }
    T* y = out_ptr<T>(out);
    py::gil_scoped_release release;
    kernels<T>().average_ranks(y, y2, ptrs.data(), static_cast<int64_t>(count), N);
}

void average_ranks(const py::handle& out_obj, const py::handle& inputs,
                   const py::handle& out2) {
    py::array out = as_array(out_obj, kOp, "out");
    if (!py::isinstance<py::list>(inputs) && !py::isinstance<py::tuple>(inputs))
        type_error(std::string(kOp) + ": argument 'inputs' must be a list of numpy.ndarray, got " +
                   py::str(py::type::of(inputs)).cast<std::string>());
    py::sequence seq = py::reinterpret_borrow<py::sequence>(inputs);
    if (py::len(seq) == 0)
        value_error(std::string(kOp) + ": argument 'inputs' must hold at least one array");
    if (float_kind(out, kOp, "out") == 'f') {
        check_array<float>(out, kOp, "out");
        run_average<float>(out, seq, out2);
    } else {
        check_array<double>(out, kOp, "out");
        run_average<double>(out, seq, out2);
    }
}

}  // namespace

void bind_collective(py::module_& m) {
    m.def("average_ranks", &average_ranks, py::arg("out"), py::arg("inputs"),
          py::arg("out2") = py::none(),
          "out (and out2 unless None) = (((inputs[0] + inputs[1]) + inputs[2]) + ...) / "
          "len(inputs), element by element in list order (a multiplication by the reciprocal "
          "when len(inputs) is a power of two: the same bits). Every array C-contiguous, of one "
          "dtype (float32 or float64) and out's element count; out and out2 overlap no input.");
}

}  // namespace bind
}  // namespace gd

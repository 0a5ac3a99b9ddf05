// FastReplay's per-call path (FastReplay::call: the checks, the inputs, the run with the GIL
// released, gradients and results) and the module's bindings of the replay (_core.FastReplay,
// _core.replay, ...). The design is described in bind_replay.hpp.
#include <Python.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bind_replay.hpp"
#include "parallel.hpp"

namespace gd {
namespace bind {
namespace replay {
namespace {

// dst <- src. A large input (a batch-256 image batch: 800 KB) is copied by the threads in
// chunks: the 2-thread GEMMs that read it next then find half of it in each core's cache instead
// of all of it in the main thread's (measured faster than one memcpy on 2 threads; figures in
// docs/performance.md, "Measurements behind the kernels").
void copy_input(char* dst, const char* src, int64_t bytes) {
    constexpr int64_t kChunk = 64 * 1024;
    if (bytes < 4 * kChunk) {
        if (bytes > 0) std::memcpy(dst, src, static_cast<size_t>(bytes));
        return;
    }
    parallel_chunks(bytes, kChunk, bytes, [&](int64_t b0, int64_t b1) {
        std::memcpy(dst + b0, src + b0, static_cast<size_t>(b1 - b0));
    });
}

// Bumps the int in vc[0] (a Tensor's version counter, a 1-element list).
void bump(PyObject* vc) {
    if (!PyList_CheckExact(vc) || PyList_GET_SIZE(vc) < 1)
        throw std::runtime_error("FastReplay: a version counter is not a 1-element list");
    PyObject* item = PyList_GET_ITEM(vc, 0);
    const long long v = PyLong_AsLongLong(item);
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
    PyObject* nv = PyLong_FromLongLong(v + 1);
    if (nv == nullptr) throw py::error_already_set();
    PyList_SetItem(vc, 0, nv);  // steals nv, releases the old int
}

}  // namespace

py::object FastReplay::call(const py::tuple& args, bool grad_enabled) {
    const py::object slow = py::reinterpret_borrow<py::object>(Py_NotImplemented);
    if (grad_enabled != grad_enabled_ || static_cast<size_t>(args.size()) != inputs_.size() ||
        kind_ == 4)  // (results of another sequence type, e.g. a namedtuple: Python)
        return slow;
    // storage epoch
    {
        PyObject* e = PyList_GET_ITEM(epoch_list_.ptr(), 0);
        const long long now = PyLong_AsLongLong(e);
        if (now == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (now != epoch_) return slow;
    }
    // a recording in progress (this may be called inside another compiled step)
    {
        PyObject* active = PyDict_GetItemWithError(state_.ptr(), active_name_.ptr());
        if (active == nullptr && PyErr_Occurred()) throw py::error_already_set();
        if (active != Py_None) return slow;
    }
    auto* tt = reinterpret_cast<PyTypeObject*>(tensor_type_.ptr());
    for (const auto& pa : params_)
        if (!holds(pa, true)) return slow;
    // a .grad the program writes in place (zero_grad(set_to_none=False)): still the leaf's
    for (const Persistent& pg : persistent_)
        if (field(pg.var.ptr(), off_grad_) != pg.grad.ptr() ||
            field(pg.grad.ptr(), off_data_) != pg.arr.ptr())
            return slow;
    for (const auto& fa : frozen_)
        if (!holds(fa, false)) return slow;
    for (const Optimizer& o : optimizers_) {  // the same param_groups list and groups
        py::object now = py::reinterpret_steal<py::object>(
            PyObject_GetAttr(o.opt.ptr(), param_groups_name_.ptr()));
        if (!now) throw py::error_already_set();
        if (now.ptr() != o.list.ptr() || !PyList_Check(now.ptr()) ||
            PyList_GET_SIZE(now.ptr()) != static_cast<Py_ssize_t>(o.groups.size()))
            return slow;
        for (size_t k = 0; k < o.groups.size(); ++k)
            if (PyList_GET_ITEM(now.ptr(), static_cast<Py_ssize_t>(k)) != o.groups[k].ptr())
                return slow;
    }
    for (const Group& g : groups_) {
        PyObject* d = g.group.ptr();
        PyObject* pl = g.plist.ptr();  // (a ParamGroup's unchanged _version: still there)
        if (g.off_version >= 0) {
            if (field(d, g.off_version) != g.version.ptr()) return slow;
        } else {
            if (PyDict_GET_SIZE(d) != static_cast<Py_ssize_t>(g.keys.size()) + 1) return slow;
            pl = PyDict_GetItemWithError(d, params_name_.ptr());
            if (pl == nullptr && PyErr_Occurred()) throw py::error_already_set();
        }
        if (pl != g.plist.ptr() || !PyList_Check(pl) ||
            PyList_GET_SIZE(pl) != static_cast<Py_ssize_t>(g.ptuple.size()))
            return slow;
        for (size_t k = 0; k < g.ptuple.size(); ++k)
            if (PyList_GET_ITEM(pl, static_cast<Py_ssize_t>(k)) != g.ptuple[k].ptr())
                return slow;
        if (g.off_version >= 0) continue;  // (no setting changed since the snapshot)
        for (size_t k = 0; k < g.keys.size(); ++k) {
            PyObject* v = PyDict_GetItemWithError(d, g.keys[k].ptr());
            if (v == nullptr && PyErr_Occurred()) throw py::error_already_set();
            if (v != g.values[k].ptr()) return slow;
        }
    }
    // inputs: check every one before copying any
    for (size_t k = 0; k < inputs_.size(); ++k) {
        PyObject* a = PyTuple_GET_ITEM(args.ptr(), static_cast<Py_ssize_t>(k));
        const Input& in = inputs_[k];
        if (!in.tensor) {
            if (PyObject_TypeCheck(a, tt) ||
                reinterpret_cast<PyObject*>(Py_TYPE(a)) != in.type.ptr())
                return slow;
            const int eq = PyObject_RichCompareBool(a, in.value.ptr(), Py_EQ);
            if (eq < 0) throw py::error_already_set();
            if (eq != 1) return slow;
            continue;
        }
        if (!PyObject_TypeCheck(a, tt) || Py_TYPE(a) == g_types[1] || Py_TYPE(a) == g_types[3])
            return slow;  // (a stale parameter: the Python path reads it, which flushes)
        PyObject* rg = field(a, off_rg_);
        PyObject* data = field(a, off_data_);
        if (rg == nullptr || data == nullptr || !py::isinstance<py::array>(data)) return slow;
        const int r = PyObject_IsTrue(rg);
        if (r < 0) throw py::error_already_set();
        if (r != 0) return slow;
        auto* arr = py::detail::array_proxy(data);
        if (arr->nd != static_cast<int>(in.shape.size())) return slow;
        for (size_t d = 0; d < in.shape.size(); ++d)
            if (arr->dimensions[d] != in.shape[d]) return slow;
        if (!(arr->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) return slow;
        if (reinterpret_cast<PyObject*>(arr->descr) != in.descr) {
            const int eq = PyObject_RichCompareBool(reinterpret_cast<PyObject*>(arr->descr),
                                                    in.descr, Py_EQ);
            if (eq < 0) throw py::error_already_set();
            if (eq != 1) return slow;
        }
    }
    // a gradient the caller still holds (the Tensor or its array): Python rebinds it
    for (const Grad& g : grads_) {
        PyObject* cur = field(g.var.ptr(), off_grad_);
        if (cur != nullptr && cur != Py_None && field(cur, off_data_) == g.arr.ptr() &&
            Py_REFCNT(cur) > 1)
            return slow;
        if (Py_REFCNT(g.arr.ptr()) > g.baseline) return slow;
    }
    // ---- from here on this call replays ----
    if (!prepare_.is_none()) prepare_();  // (the step's random draws: before anything else)
    ++hits_;
    const bool defer = may_defer();
    if (g_owner != nullptr && g_owner != this) g_owner->flush_now();
    // (per thread: two threads calling one compiled function must not share this list; what
    // it names is applied and undone under run_mutex_)
    thread_local std::vector<std::pair<Input*, char*>> in_place;
    in_place.clear();
    for (size_t k = 0; k < inputs_.size(); ++k) {
        Input& in = inputs_[k];
        if (!in.tensor) continue;
        PyObject* a = PyTuple_GET_ITEM(args.ptr(), static_cast<Py_ssize_t>(k));
        const auto* arr = py::detail::array_proxy(field(a, off_data_));
        char* src = arr->data;
        if (!in.slots.empty() && (arr->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_) &&
            !touches_program(src, in.buf.nbytes()))
            in_place.emplace_back(&in, src), ++in_place_reads_;
        else
            copy_input(static_cast<char*>(in.buf.mutable_data()), src, in.buf.nbytes());
    }
    try {
        {
            py::gil_scoped_release nogil;
            std::lock_guard<std::mutex> lock(run_mutex_);  // (flush_now from another thread)
            // inputs read in place: the program points at the caller's arrays for this run
            struct Repoint {
                const std::vector<std::pair<Input*, char*>>& v;
                explicit Repoint(const std::vector<std::pair<Input*, char*>>& w) : v(w) {
                    for (const auto& [in, src] : v) point(in->slots, src);
                }
                ~Repoint() {
                    for (const auto& [in, src] : v)
                        point(in->slots, static_cast<char*>(in->buf.mutable_data()));
                }
            } repoint(in_place);
            prog_->run(defer);
        }
        after_run();
    } catch (...) {
        // (a cross-entropy target out of range: nothing was updated yet) eager would have
        // cleared the gradients before failing
        after_run();
        for (const Grad& g : grads_) set_grad(g.var.ptr(), py::none().release().ptr());
        sync_pending();
        throw;
    }
    ++replays_->n;
    for (const py::object& vc : versions_) bump(vc.ptr());
    for (const Persistent& pg : persistent_) {
        PyObject* vc = field(pg.grad.ptr(), off_vc_);
        if (vc == nullptr) throw std::runtime_error("FastReplay: a .grad has no version counter");
        bump(vc);
    }
    for (const Grad& g : grads_) {
        PyObject* cur = field(g.var.ptr(), off_grad_);
        if (cur == nullptr || cur == Py_None || field(cur, off_data_) != g.arr.ptr()) {
            set_grad(g.var.ptr(), new_tensor(g.arr.ptr()));
        } else if (Py_REFCNT(cur) > 1) {
            // (only the leaf held it when this call began, see above: its version counter,
            // which nobody could have read, changes only if someone took it meanwhile)
            PyObject* vc = field(cur, off_vc_);
            if (vc == nullptr)
                throw std::runtime_error("FastReplay: a .grad has no version counter");
            bump(vc);
        }
    }
    for (const py::object& v : none_grads_) set_grad(v.ptr(), py::none().release().ptr());
    sync_pending();
    return results();
}

// Whether [p, p + bytes) overlaps memory the program reads or writes (then reading an input
// there in place could see the program's own writes, or be repointed with them).
bool FastReplay::touches_program(const char* p, int64_t bytes) const {
    const auto lo = reinterpret_cast<uintptr_t>(p), hi = lo + uintptr_t(bytes);
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), std::make_pair(lo, UINTPTR_MAX));
    if (it != ranges_.begin() && std::prev(it)->second > lo) return true;
    return it != ranges_.end() && it->first < hi;
}

// var._grad = value (a new reference, stolen)
void FastReplay::set_grad(PyObject* var, PyObject* value) const {
    PyObject* old = field(var, off_grad_);
    field(var, off_grad_) = value;
    Py_XDECREF(old);
}

// _compile_state.pending holds this program's item for each lazy gradient whose leaf has a
// .grad now, and none for the others. (An item stays valid across replays: it computes the
// gradient from the buffers of the last run, so a present one is left as it is.)
void FastReplay::sync_pending() const {
    for (const Lazy& l : lazy_) {
        PyObject* cur = field(l.var.ptr(), off_grad_);
        PyObject* there = PyDict_GetItemWithError(pending_.ptr(), l.key.ptr());
        if (there == nullptr && PyErr_Occurred()) throw py::error_already_set();
        if (cur != nullptr && cur != Py_None) {
            if (there != l.value.ptr() &&
                PyDict_SetItem(pending_.ptr(), l.key.ptr(), l.value.ptr()) < 0)
                throw py::error_already_set();
        } else if (there == l.value.ptr() && PyDict_DelItem(pending_.ptr(), l.key.ptr()) < 0) {
            throw py::error_already_set();
        }
    }
}

// tensor_and_array.first still holds tensor_and_array.second and requires grad as given
bool FastReplay::holds(const std::pair<py::object, py::object>& tensor_and_array,
                       bool requires_grad) const {
    PyObject* t = tensor_and_array.first.ptr();
    PyObject* rg = field(t, off_rg_);
    if (field(t, off_data_) != tensor_and_array.second.ptr() || rg == nullptr) return false;
    const int r = PyObject_IsTrue(rg);
    if (r < 0) throw py::error_already_set();
    return r == static_cast<int>(requires_grad);
}

// A new Tensor around `data` (new reference), the fields exactly as Tensor._make sets them.
PyObject* FastReplay::new_tensor(PyObject* data) const {
    auto* tt = reinterpret_cast<PyTypeObject*>(tensor_type_.ptr());
    PyObject* t = tt->tp_alloc(tt, 0);  // zeroed, as object.__new__(Tensor) makes it
    if (t == nullptr) throw py::error_already_set();
    PyObject* vc = PyList_New(1);
    if (vc == nullptr) {
        Py_DECREF(t);
        throw py::error_already_set();
    }
    Py_INCREF(zero_.ptr());
    PyList_SET_ITEM(vc, 0, zero_.ptr());
    const auto set = [&](Py_ssize_t off, PyObject* v) {
        Py_INCREF(v);
        field(t, off) = v;
    };
    set(off_data_, data);
    set(off_rg_, Py_False);
    set(off_grad_, Py_None);
    set(off_fn_, Py_None);
    set(off_nr_, zero_.ptr());
    field(t, off_vc_) = vc;  // (owned)
    set(off_base_, Py_None);
    set(off_edge_, Py_None);
    set(off_vinfo_, Py_None);
    set(off_views_, Py_None);
    return t;
}

// A new Tensor around a copy of `a` (C-contiguous: the program's own buffer); a new array of
// its dtype and shape and one memcpy (PyArray_NewCopy costs more for a 0-d loss)
py::object FastReplay::wrap_copy(const py::array& a) const {
    auto* src = py::detail::array_proxy(a.ptr());
    const auto& api = py::detail::npy_api::get();
    Py_INCREF(src->descr);  // (stolen)
    py::object c = py::reinterpret_steal<py::object>(api.PyArray_NewFromDescr_(
        api.PyArray_Type_, src->descr, src->nd, src->dimensions, nullptr, nullptr, 0,
        nullptr));
    if (!c) throw py::error_already_set();
    if (a.nbytes() > 0)
        std::memcpy(py::detail::array_proxy(c.ptr())->data, src->data,
                    static_cast<size_t>(a.nbytes()));
    return py::reinterpret_steal<py::object>(new_tensor(c.ptr()));
}

py::object FastReplay::results() const {
    if (kind_ == 0) return py::none();
    if (kind_ == 1) return wrap_copy(outputs_[0]);
    py::list outs;
    for (const py::array& a : outputs_) outs.append(wrap_copy(a));
    if (kind_ == 3) return std::move(outs);
    return py::tuple(outs);  // (kind_ 2: call() leaves kind_ 4 to Python)
}

}  // namespace replay

using replay::FastReplay;
using replay::g_owner;
using replay::g_types;
using replay::ReplayCount;

// _core.replay(fast, args, grad_enabled): FastReplay.__call__ without pybind11's dispatcher
// (a METH_FASTCALL function: the call from CompiledFunction.__call__ is on every step).
PyObject* replay_fastcall(PyObject*, PyObject* const* argv, Py_ssize_t argc) {
    try {
        if (argc != 3 || !PyTuple_Check(argv[1]) || !PyBool_Check(argv[2])) {
            PyErr_SetString(PyExc_TypeError,
                            "replay(fast, args, grad_enabled): a FastReplay, a tuple and a bool");
            return nullptr;
        }
        auto* fast = argv[0] == Py_None ? nullptr : py::cast<FastReplay*>(py::handle(argv[0]));
        if (fast == nullptr) throw py::cast_error();
        return fast->call(py::reinterpret_borrow<py::tuple>(argv[1]), argv[2] == Py_True)
            .release()
            .ptr();
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (const py::cast_error&) {
        PyErr_SetString(PyExc_TypeError, "replay: the first argument is not a FastReplay");
    } catch (const py::builtin_exception& e) {
        e.set_error();
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::out_of_range& e) {  // (pybind11's translations of the standard ones)
        PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const std::overflow_error& e) {
        PyErr_SetString(PyExc_OverflowError, e.what());
    } catch (const std::logic_error& e) {  // invalid_argument, domain_error, length_error
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::range_error& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (...) {
        PyErr_SetString(PyExc_SystemError, "replay: an unknown C++ exception");
    }
    return nullptr;
}

PyMethodDef g_replay_def = {"replay", reinterpret_cast<PyCFunction>(
                                          reinterpret_cast<void (*)()>(replay_fastcall)),
                            METH_FASTCALL,
                            "replay(fast, args, grad_enabled): FastReplay.__call__, called "
                            "directly (private)."};

void bind_replay(py::module_& m) {
    {
        PyObject* f = PyCFunction_NewEx(&g_replay_def, nullptr, m.attr("__name__").ptr());
        if (f == nullptr) throw py::error_already_set();
        m.add_object("replay", py::reinterpret_steal<py::object>(f));
    }
    py::class_<ReplayCount>(m, "ReplayCount", "A compiled function's replay count (private).")
        .def(py::init<>())
        .def_readwrite("n", &ReplayCount::n);
    m.def("flush_deferred", &flush_deferred,
          "Applies gd.compile's pending weight updates, if any (private: graddesc._deferred).");
    m.def("deferred_pending", [] { return g_owner != nullptr; },
          "Whether a gd.compile replay left weight updates pending (private, for tests).");
    m.def("set_deferred_types", [](py::type param, py::type dparam, py::type tensor,
                                   py::type dtensor) {
              py::type ts[4] = {param, dparam, tensor, dtensor};
              for (int k = 0; k < 4; ++k) {
                  PyTypeObject* t = reinterpret_cast<PyTypeObject*>(ts[k].ptr());
                  if (k % 2 == 1 && (t->tp_base != reinterpret_cast<PyTypeObject*>(ts[k - 1].ptr()) ||
                                     t->tp_basicsize != t->tp_base->tp_basicsize))
                      throw py::type_error("set_deferred_types: a deferred class must be a "
                                           "subclass of the same layout");
                  Py_INCREF(t);
                  Py_XDECREF(g_types[k]);
                  g_types[k] = t;
              }
          },
          py::arg("parameter"), py::arg("deferred_parameter"), py::arg("tensor"),
          py::arg("deferred_tensor"), "Registers graddesc._deferred's classes (private).");
    py::class_<FastReplay>(m, "FastReplay",
                           "gd.compile's one-call replay of a recorded entry (private).")
        .def(py::init<py::object, py::object, bool, py::list, int64_t, py::dict,
                      py::list, py::list, py::list, py::list, py::list, py::list, py::list,
                      py::list, py::list, py::dict, py::list, py::object, py::object, py::list>(),
             py::arg("program"), py::arg("tensor_type"), py::arg("grad_enabled"),
             py::arg("epoch_list"), py::arg("epoch"), py::arg("state"), py::arg("inputs"),
             py::arg("params"), py::arg("frozen"), py::arg("optimizers"),
             py::arg("hypers"), py::arg("versions"), py::arg("grads"),
             py::arg("none_grads"), py::arg("lazy"), py::arg("pending"), py::arg("outputs"),
             py::arg("out_kind"), py::arg("replays"), py::arg("persistent") = py::list())
        .def("__call__", &FastReplay::call, py::arg("args"), py::arg("grad_enabled"),
             "Replays for positional `args`, or returns NotImplemented (the Python path decides).")
        .def_readwrite("prepare", &FastReplay::prepare_,
                       "Called with no arguments once a call's checks pass, before its inputs "
                       "are copied and the program runs (None: nothing).")
        .def_property_readonly("hits", &FastReplay::hits, "Calls this object replayed.")
        .def_property_readonly("in_place_reads", &FastReplay::in_place_reads,
                               "Inputs it read where the caller's array is (no copy).");
}

}  // namespace bind
}  // namespace gd

// gd.compile's deferred weight updates on the replay side (Program::plan_defer; the design is
// described in bind_replay.hpp): which FastReplay has updates pending (g_owner), whether a replay
// may leave its updates pending (nothing outside graddesc holds a deferred parameter's memory),
// the switch of deferred parameters to graddesc._deferred's classes and back, and flushing.
#include <Python.h>

#include <mutex>
#include <unordered_map>

#include "bind_replay.hpp"

namespace gd {
namespace bind {
namespace replay {

FastReplay* g_owner = nullptr;
std::unordered_map<PyObject*, Py_ssize_t> g_internal_refs;
PyTypeObject* g_types[4] = {nullptr, nullptr, nullptr, nullptr};

namespace {

// obj.__class__ = t for two classes of the same layout (what object.__class__'s setter does
// after its checks)
void set_type(PyObject* obj, PyTypeObject* t) {
    PyTypeObject* old = Py_TYPE(obj);
    if (old == t) return;
    Py_INCREF(t);
    Py_SET_TYPE(obj, t);
    Py_DECREF(old);
}

// Exactly `expected` references to arr, one to each array below it (NumPy points a view's base
// at the array that owns the memory, so a view of arr counts on arr's base), and the last one
// owns its memory (not a buffer of someone else's, a bytearray or shared memory, which its owner
// can read and write behind NumPy's back).
bool sole_holder(PyObject* arr, Py_ssize_t expected) {
    if (Py_REFCNT(arr) != expected) return false;
    PyObject* a = arr;
    for (int depth = 0; depth < 8; ++depth) {
        PyObject* b = py::detail::array_proxy(a)->base;
        if (b == nullptr)
            return (py::detail::array_proxy(a)->flags &
                    py::detail::npy_api::NPY_ARRAY_OWNDATA_) != 0;
        if (Py_REFCNT(b) != 1 || !py::isinstance<py::array>(b)) return false;
        a = b;
    }
    return false;
}

}  // namespace

// (documented in bind_replay.hpp)
void FastReplay::flush_now() {
    {
        std::lock_guard<std::mutex> lock(run_mutex_);
        prog_->flush();
    }
    retype(false);
    if (g_owner == this) g_owner = nullptr;
}

// Whether this replay may leave its weight updates pending: each deferred parameter is of
// a class with a deferred twin and nothing outside graddesc holds its memory.
bool FastReplay::may_defer() const {
    if (deferred_.empty() || g_types[0] == nullptr) return false;
    for (size_t k : deferred_) {
        PyTypeObject* t = Py_TYPE(params_[k].first.ptr());
        if (t != g_types[0] && t != g_types[1] && t != g_types[2] && t != g_types[3])
            return false;
        PyObject* a = params_[k].second.ptr();
        const auto it = g_internal_refs.find(a);
        if (it == g_internal_refs.end() || !sole_holder(a, 1 + it->second)) return false;
    }
    return true;
}

// Deferred parameters to their deferred twin class (or back).
void FastReplay::retype(bool deferred) const {
    for (size_t k : deferred_) {
        PyObject* o = params_[k].first.ptr();
        PyTypeObject* t = Py_TYPE(o);
        for (int k = 0; k < 4; k += 2) {
            if (deferred && t == g_types[k]) set_type(o, g_types[k + 1]);
            if (!deferred && t == g_types[k + 1]) set_type(o, g_types[k]);
        }
    }
}

// One owner at a time: another replay's pending updates (another thread's, which ran
// meanwhile) are applied before this one's are left pending.
void FastReplay::after_run() {
    bool pending;
    {
        std::lock_guard<std::mutex> lock(run_mutex_);
        pending = prog_->pending();
    }
    if (pending) {
        if (g_owner != nullptr && g_owner != this) g_owner->flush_now();
        retype(true);
        g_owner = this;
    } else {
        retype(false);
        if (g_owner == this) g_owner = nullptr;
    }
}

}  // namespace replay

void flush_deferred() {
    if (replay::g_owner != nullptr) replay::g_owner->flush_now();
}

}  // namespace bind
}  // namespace gd

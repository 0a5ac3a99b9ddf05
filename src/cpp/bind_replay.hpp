// gd.compile's replay fast path: one C++ call per compiled step (graddesc/_compile.py builds a
// FastReplay per recorded entry). It does what CompiledFunction._valid and _replay do in Python,
// for the common case only, and answers NotImplemented whenever anything is unusual (another
// input signature, a changed optimizer setting or parameter, a gradient the caller still holds,
// keyword arguments, a non-contiguous input): the Python path then handles the call, so this
// file never has to be right about a rare case, only about recognising it.
//
// Per call, in order: input signature (types, shapes, dtypes, requires_grad, grad mode, equal
// non-tensor arguments), storage epoch, no recording in progress, parameters and frozen tensors
// (same storage, same requires_grad), the .grad tensors the program writes in place (a step with
// zero_grad(set_to_none=False): still each leaf's, on the same array), optimizer param groups (the very same objects as at the
// last Python check; a ParamGroup's _version instead of each setting), gradients nobody else
// holds; then the inputs are copied into the program's buffers (or, from 32 KiB, read where the
// caller's array is), the program runs with the GIL released, version counters are bumped, each
// leaf's .grad is set, deferred (lazy) gradients are registered, and the results are copied into
// new Tensors. Tensor fields are read and written through their __slots__ offsets (looked up once
// from the member descriptors), which is what makes this cheaper than the Python path;
// CompiledFunction.__call__ reaches it through _core.replay, a METH_FASTCALL function.
//
// Deferred weight updates (Program::plan_defer): when the program has some and nothing but
// graddesc holds a deferred parameter's array (its reference count equals the tensor's one plus
// those every live FastReplay and its entry hold, g_internal_refs; one reference to each array
// below it in its base chain, so no view of it exists anywhere, down to memory NumPy owns), a
// replay leaves their updates pending and the next replay applies them as it reads the weights.
// Between calls such a parameter is stale, so its class is switched to graddesc._deferred's
// subclass, whose attribute access calls flush_deferred() first (which switches it back): any
// Python code, graddesc's own included, that touches the parameter sees it updated. One
// FastReplay at most has updates pending (g_owner); any other replay, and Program.run from
// Python, flushes it first. A flush keeps the GIL and waits on the owner's run_mutex_ (held while
// its program runs, GIL released).
//
// This header declares FastReplay and what its source files share (private to them):
//   bind_replay.cpp        the per-call path (checks, inputs, the run, gradients, results) and the
//                          module's bindings (_core.FastReplay, _core.replay, ...)
//   bind_replay_setup.cpp  building a FastReplay from a recorded entry, and its destruction
//   bind_replay_defer.cpp  the deferred weight updates: which replay has updates pending
//                          (g_owner), the parameters' switch to their deferred class, flushing
// (these globals are defined in bind_replay_defer.cpp)
#pragma once
#include <Python.h>

#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bind_common.hpp"
#include "program.hpp"

namespace gd {
namespace bind {
namespace replay {

class FastReplay;
extern FastReplay* g_owner;  // the replay whose program has updates pending, if any
// References graddesc holds to a parameter's array besides its tensor's _data: each live
// FastReplay adds its own and its entry's (several compiled functions, or several input shapes
// of one, may hold the same parameter)
extern std::unordered_map<PyObject*, Py_ssize_t> g_internal_refs;
// Parameter, its deferred subclass, Tensor, its deferred subclass (set_deferred_types)
extern PyTypeObject* g_types[4];

inline py::object borrow(const py::handle& h) { return py::reinterpret_borrow<py::object>(h); }

inline PyObject*& field(PyObject* obj, Py_ssize_t off) {
    return *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(obj) + off);
}

// A compiled function's replay count (its stats["replayed"]), shared by its FastReplays.
struct ReplayCount {
    int64_t n = 0;
};

struct Input {
    bool tensor = false;
    py::array buf;             // tensor: the program's private input buffer
    PyObject* descr = nullptr;  // its dtype (borrowed from buf)
    std::vector<Py_ssize_t> shape;
    py::object type, value;    // otherwise: the recorded non-tensor argument
    // A large input is read where the caller's array is, without a copy, when the program
    // only reads it during the run: the operand fields that point into buf, and their offsets.
    std::vector<std::pair<void**, int64_t>> slots;
};

// Inputs from this many bytes are read in place (when they may be). A copy of a large input costs
// a few percent of a step, more on two threads (its lines then sit modified in the copying
// core's cache while both cores' GEMMs read all of it); repointing the program's fields costs
// far less (figures in docs/performance.md, "Measurements behind the kernels").
constexpr int64_t kInPlaceBytes = 32 * 1024;

// Points the fields at base + offset (the caller's array, or back at the private buffer).
inline void point(const std::vector<std::pair<void**, int64_t>>& slots, char* base) {
    for (const auto& [field, offset] : slots) *field = base + offset;
}

struct Group {
    py::dict group;
    py::object plist;
    std::vector<py::object> ptuple;
    std::vector<py::object> keys, values;
    // a ParamGroup: its _version slot (replaced on every change) instead of keys and values
    py::object version;
    Py_ssize_t off_version = -1;
};

struct Optimizer {
    py::object opt, list;            // the optimizer and its param_groups list when recorded
    std::vector<py::object> groups;  // the groups that list held
};

struct Grad {
    py::object var, arr;
    Py_ssize_t baseline;  // Py_REFCNT(arr) when only graddesc holds it
};

struct Persistent {
    py::object var, grad, arr;
};

struct Lazy {
    py::object var, key, value;  // key = id(var), value = (weakref(var), weakref(program), index)
};

class FastReplay {
   public:
    FastReplay(py::object program, py::object tensor_type, bool grad_enabled,
               py::list epoch_list, int64_t epoch, py::dict state, py::list inputs,
               py::list params, py::list frozen, py::list optimizers, py::list hypers,
               py::list versions, py::list grads, py::list none_grads, py::list lazy,
               py::dict pending, py::list outputs, py::object out_kind, py::object replays,
               py::list persistent);
    ~FastReplay();

    // Applies this program's pending updates and switches its parameters back to their class.
    // It keeps the GIL, waiting if another thread is running this program (which holds the mutex
    // but not the GIL): so no Python code runs between the update and the class switch, nor can
    // this object be dropped meanwhile, and no thread replays it again before its parameters are
    // settled.
    void flush_now();

    // The step's result, or NotImplemented when the Python path must handle this call.
    py::object call(const py::tuple& args, bool grad_enabled);

    int64_t hits() const { return hits_; }
    int64_t in_place_reads() const { return in_place_reads_; }
    // Called (no arguments, GIL held) once a call's checks have passed, before the inputs are
    // copied and the program runs; None: nothing. gd.compile makes the step's random draws
    // there (host-fed inputs of the program, graddesc/_random.py).
    py::object prepare_ = py::none();

   private:
    // the per-call path's helpers (bind_replay.cpp)
    bool touches_program(const char* p, int64_t bytes) const;
    void set_grad(PyObject* var, PyObject* value) const;
    void sync_pending() const;
    bool holds(const std::pair<py::object, py::object>& tensor_and_array,
               bool requires_grad) const;
    PyObject* new_tensor(PyObject* data) const;
    py::object wrap_copy(const py::array& a) const;
    py::object results() const;
    // deferred updates (bind_replay_defer.cpp)
    bool may_defer() const;
    void retype(bool deferred) const;
    void after_run();

    py::object program_obj_;
    Program* prog_ = nullptr;
    py::object tensor_type_;
    py::list epoch_list_;
    int64_t epoch_;
    py::dict state_;  // graddesc._compile_state's namespace
    py::dict pending_;
    py::object replays_obj_;  // the compiled function's ReplayCount (kept alive)
    ReplayCount* replays_ = nullptr;
    bool grad_enabled_;
    Py_ssize_t off_data_ = 0, off_rg_ = 0, off_grad_ = 0, off_vc_ = 0, off_fn_ = 0, off_nr_ = 0,
               off_base_ = 0, off_edge_ = 0, off_vinfo_ = 0, off_views_ = 0;
    py::object zero_;
    std::vector<Input> inputs_;
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges_;  // Program::ranges()
    std::vector<std::pair<py::object, py::object>> params_, frozen_;
    // references to each params_ array when only graddesc holds it (its tensor's, its entry's,
    // this object's)
    std::vector<Py_ssize_t> param_refs_;
    std::vector<size_t> deferred_;  // params_ whose updates the program may defer
    std::mutex run_mutex_;           // held while the program runs or is flushed
    std::vector<Optimizer> optimizers_;
    std::vector<Group> groups_;
    std::vector<py::object> versions_;
    std::vector<Grad> grads_;
    std::vector<Persistent> persistent_;
    std::vector<py::object> none_grads_;
    std::vector<Lazy> lazy_;
    std::vector<py::array> outputs_;
    int kind_ = 0;
    int64_t hits_ = 0, in_place_reads_ = 0;
    py::object active_name_ = py::str("active");
    py::object param_groups_name_ = py::str("param_groups");
    py::object params_name_ = py::str("params");  // (once: a C-string key is made per lookup)
};

}  // namespace replay
}  // namespace bind
}  // namespace gd

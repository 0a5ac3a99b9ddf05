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
#include <Python.h>
#include <structmember.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "bind_common.hpp"
#include "parallel.hpp"
#include "program.hpp"

namespace gd {
namespace bind {
namespace {

#ifdef Py_T_OBJECT_EX
constexpr int kObjectSlot = Py_T_OBJECT_EX;
#else
constexpr int kObjectSlot = T_OBJECT_EX;
#endif

// Byte offset of a __slots__ member of `type` (an object slot), or throws.
Py_ssize_t slot_offset(PyTypeObject* type, const char* name) {
    PyObject* d = PyDict_GetItemString(type->tp_dict, name);  // borrowed
    if (d == nullptr || Py_TYPE(d) != &PyMemberDescr_Type)
        throw std::runtime_error(std::string("FastReplay: ") + type->tp_name + "." + name +
                                 " is not a slot");
    const PyMemberDef* def = reinterpret_cast<PyMemberDescrObject*>(d)->d_member;
    if (def->type != kObjectSlot || (def->flags & READONLY))
        throw std::runtime_error(std::string("FastReplay: ") + type->tp_name + "." + name +
                                 " is not a writable object slot");
    return def->offset;
}

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

class FastReplay;
FastReplay* g_owner = nullptr;  // the replay whose program has updates pending, if any
// References graddesc holds to a parameter's array besides its tensor's _data: each live
// FastReplay adds its own and its entry's (several compiled functions, or several input shapes
// of one, may hold the same parameter)
std::unordered_map<PyObject*, Py_ssize_t> g_internal_refs;
// Parameter, its deferred subclass, Tensor, its deferred subclass (set_deferred_types)
PyTypeObject* g_types[4] = {nullptr, nullptr, nullptr, nullptr};

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

inline py::object borrow(const py::handle& h) { return py::reinterpret_borrow<py::object>(h); }

inline PyObject*& field(PyObject* obj, Py_ssize_t off) {
    return *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(obj) + off);
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
               py::list persistent)
        : program_obj_(program), epoch_list_(epoch_list), epoch_(epoch), state_(state),
          pending_(pending), replays_obj_(replays), grad_enabled_(grad_enabled) {
        replays_ = replays.cast<ReplayCount*>();
        prog_ = program.cast<Program*>();
        if (!PyType_Check(tensor_type.ptr())) throw std::runtime_error("FastReplay: tensor_type");
        tensor_type_ = tensor_type;
        auto* tt = reinterpret_cast<PyTypeObject*>(tensor_type.ptr());
        off_data_ = slot_offset(tt, "_data");
        off_rg_ = slot_offset(tt, "requires_grad");
        off_grad_ = slot_offset(tt, "_grad");
        off_vc_ = slot_offset(tt, "_vc");
        off_fn_ = slot_offset(tt, "grad_fn");
        off_nr_ = slot_offset(tt, "_output_nr");
        off_base_ = slot_offset(tt, "_base");
        off_edge_ = slot_offset(tt, "_leaf_edge");
        off_vinfo_ = slot_offset(tt, "_vinfo");
        off_views_ = slot_offset(tt, "_views");
        // new_tensor fills exactly these fields (those of Tensor._make): refuse a Tensor that
        // has grown another one
        py::tuple slots = tensor_type.attr("__slots__");
        for (const py::handle& h : slots) {
            const std::string n = h.cast<std::string>();
            if (n != "_data" && n != "requires_grad" && n != "_grad" && n != "grad_fn" &&
                n != "_output_nr" && n != "_vc" && n != "_base" && n != "_leaf_edge" &&
                n != "_vinfo" && n != "_views" && n != "__weakref__")
                throw std::runtime_error("FastReplay: Tensor has a slot it does not know: " + n);
        }
        zero_ = py::int_(0);
        for (const py::handle& h : inputs) {
            Input in;
            py::tuple t = py::reinterpret_borrow<py::tuple>(h);
            if (t[0].cast<bool>()) {
                in.tensor = true;
                in.buf = py::reinterpret_borrow<py::array>(t[1]);
                if (!(in.buf.flags() & py::array::c_style))
                    throw std::runtime_error("FastReplay: an input buffer is not C-contiguous");
                in.descr = py::detail::array_proxy(in.buf.ptr())->descr;
                for (py::ssize_t k = 0; k < in.buf.ndim(); ++k) in.shape.push_back(in.buf.shape(k));
            } else {
                in.type = borrow(t[1]);
                in.value = borrow(t[2]);
            }
            if (in.tensor && in.buf.nbytes() >= kInPlaceBytes &&
                !prog_->written_or_read_later(in.buf.data(), in.buf.nbytes()))
                in.slots = prog_->pointers_into(in.buf.data(), in.buf.nbytes());
            inputs_.push_back(std::move(in));
        }
        ranges_ = prog_->ranges();
        for (auto [from, to] :
             {std::make_pair(&params, &params_), std::make_pair(&frozen, &frozen_)})
            for (const py::handle& h : *from) {  // (tensor, the array it holds[, refs])
                py::tuple t = py::reinterpret_borrow<py::tuple>(h);
                to->emplace_back(borrow(t[0]), borrow(t[1]));
                if (to == &params_) param_refs_.push_back(t[2].cast<Py_ssize_t>());
            }
        for (const py::handle& h : optimizers) {
            py::tuple t = py::reinterpret_borrow<py::tuple>(h);  // (optimizer, list, groups)
            Optimizer o{borrow(t[0]), borrow(t[1]), {}};
            for (const py::handle& g : t[2]) o.groups.push_back(borrow(g));
            optimizers_.push_back(std::move(o));
        }
        for (const py::handle& h : hypers) {
            // (group, params list, tuple of its items, other keys, their values)
            py::tuple t = py::reinterpret_borrow<py::tuple>(h);
            Group g;
            g.group = py::reinterpret_borrow<py::dict>(t[0]);
            g.plist = borrow(t[1]);
            for (const py::handle& p : t[2]) g.ptuple.push_back(borrow(p));
            for (const py::handle& k : t[3]) g.keys.push_back(borrow(k));
            for (const py::handle& v : t[4]) g.values.push_back(borrow(v));
            if (g.keys.size() != g.values.size()) throw std::runtime_error("FastReplay: hypers");
            if (t.size() > 5 && !t[5].is_none()) {  // (the snapshot's own: else keys, values)
                const Py_ssize_t off = slot_offset(Py_TYPE(g.group.ptr()), "_version");
                if (field(g.group.ptr(), off) == t[5].ptr()) {
                    g.version = borrow(t[5]);
                    g.off_version = off;
                }
            }
            groups_.push_back(std::move(g));
        }
        for (const py::handle& h : versions) versions_.push_back(borrow(h));
        for (const py::handle& h : grads) {
            // (var, arr, refs): refs = sys.getrefcount(arr) seen by the Python path with its three
            // temporaries (loop variable, parameter, argument) when nobody else holds arr; this
            // object's own reference replaces them.
            py::tuple t = py::reinterpret_borrow<py::tuple>(h);
            Grad g{borrow(t[0]), borrow(t[1]), t[2].cast<Py_ssize_t>() - 3 + 1};
            grads_.push_back(std::move(g));
        }
        for (const py::handle& h : none_grads) none_grads_.push_back(borrow(h));
        for (const py::handle& h : persistent) {  // (leaf, its .grad, that .grad's array)
            py::tuple t = py::reinterpret_borrow<py::tuple>(h);
            persistent_.push_back({borrow(t[0]), borrow(t[1]), borrow(t[2])});
        }
        for (const py::handle& h : lazy) {
            // (var, key, item): the entry _compile_state.pending gets (see pending_item)
            py::tuple t = py::reinterpret_borrow<py::tuple>(h);
            lazy_.push_back(Lazy{borrow(t[0]), borrow(t[1]), borrow(t[2])});
        }
        for (const py::handle& h : outputs)
            outputs_.push_back(py::reinterpret_borrow<py::array>(h));
        if (out_kind.is_none()) kind_ = 0;
        else if (PyType_Check(out_kind.ptr()) &&
                 PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(out_kind.ptr()), tt))
            kind_ = 1;
        else if (out_kind.ptr() == reinterpret_cast<PyObject*>(&PyTuple_Type)) kind_ = 2;
        else if (out_kind.ptr() == reinterpret_cast<PyObject*>(&PyList_Type)) kind_ = 3;
        else kind_ = 4;  // another sequence type (a namedtuple, ...): always the Python path
        // the parameters whose updates the program may defer (by the address of their memory)
        for (void* w : prog_->deferred_weights()) {
            size_t hit = params_.size();
            for (size_t k = 0; k < params_.size(); ++k)
                if (py::detail::array_proxy(params_[k].second.ptr())->data == w) hit = k;
            if (hit == params_.size()) {  // (not a parameter graddesc knows: never deferred)
                deferred_.clear();
                break;
            }
            deferred_.push_back(hit);
        }
        for (size_t k = 0; k < params_.size(); ++k)
            g_internal_refs[params_[k].second.ptr()] += param_refs_[k] - 1;
    }

    ~FastReplay() {
        if (g_owner == this) flush_now();
        for (size_t k = 0; k < params_.size(); ++k) {
            auto it = g_internal_refs.find(params_[k].second.ptr());
            if (it != g_internal_refs.end() && (it->second -= param_refs_[k] - 1) <= 0)
                g_internal_refs.erase(it);
        }
    }

    // Applies this program's pending updates and switches its parameters back to their class.
    // It keeps the GIL, waiting if another thread is running this program (which holds the mutex
    // but not the GIL): so no Python code runs between the update and the class switch, nor can
    // this object be dropped meanwhile, and no thread replays it again before its parameters are
    // settled.
    void flush_now() {
        {
            std::lock_guard<std::mutex> lock(run_mutex_);
            prog_->flush();
        }
        retype(false);
        if (g_owner == this) g_owner = nullptr;
    }

    // The step's result, or NotImplemented when the Python path must handle this call.
    py::object call(const py::tuple& args, bool grad_enabled) {
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

    int64_t hits() const { return hits_; }
    int64_t in_place_reads() const { return in_place_reads_; }

   private:
    // Whether [p, p + bytes) overlaps memory the program reads or writes (then reading an input
    // there in place could see the program's own writes, or be repointed with them).
    bool touches_program(const char* p, int64_t bytes) const {
        const auto lo = reinterpret_cast<uintptr_t>(p), hi = lo + uintptr_t(bytes);
        auto it = std::upper_bound(ranges_.begin(), ranges_.end(), std::make_pair(lo, UINTPTR_MAX));
        if (it != ranges_.begin() && std::prev(it)->second > lo) return true;
        return it != ranges_.end() && it->first < hi;
    }

    // Whether this replay may leave its weight updates pending: each deferred parameter is of
    // a class with a deferred twin and nothing outside graddesc holds its memory.
    bool may_defer() const {
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
    void retype(bool deferred) const {
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
    void after_run() {
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

    // var._grad = value (a new reference, stolen)
    void set_grad(PyObject* var, PyObject* value) const {
        PyObject* old = field(var, off_grad_);
        field(var, off_grad_) = value;
        Py_XDECREF(old);
    }

    // _compile_state.pending holds this program's item for each lazy gradient whose leaf has a
    // .grad now, and none for the others. (An item stays valid across replays: it computes the
    // gradient from the buffers of the last run, so a present one is left as it is.)
    void sync_pending() const {
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
    bool holds(const std::pair<py::object, py::object>& tensor_and_array,
               bool requires_grad) const {
        PyObject* t = tensor_and_array.first.ptr();
        PyObject* rg = field(t, off_rg_);
        if (field(t, off_data_) != tensor_and_array.second.ptr() || rg == nullptr) return false;
        const int r = PyObject_IsTrue(rg);
        if (r < 0) throw py::error_already_set();
        return r == static_cast<int>(requires_grad);
    }

    // A new Tensor around `data` (new reference), the fields exactly as Tensor._make sets them.
    PyObject* new_tensor(PyObject* data) const {
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
    py::object wrap_copy(const py::array& a) const {
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

    py::object results() const {
        if (kind_ == 0) return py::none();
        if (kind_ == 1) return wrap_copy(outputs_[0]);
        py::list outs;
        for (const py::array& a : outputs_) outs.append(wrap_copy(a));
        if (kind_ == 3) return std::move(outs);
        return py::tuple(outs);  // (kind_ 2: call() leaves kind_ 4 to Python)
    }

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

}  // namespace

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

void flush_deferred() {
    if (g_owner != nullptr) g_owner->flush_now();
}

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
        .def_property_readonly("hits", &FastReplay::hits, "Calls this object replayed.")
        .def_property_readonly("in_place_reads", &FastReplay::in_place_reads,
                               "Inputs it read where the caller's array is (no copy).");
}

}  // namespace bind
}  // namespace gd

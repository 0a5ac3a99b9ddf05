// Building a FastReplay from a recorded entry (graddesc/_compile.py's CompiledFunction._build_fast
// passes what the entry recorded) and tearing one down. The design is described in
// bind_replay.hpp.
#include <Python.h>
#include <structmember.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bind_replay.hpp"

namespace gd {
namespace bind {
namespace replay {
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

}  // namespace

FastReplay::FastReplay(py::object program, py::object tensor_type, bool grad_enabled,
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

FastReplay::~FastReplay() {
    if (g_owner == this) flush_now();
    for (size_t k = 0; k < params_.size(); ++k) {
        auto it = g_internal_refs.find(params_[k].second.ptr());
        if (it != g_internal_refs.end() && (it->second -= param_refs_[k] - 1) <= 0)
            g_internal_refs.erase(it);
    }
}

}  // namespace replay
}  // namespace bind
}  // namespace gd

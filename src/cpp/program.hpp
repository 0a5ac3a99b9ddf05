// A recorded sequence of kernel calls on fixed buffers (gd.compile): replayed by one call from
// Python, with no tape, no allocation and the GIL released. Compiled once (not per ISA): each
// instruction calls the active ISA's kernel table, exactly as the eager bindings do, so a replay
// is bitwise equal to the eager step it was recorded from.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels.hpp"

namespace gd {

enum class Code : int {
    linear_fwd, linear_bwd, act_fwd, act_bwd, copy, sgd, adam, linear_bwd_sgd, clip_norm, ew,
    rmsprop, adagrad,
    conv,    // convolution and pooling (conv.hpp): one instruction for the family
    call,    // a kernel that registered its own instruction kind (instr_registry.hpp)
    ew_fused // a chain of ew / act_fwd / act_bwd run block by block (fuse.hpp)
};

struct Instr {
    Code code;
    bool f64;                    // dtype: double (true) or float
    std::vector<void*> p;        // buffers, meaning per code (see program.cpp)
    std::vector<int64_t> i;      // sizes and integer options
    std::vector<double> d;       // real options
    std::vector<std::vector<void*>> lists;  // per-parameter pointer lists (optimizers)
    int defer = -1;  // a deferred update's index (Program::plan_defer) for its two instructions
};

// One buffer an instruction touches: slot k of Instr::p (or -1 for an optimizer's list entry).
struct Operand {
    void* ptr;
    int64_t bytes;
    bool read, write;
    int slot;
};
// Every buffer the kernel of `in` reads or writes (precise: a pointer the kernel ignores for these
// flags, e.g. x in linear_bwd without dW, is not listed).
std::vector<Operand> operands(const Instr& in);

class Program {
   public:
    void add(Instr in) { code_.push_back(std::move(in)); }
    // Replays every instruction. With `defer`, the updates plan_defer() found are left pending
    // at the end (see below); without, none is (a pending one from the last run is applied by
    // the first instruction that reads its weight either way).
    void run(bool defer = false) const;
    size_t size() const { return code_.size(); }
    // Median seconds of each instruction over `repeat` replays (the whole program runs each time,
    // so caches are as warm as in a real replay).
    std::vector<double> profile(int repeat, bool defer = false) const;
    // Compulsory bytes each instruction reads and writes (every operand touched once; deferred
    // updates counted where a deferring replay makes them).
    std::vector<std::pair<int64_t, int64_t>> traffic() const;
    // Floating-point operations of each instruction (a multiply-add counts 2; elementwise 1).
    std::vector<int64_t> flops() const;
    // Bytes of distinct memory the program touches (the union of every operand's range).
    int64_t footprint() const;
    const std::vector<Instr>& instructions() const { return code_; }
    // Peephole pass run once after recording; never changes a result bit. Removes a copy whose
    // source is written by exactly one earlier instruction and read by nothing else: that
    // writer writes the destination instead (a leaf's first gradient lands in .grad directly).
    // `pinned` ranges (inputs, returned tensors, gradients, parameters) are never retargeted
    // away. Then fuses a linear_fwd (batch > 1) with the ReLU of its output when nothing else
    // reads the pre-activation, and a small-batch linear_bwd with the SGD update of its weight (and
    // bias) into linear_bwd_sgd when nothing in between touches them, and lets an adam or sgd right
    // after a clip_norm of exactly its gradients apply the clipping (fuse_clip). Returns the
    // number of instructions removed.
    // linear_bwd_sgd only (false otherwise): store dW lazily, i.e. only when materialize(index)
    // is called after a replay (gd.compile calls it when .grad is read); and that call.
    bool set_lazy(size_t index, bool lazy);
    bool materialize(size_t index) const;
    // Sets real option `slot` of instruction `index` (e.g. a new learning rate); false if none.
    bool set_real(size_t index, size_t slot, double value) {
        if (index >= code_.size() || slot >= code_[index].d.size()) return false;
        code_[index].d[slot] = value;
        return true;
    }
    // Points every operand on [from, from + bytes) at the same offset of `to` instead.
    void rebind(void* from, void* to, int64_t bytes);
    // The operand fields that point into [from, from + bytes), with their offsets there (for a
    // caller that repoints them per run: valid until instructions are added or removed).
    std::vector<std::pair<void**, int64_t>> pointers_into(const void* from, int64_t bytes);
    // Whether an instruction writes into [p, p + bytes), or a lazy one reads it (materialize()
    // reads it after the run).
    bool written_or_read_later(const void* p, int64_t bytes) const;
    // The memory every operand covers, as sorted disjoint [begin, end) ranges.
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges() const;
    int optimize(const std::vector<std::pair<void*, int64_t>>& pinned);

    // Deferred weight updates (small batches). A linear_bwd_sgd without dx or momentum buffer whose
    // weight W is touched by nothing after it, and first touched in the program by a linear_fwd
    // of the same batch (IN >= 2, one thread), may leave W's update pending at the end of a
    // run(defer = true): it keeps copies of dy and x, and the next run's linear_fwd applies the
    // update row block by row block as it reads W (linear_forward_sgd, linear_forward_sgd_batch
    // at batch > 1), so W streams from L2 once per step instead
    // of twice. Bitwise equal to updating at once. W is stale while an update is pending: the
    // caller must flush() before anything else reads or writes W (graddesc/_compile.py and
    // bind_replay.cpp do). plan_defer() finds such updates (once, after optimize) and returns
    // their number; deferred_weights() lists their W; pending() tells whether one is pending.
    int plan_defer();
    std::vector<void*> deferred_weights() const;
    bool pending() const;
    void flush() const;

   private:
    int fuse_sgd();
    int fuse_relu(const std::vector<std::pair<void*, int64_t>>& pinned);
    int fuse_clip();
    // f(field, offset) for every operand field pointing into [from, from + bytes)
    template <class F>
    void for_each_pointer_into(const void* from, int64_t bytes, const F& f);
    void step(const Instr& in, bool defer) const;  // one instruction, as run() does
    template <class T>
    void run_deferrable(const Instr& in, bool defer) const;

    struct Deferred {
        size_t fwd = 0, bwd = 0;
        // copies of dy and x (the float32 or the float64 pair, as the instruction's dtype)
        mutable std::vector<float> dy32, x32;
        mutable std::vector<double> dy64, x64;
        template <class T>
        T* dy() const {
            if constexpr (sizeof(T) == sizeof(float)) return dy32.data();
            else return dy64.data();
        }
        template <class T>
        T* x() const {
            if constexpr (sizeof(T) == sizeof(float)) return x32.data();
            else return x64.data();
        }
        mutable SgdHyper h{};
        mutable bool pending = false;
    };
    std::vector<Instr> code_;
    std::vector<Deferred> defer_;
};

// nn.utils.clip_grad_norm_ for eager calls and replays alike (one definition, so both run the
// same machine code): the joint norm of order norm_type (finite > 0, or +inf) of the n gradients
// grads[k] of sizes[k] elements (the kernel table's grad_norm: the same bits on every ISA and
// thread count); then, when clip_scales says so, every element times T(coef). The decision is
// taken here on each call's values, so a recorded step repeats the test, not the outcome it had
// while recording. With error_if_nonfinite a non-finite norm scales nothing (the caller raises);
// without `scale` nothing is scaled (a replay whose optimizer applies coef: Program::fuse_clip).
// Returns the norm.
template <class T>
double clip_grad_norm(T* const* grads, const int64_t* sizes, int64_t n, double norm_type,
                      double max_norm, bool error_if_nonfinite = false, bool scale = true);

// PyTorch's clip coefficient max_norm / (norm + 1e-6) clamped to 1: whether the gradients are
// scaled (coef < 1, or NaN: torch's clamp keeps a NaN, so a NaN norm makes every gradient NaN)
// and by what (rounded to the gradients' dtype by the caller).
inline bool clip_scales(double norm, double max_norm, double& coef) {
    coef = max_norm / (norm + 1e-6);
    return !(coef >= 1.0);
}

// Parses an op name as used by the Python recorder; throws std::invalid_argument.
Code code_from_name(const std::string& name);
const char* code_name(Code c);

}  // namespace gd

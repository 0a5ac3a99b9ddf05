// A recorded sequence of kernel calls on fixed buffers (gd.compile): replayed by one call from
// Python, with no tape, no allocation and the GIL released. Compiled once (not per ISA): each
// instruction calls the active ISA's kernel table, exactly as the eager bindings do, so a replay
// is bitwise equal to the eager step it was recorded from.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gd {

enum class Code : int {
    linear_fwd, linear_bwd, act_fwd, act_bwd, softmax_fwd, softmax_bwd, log_softmax_fwd,
    log_softmax_bwd, ce_fwd, ce_bwd, mse_fwd, mse_bwd, sum_all, sum_axis, gemm, scale,
    count_scale, copy, sgd, adam, linear_bwd_sgd
};

struct Instr {
    Code code;
    bool f64;                    // dtype: double (true) or float
    std::vector<void*> p;        // buffers, meaning per code (see program.cpp)
    std::vector<int64_t> i;      // sizes and integer options
    std::vector<double> d;       // real options
    std::vector<std::vector<void*>> lists;  // per-parameter pointer lists (optimizers)
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
    void run() const;
    size_t size() const { return code_.size(); }
    // Median seconds of each instruction over `repeat` replays (the whole program runs each time,
    // so caches are as warm as in a real replay).
    std::vector<double> profile(int repeat) const;
    // Compulsory bytes each instruction reads and writes (every operand touched once).
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
    // away. Then fuses a batch-1 linear_bwd with the SGD update of its weight (and bias) into
    // linear_bwd_sgd when nothing in between touches them. Returns the number of instructions
    // removed.
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
    int optimize(const std::vector<std::pair<void*, int64_t>>& pinned);

   private:
    int fuse_sgd();

   public:

   private:
    std::vector<Instr> code_;
};

// Parses an op name as used by the Python recorder; throws std::invalid_argument.
Code code_from_name(const std::string& name);
const char* code_name(Code c);

}  // namespace gd

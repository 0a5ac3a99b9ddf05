// A recorded sequence of kernel calls on fixed buffers (gd.compile): replayed by one call from
// Python, with no tape, no allocation and the GIL released. Compiled once (not per ISA): each
// instruction calls the active ISA's kernel table, exactly as the eager bindings do, so a replay
// is bitwise equal to the eager step it was recorded from.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gd {

enum class Code : int {
    linear_fwd, linear_bwd, act_fwd, act_bwd, softmax_fwd, softmax_bwd, log_softmax_fwd,
    log_softmax_bwd, ce_fwd, ce_bwd, mse_fwd, mse_bwd, sum_all, sum_axis, gemm, scale,
    count_scale, copy, sgd, adam
};

struct Instr {
    Code code;
    bool f64;                    // dtype: double (true) or float
    std::vector<void*> p;        // buffers, meaning per code (see program.cpp)
    std::vector<int64_t> i;      // sizes and integer options
    std::vector<double> d;       // real options
    std::vector<std::vector<void*>> lists;  // per-parameter pointer lists (optimizers)
};

class Program {
   public:
    void add(Instr in) { code_.push_back(std::move(in)); }
    void run() const;
    size_t size() const { return code_.size(); }

   private:
    std::vector<Instr> code_;
};

// Parses an op name as used by the Python recorder; throws std::invalid_argument.
Code code_from_name(const std::string& name);

}  // namespace gd

// Instruction kinds that a binding file defines and registers by itself. gd.compile records a
// call of such a kernel as one Code::call instruction whose i[0] is the kind's id; Program runs,
// analyses and counts it through the kind's functions. Adding a kernel this way touches no
// switch in program*.cpp and no branch in _compile*.py: its binding registers the kind and
// exports a `<name>_args` twin that lays out the instruction (see bind_index.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "program.hpp"

namespace gd {

struct InstrKind {
    const char* name;  // what Program.names() reports for the instruction
    // Runs the kernel on the instruction's buffers (its own ints start at i[1]). May throw
    // std::out_of_range / std::invalid_argument for data a replay must refuse (an index out of
    // range), before writing anything.
    void (*run)(const Instr& in);
    // Every buffer the kernel reads or writes, with its byte range (as operands() promises).
    void (*operands)(const Instr& in, std::vector<Operand>& ops);
    int64_t (*flops)(const Instr& in);
    // Whether a layout (pointer count, ints including i[0], real count) is one run() accepts:
    // Program.add checks it once, so run() may index the instruction blindly.
    bool (*valid)(size_t nptrs, const std::vector<int64_t>& ints, size_t nreals);
};

// Registers a kind (once per name; registering a name again returns the first id).
int64_t register_instr_kind(const InstrKind& kind);
// The kind of id; std::out_of_range for an id nothing registered.
const InstrKind& instr_kind(int64_t id);
// The id of the kind registered under `name`, or -1.
int64_t find_instr_kind(const std::string& name);

}  // namespace gd

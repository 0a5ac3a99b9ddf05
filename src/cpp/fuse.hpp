// Fusion of elementwise chains in a recorded program (gd.compile): a pass that finds runs of
// elementwise instructions (`ew`, `act_fwd`, `act_bwd`) over one iteration space and replaces
// each run by one `ew_fused` instruction, which walks the space in cache-sized blocks and, on each
// L1-sized tile of a block, runs every member's own row loop in program order (run_fused_chain,
// fuse_kernel.hpp: compiled per ISA in elementwise.cpp). Intermediates that nothing outside the
// run reads live in a per-thread scratch tile instead of memory. Every element goes through the
// same formula as unfused, so a fused replay is bitwise equal to the unfused one (and to eager).
// A chain may also take reductions over its innermost dim (an `ew` sum_to, a `reduce` sum or
// mean) whose rows fit one tile: each row is summed in the unfused kernel's order from the tile
// that earlier members just produced, so e.g. a product feeding a sum never goes to memory.
// This file is compiled once, like program.cpp: run_fused calls the active ISA's runner.
//
//   ew_fused  lists[m] = member m's pointers [y, x0, x1, x2] (null: a scalar, an absent operand
//             or a scratch block, see src)
//             i[M, nd, shape (nd), split dim, rows per block, scratch blocks, then per member:
//               kind (0 ew, 1 act_fwd, 2 act_bwd, 3 row reduction), op (Ew or Act id; a
//               reduction: 0 sum_to, 1 reduce sum, 2 reduce mean), src (4: -1 the pointer,
//               s >= 0 scratch block s), strides (4 x nd, elements, over the merged shape)]
//             d[3 per member]: an ew member's scalars s0..s2, an act member's alpha in d[0]
//   The shape is the members' common iteration shape after dropping size-1 dims and merging
//   dims that every operand steps through as one; a block is a fixed index of the dims before
//   the split dim, a range of rows of it and the whole of the dims after it.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "program.hpp"

namespace gd {

// Whether the pass runs: the environment variable GRADDESC_FUSE is unset or not "0" (read at
// each gd.compile recording; GRADDESC_FUSE=0 records unfused programs, for tests and
// benchmarks).
bool fusion_enabled();

// The pass (Program::optimize runs it last). `pinned` ranges (inputs, outputs, gradients,
// parameters) are always written. Returns the number of instructions removed.
int fuse_elementwise(std::vector<Instr>& code, const std::vector<std::pair<void*, int64_t>>& pinned);

// The memory operands of an ew_fused instruction (scratch blocks are not memory), each buffer
// once with the union of its read/write flags.
void fused_operands(const Instr& in, std::vector<Operand>& ops);

// Elementwise operations of an ew_fused instruction (one per member per element).
int64_t fused_flops(const Instr& in);

template <class T>
void run_fused(const Instr& in);

}  // namespace gd

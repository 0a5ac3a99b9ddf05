// The runner of gd.compile's ew_fused instruction (fuse.hpp), compiled once per instruction set
// in elementwise.cpp so that every member's formula is inlined into a loop of the ISA's vectors.
// fuse.cpp (compiled once) calls the copy of the active ISA.
//   i, d: the instruction's ints and reals (layout in fuse.hpp); lists: its M pointer lists.
#pragma once
#include <cstdint>
#include <vector>

namespace gd {
#define GD_DECLARE_FUSED_CHAIN(ns)                                                   \
    namespace ns {                                                                   \
    template <class T>                                                               \
    void run_fused_chain(const int64_t* i, const double* d, const std::vector<void*>* lists); \
    }
GD_DECLARE_FUSED_CHAIN(isa_baseline)
GD_DECLARE_FUSED_CHAIN(isa_avx2)
GD_DECLARE_FUSED_CHAIN(isa_avx512)
GD_DECLARE_FUSED_CHAIN(isa_neon)
#undef GD_DECLARE_FUSED_CHAIN
}  // namespace gd

// Helpers shared by the source files that read and rewrite a Program (program_analysis.cpp,
// program_passes.cpp); not part of Program's interface.
#pragma once
#include <cstdint>

#include "program.hpp"

namespace gd {
namespace program_detail {

// Whether [a, a + na) and [b, b + nb) share a byte.
inline bool overlaps(const void* a, int64_t na, const void* b, int64_t nb) {
    const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
    return na > 0 && nb > 0 && x < y + uintptr_t(nb) && y < x + uintptr_t(na);
}

// Does instruction `in` read (want_read) or write (want_write) memory overlapping [p, p + n)?
// (defined in program_analysis.cpp)
bool touches(const Instr& in, const void* p, int64_t n, bool want_read, bool want_write);

}  // namespace program_detail
}  // namespace gd

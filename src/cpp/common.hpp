// Shared by every kernel translation unit. Kernel sources are compiled once per instruction set
// (CMake defines GD_ISA = baseline | avx2 | avx512), each copy in its own namespace gd::isa_<GD_ISA>,
// so the three copies link side by side and dispatch.cpp picks one at import.
#pragma once
#include <cstdint>

#define GD_CONCAT2(a, b) a##b
#define GD_CONCAT(a, b) GD_CONCAT2(a, b)
#define GD_STR2(a) #a
#define GD_STR(a) GD_STR2(a)

#ifdef GD_ISA
#define GD_NS GD_CONCAT(isa_, GD_ISA)
#endif

#if defined(__GNUC__)
#define GD_RESTRICT __restrict__
#else
#define GD_RESTRICT
#endif

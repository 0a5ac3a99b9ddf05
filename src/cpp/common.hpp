// Shared by every kernel translation unit. Kernel sources are compiled once per instruction set
// (CMake defines GD_ISA = baseline | avx2 | avx512), each copy in its own namespace gd::isa_<GD_ISA>,
// so the three copies link side by side and dispatch.cpp picks one at import.
#pragma once
#include <cmath>
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

namespace gd {
// a * b + c, written out where a kernel wants a fused multiply-add: one rounding where the target
// has an FMA instruction (__FP_FAST_FMA: x86-64 with -mfma, aarch64, ...), else a multiply then an
// add (a software fma would be a library call per element). Every kernel source is compiled with
// -ffp-contract=off, so this is the only way a multiply and an add fuse, and the bits do not
// depend on the compiler's choices.
#if defined(__FP_FAST_FMA) && defined(__FP_FAST_FMAF)
#define GD_FAST_FMA 1
#else
#define GD_FAST_FMA 0
#endif
template <class T>
inline T madd(T a, T b, T c) {
#if GD_FAST_FMA
    return std::fma(a, b, c);
#else
    return a * b + c;
#endif
}
}  // namespace gd

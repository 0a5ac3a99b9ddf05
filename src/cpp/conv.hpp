// Convolution and pooling kernels (NCHW, PyTorch's layouts). Compiled once per ISA like the other
// kernel sources; their own small table (ConvKernels below) so the shared KernelTable is untouched.
// Shape legend: N batch, C input channels, H x W input plane, OC output channels, G groups
// (C/G input and OC/G output channels per group), KH x KW kernel, OH x OW output plane.
#pragma once
#include <vector>

#include "common.hpp"

namespace gd {

struct ConvShape {
    int64_t N, C, H, W;      // input x (N, C, H, W)
    int64_t OC, KH, KW, G;   // weight (OC, C/G, KH, KW)
    int64_t SH, SW;          // stride
    int64_t PH, PW;          // zeros before row 0 / column 0 (the far side follows from OH, OW)
    int64_t DH, DW;          // dilation
    int64_t OH, OW;          // output plane (y (N, OC, OH, OW))
};

// A pooling window per output row and column: input rows hs[oh] + i*DH for i < hn[oh] (all in
// range), columns ws[ow] + j*DW for j < wn[ow]. P = N*C planes of H x W -> OH x OW.
struct PoolShape {
    int64_t P, H, W, OH, OW, DH, DW;
    const int64_t *hs, *hn, *ws, *wn;
};

template <class T>
struct ConvTable {
    // x, w, b (OC) or null -> y; relu: y = max(y, 0) as the GEMM's epilogue
    void (*conv2d_forward)(T* y, const T* x, const T* w, const T* b, const ConvShape& s, bool relu);
    // dy -> dx, dw, db (each skipped when null)
    void (*conv2d_backward)(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w,
                            const ConvShape& s);
    // x -> y and idx (flat index ih * W + iw of each maximum in its plane; NaN wins)
    void (*maxpool2d_forward)(T* y, int64_t* idx, const T* x, const PoolShape& s);
    void (*maxpool2d_backward)(T* dx, const T* dy, const int64_t* idx, const PoolShape& s);
    // y = (sum over the window) / div[oh * OW + ow]
    void (*avgpool2d_forward)(T* y, const T* x, const int64_t* div, const PoolShape& s);
    void (*avgpool2d_backward)(T* dx, const T* dy, const int64_t* div, const PoolShape& s);
    // the same convolution as plain loops, for tests
    void (*conv2d_forward_naive)(T* y, const T* x, const T* w, const T* b, const ConvShape& s);
};

struct ConvKernels {
    const char* isa;
    ConvTable<float> f32;
    ConvTable<double> f64;
};

// gd.compile's one instruction for this family ("conv", program.cpp), compiled once in _core
// (bind_conv.cpp). i[0] is the kind; the rest of i and the pointers p, per kind:
//   0 conv forward   i: kConvInts shape fields, relu      p: y, x, w, b
//   1 conv backward  i: kConvInts shape fields            p: dx, dw, db, dy, x, w (null: skipped)
//   2 max pool fwd   i: P H W OH OW DH DW, hs hn (OH each), ws wn (OW each)     p: y, idx, x
//   3 max pool bwd   i: as 2                                                    p: dx, dy, idx
//   4 avg pool fwd   i: as 2, then div (OH * OW)                                p: y, x
//   5 avg pool bwd   i: as 4                                                    p: dx, dy
enum class ConvKind : int64_t { fwd = 0, bwd, max_fwd, max_bwd, avg_fwd, avg_bwd };
constexpr int64_t kConvInts = 16;  // the fields of ConvShape, in declaration order
struct ConvOperand {
    int slot;
    int64_t bytes;
    bool read, write;
};
// Whether (p, i) is a well-formed instruction (checked once, when it is added).
bool conv_instr_valid(size_t nptrs, const std::vector<int64_t>& i);
void conv_instr_run(const std::vector<void*>& p, const std::vector<int64_t>& i, bool f64);
// every buffer it reads or writes, with its byte count (elem: 4 or 8)
std::vector<ConvOperand> conv_instr_operands(const std::vector<void*>& p,
                                             const std::vector<int64_t>& i, int64_t elem);
int64_t conv_instr_flops(const std::vector<void*>& p, const std::vector<int64_t>& i);
// Whether i is a conv forward without a ReLU whose output y has `elems` elements: then a ReLU
// that follows may be fused into it (Program::fuse_relu sets its relu field, i[1 + kConvInts]).
bool conv_fwd_relu_fusable(const std::vector<int64_t>& i, int64_t elems);

const ConvKernels& conv_kernels_baseline();
const ConvKernels& conv_kernels_avx2();
const ConvKernels& conv_kernels_avx512();
const ConvKernels& conv_kernels_neon();

}  // namespace gd

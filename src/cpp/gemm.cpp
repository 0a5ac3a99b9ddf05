// GEMM: C (M, N) = alpha * op(A) (M, K) op(B) (K, N) + beta * C, row-major with leading dims.
//
// The general path is BLIS-style (gemm/kernel.hpp has the micro-kernel and the packing):
//   for each K block (kc <= 512 floats deep, K split evenly; fixed by the shape alone):
//     for each N block (nb columns of op(B), kc x nb <= 256 or 512 KiB, split evenly, packed into
//     NR-wide panels):
//       for each A micro-panel (MR rows, stays in L1) x each B panel (streamed from L2):
//         the micro-kernel: an MR x NR tile of C in registers, one FMA per k and vector.
// What is packed, and when (measured on the training-step shapes, see blocking_for):
//   op(A) = A: read in place, MR rows each front to back (a transposing pack cost more than it
//     saved), unless its rows lie a multiple of 4 KiB apart (then packed by transposes ahead);
//   op(A) = A^T and op(B) = B: plain copies. For a small op(A) (M x kc <= 512 KiB, which stays in
//     L2 with its B and C blocks) each panel is copied on the fly by its first kernel call, which
//     reads it in place anyway and stores what it loads (hidden behind the FMAs; a few edge
//     panels get a pass of their own); for a large one by passes ahead (reading large sources in
//     place stalls the kernel);
//   op(B) = B^T: transposed in L x L register blocks by a pass ahead.
// With several threads, C is cut into one slab per thread (whole panels, along N or M) and each
// thread runs the loop nest above on its slab with its own buffers (gemm_blocked).
// Tiles (rows MR x columns NR): AVX-512 14 x 32 floats / 14 x 16 doubles (28 accumulators of
// 32 zmm: enough independent FMA chains for 2 ports x 4 cycles latency, plus 2 rows of B and a
// broadcast of A); AVX2 6 x 16 / 6 x 8 (12 of 16 ymm); portable 6 x 8 / 6 x 4.
//
// Shapes that would waste the packing take other paths: K = 1 is an outer product; a short K
// (<= 32) with op(A) = A^T and op(B) = B (a weight gradient at a small batch) reads both in place
// in tiles of 8 (or 6) rows by 2 vectors (gemm/smallk.hpp, whose arithmetic optim.cpp shares to
// update a weight from its gradient tile by tile); M = 1 and
// N = 1 are matrix-vector products that read the matrix once (dot products when its rows run
// along K, else row sweeps into an L1 accumulator); a short M (<= 42 rows on AVX-512, 24 on the
// others) with op(B) = B packs nothing: the micro-kernel reads A's rows and B's rows in place, in
// K blocks of 96 (packing B would cost about as much as the product). The first K block applies
// beta, later ones add. A short M with op(B) = B^T (M <= 48, or 16 on 16-register ISAs, and
// K >= 16 M: a Linear forward at a small batch) packs nothing either: each C element is the dot
// product of a row of A and a row of B (gemm_dots, gemm/dots.hpp), computed in tiles of rows of
// A by rows of B: 8 x 3 (4 x 2 on 16-register ISAs), or 2 x 8 (2 x 4) when A has 1 or 2 rows,
// which loads fewer vectors per FMA there; every pair keeps its own accumulators, so the tile
// shape changes no bit.
//
// Determinism: every C element is a chain of FMAs over k in increasing order inside each K block,
// the blocks added in order (on the row-dot path: one chain per lane, then a fixed reduction);
// the K blocking and the choice of path depend only on the problem size, never on the thread
// count or the operands' addresses, and threads split M or N only (what is packed, how N is
// blocked and which tile an element lies in do not change its arithmetic). So results are
// bitwise identical for any number of threads.
#include "gemm.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "gemm/dots.hpp"
#include "gemm/kernel.hpp"
#include "gemm/smallk.hpp"
#include "parallel.hpp"

namespace gd {
namespace GD_NS {
namespace {

using gemm_detail::kNR;
using gemm_detail::Simd;

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Below this many flops a GEMM stays on one thread (parallel.hpp).
constexpr int64_t kGemmParallelFlops = kMatrixParallelFlops;

// K block: an A micro-panel (kc x MR, packed or read in place) stays in L1 (512 x 16 floats =
// 32 KiB of 48). The blocks split K evenly (K = 784 -> 2 x 392), so few passes over C; fixed by K
// alone.
template <class T>
constexpr int64_t kKcMax = 2048 / static_cast<int64_t>(sizeof(T));
// K block of the unpacked path: its A rows (<= 42 x 96 floats) and one B strip (96 x 32) share L1.
template <class T>
constexpr int64_t kKcDirect = 384 / static_cast<int64_t>(sizeof(T));
// op(A) K blocks of up to this many bytes (M x kc values) count as small: they stay in L2 beside a
// B block and a block of C. Then B blocks are small too (256 KiB, so the three fit in L2), and the
// copy packs run on the fly. A larger op(A) streams from L3 once per B block, so its B blocks are
// larger (fewer passes over A), and its packs run as passes ahead (reading a large source in
// place, its rows often 4 KiB apart in the same L1 set, starves the kernel).
constexpr int64_t kSmallABytes = int64_t(512) << 10;
constexpr int64_t kBlockBBytesSmall = int64_t(256) << 10;
constexpr int64_t kBlockBBytesLarge = int64_t(512) << 10;
// Rows of op(A) packed at a time (then B is packed again for the next slab of rows): bounds the
// packed A buffer (3584 x 512 floats: 8 MiB) for tall products.
template <class T>
constexpr int64_t kPackRowsMax = 256 * Simd<T>::MR;
// Up to this many rows (3 micro-panels, at least 24 rows), op(B) = B is read in place rather
// than packed: packing costs K * N copies, which only M / MR uses of each B panel would repay.
template <class T>
constexpr int64_t kDirectMaxM = std::max<int64_t>(3 * Simd<T>::MR, 24);

// A grow-only, 64-byte aligned scratch buffer; one per thread (thread_local), reused by calls.
template <class T>
class Scratch {
   public:
    Scratch() = default;
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    ~Scratch() { std::free(ptr_); }
    T* get(int64_t n) {
        const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
        if (bytes > cap_) {
            std::free(ptr_);
            ptr_ = static_cast<T*>(std::aligned_alloc(64, bytes));
            if (ptr_ == nullptr) {
                cap_ = 0;
                throw std::bad_alloc();
            }
            cap_ = bytes;
        }
        return ptr_;
    }

   private:
    T* ptr_ = nullptr;
    size_t cap_ = 0;
};

// The calling thread's scratch buffers: slot 0 also serves the gathered vectors of the
// matrix-vector paths; a parallel product uses slots 2t and 2t + 1 for thread t's packed A and B.
// All are sized by the calling thread before a parallel region starts (an allocation failure is
// a C++ exception on that thread, never inside the region) and kept for the next call.
template <class T>
T* scratch(size_t slot, int64_t n) {
    thread_local std::vector<std::unique_ptr<Scratch<T>>> pool;
    while (pool.size() <= slot) pool.push_back(std::make_unique<Scratch<T>>());
    return pool[slot]->get(n);
}

// The thread count a GEMM of this many flops may use.
int64_t threads_for(int64_t flops) {
    return flops >= kGemmParallelFlops ? std::max(1, num_threads()) : 1;
}

// C (M, N) = beta * C; beta == 0 writes zeros without reading C.
template <class T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
    if (beta == T(1)) return;
    for (int64_t i = 0; i < M; ++i) {
        T* c = C + i * ldc;
        if (beta == T(0)) {
            for (int64_t j = 0; j < N; ++j) c[j] = T(0);
        } else {
            for (int64_t j = 0; j < N; ++j) c[j] *= beta;
        }
    }
}

// y[j * incy] = alpha * t + beta * y[j * incy] (beta == 0: y is not read)
template <class T>
inline void store_scalar(T* y, T t, T alpha, T beta) {
    *y = beta == T(0) ? alpha * t : beta * *y + alpha * t;
}

// x (K), W (n, K) rows ldw apart -> y[j * incy] = alpha * dot(W[j], x) + beta * y[j * incy]
// (gemm/dots.hpp has the arithmetic).
template <class T, int ROWS>
void dots_rows(int64_t K, const T* GD_RESTRICT x, const T* GD_RESTRICT W, int64_t ldw, T alpha,
               T beta, T* y, int64_t incy) {
    gemm_detail::dots_rows<T, ROWS>(
        K, x, gemm_detail::PlainRows<T>{W, ldw},
        [&](int r, T sum) { store_scalar(y + r * incy, sum, alpha, beta); });
}

// Rows [j0, j1) of W, kDotRows at a time, then one by one.
template <class T>
void dots_range(int64_t j0, int64_t j1, int64_t K, const T* x, const T* W, int64_t ldw, T alpha,
                T beta, T* y, int64_t incy) {
    constexpr int R = gemm_detail::kDotRows<T>;
    int64_t j = j0;
    for (; j + R <= j1; j += R)
        dots_rows<T, R>(K, x, W + j * ldw, ldw, alpha, beta, y + j * incy, incy);
    for (; j < j1; ++j) dots_rows<T, 1>(K, x, W + j * ldw, ldw, alpha, beta, y + j * incy, incy);
}

template <class T>
void gemv_dots(int64_t n, int64_t K, const T* x, const T* W, int64_t ldw, T alpha, T beta, T* y,
               int64_t incy) {
    constexpr int64_t chunk = 64;  // rows per parallel task (fixed: independent of threads)
    const int64_t nt = threads_for(2 * n * K);
    parallel_chunks(n, chunk, nt > 1 ? 2 * n * K : 0, [&](int64_t j0, int64_t j1) {
        dots_range(j0, j1, K, x, W, ldw, alpha, beta, y, incy);
    });
}

// x (K), W (K, n) rows ldw apart -> y[j * incy] = alpha * sum_k x[k] W[k, j] + beta * y[j * incy].
// W is read once, row after row (kRows rows at a time, each front to back): the running sums
// of a column range live in an L1 buffer that each group of rows updates with kRows chained FMAs.
template <class T>
void gemv_axpy(int64_t n, int64_t K, const T* x, const T* W, int64_t ldw, T alpha, T beta, T* y,
               int64_t incy) {
    using V = Simd<T>;
    using reg = typename V::reg;
    constexpr int L = V::L;
    constexpr int kRows = 8;
    constexpr int64_t kCols = 2048 / static_cast<int64_t>(sizeof(T));  // 8 KiB of running sums
    const int64_t nt = threads_for(2 * n * K);
    const int64_t chunk = nt > 1 ? ceil_div(ceil_div(n, nt), L) * L : n;
    parallel_chunks(n, chunk, nt > 1 ? 2 * n * K : 0, [&](int64_t c0, int64_t c1) {
        alignas(64) T acc[kCols];
        for (int64_t j0 = c0; j0 < c1; j0 += kCols) {
            const int64_t w = std::min(kCols, c1 - j0);
            const int64_t wv = w / L * L;  // full vectors; the tail is masked
            const auto mt = V::first(w - wv);
            for (int64_t j = 0; j < w; ++j) acc[j] = T(0);
            int64_t k = 0;
            for (; k + kRows <= K; k += kRows) {
                reg xk[kRows];
                const T* row[kRows];
                for (int r = 0; r < kRows; ++r) {
                    xk[r] = V::set1(x[k + r]);
                    row[r] = W + (k + r) * ldw + j0;
                }
                for (int64_t j = 0; j < wv; j += L) {
                    reg s = V::load(acc + j);
#pragma GCC unroll 8
                    for (int r = 0; r < kRows; ++r) s = V::fma(xk[r], V::load(row[r] + j), s);
                    V::store(acc + j, s);
                }
                if (wv < w) {
                    reg s = V::load(acc + wv, mt);
                    for (int r = 0; r < kRows; ++r) s = V::fma(xk[r], V::load(row[r] + wv, mt), s);
                    V::store(acc + wv, s, mt);
                }
            }
            for (; k < K; ++k) {
                const reg xk = V::set1(x[k]);
                const T* row = W + k * ldw + j0;
                for (int64_t j = 0; j < wv; j += L)
                    V::store(acc + j, V::fma(xk, V::load(row + j), V::load(acc + j)));
                if (wv < w) V::store(acc + wv, V::fma(xk, V::load(row + wv, mt), V::load(acc + wv, mt)), mt);
            }
            for (int64_t j = 0; j < w; ++j) store_scalar(y + (j0 + j) * incy, acc[j], alpha, beta);
        }
    });
}

// K = 1: C[i, j] = alpha * a[i] b[j] + beta * C[i, j], a = op(A)(:, 0), b = op(B)(0, :).
template <class T>
void outer(bool ta, bool tb, int64_t M, int64_t N, T alpha, const T* A, int64_t lda, const T* B,
           int64_t ldb, T beta, T* C, int64_t ldc) {
    using V = Simd<T>;
    constexpr int L = V::L;
    const T* b = B;
    if (tb && N > 1) {  // op(B)(0, j) = B[j, 0]: gather once
        T* g = scratch<T>(0, N);
        for (int64_t j = 0; j < N; ++j) g[j] = B[j * ldb];
        b = g;
    }
    const int64_t nt = threads_for(2 * M * N);
    parallel_chunks(M, 16, nt > 1 ? 2 * M * N : 0, [&](int64_t i0, int64_t i1) {
        const typename V::reg va = V::set1(alpha), vb = V::set1(beta);
        for (int64_t i = i0; i < i1; ++i) {
            const typename V::reg ai = V::set1(ta ? A[i] : A[i * lda]);
            T* c = C + i * ldc;
            for (int64_t j = 0; j < N; j += L) {
                const auto m = V::first(N - j);
                const auto t = V::mul(va, V::mul(ai, V::load(b + j, m)));
                V::store(c + j, beta == T(0) ? t : V::fma(vb, V::load(c + j, m), t), m);
            }
        }
    });
}

// C = alpha * acc + beta * C for one vector of smallk_rows' sums, as micro_kernel stores them
template <class T>
struct SmallKStore {
    using V = Simd<T>;
    T* C;
    int64_t ldc;
    typename V::reg va, vb;
    bool beta0;
    void operator()(int64_t i, int64_t j, typename V::reg acc) const {
        T* c = C + i * ldc + j;
        const auto t = V::mul(va, acc);
        V::store(c, beta0 ? t : V::fma(vb, V::load(c), t));
    }
    void operator()(int64_t i, int64_t j, typename V::reg acc, typename V::mask m) const {
        T* c = C + i * ldc + j;
        const auto t = V::mul(va, acc);
        V::store(c, beta0 ? t : V::fma(vb, V::load(c, m), t), m);
    }
};

// 2 <= K <= kSmallK, op(A) = A^T, op(B) = B: gemm/smallk.hpp, nothing packed; threads split the
// rows of C (whole tiles). The bits are the blocked path's (one K block, one FMA chain per
// element), so taking this path changes no result. Packing cost more than the product here: the
// MLP's batch-2 weight gradient 256 x 784 x 2 packed 1.6 MB to multiply 0.8 M flops.
template <class T>
void gemm_smallk(int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T beta, T* C, int64_t ldc) {
    using V = Simd<T>;
    constexpr int64_t R = gemm_detail::kSmallKRows<T>;
    const int64_t flops = 2 * M * N * K;
    const int64_t nt = threads_for(flops);
    const int64_t chunk = nt > 1 ? ceil_div(ceil_div(M, nt), R) * R : M;
    const SmallKStore<T> store{C, ldc, V::set1(alpha), V::set1(beta), beta == T(0)};
    parallel_chunks(M, chunk, nt > 1 ? flops : 0, [&](int64_t i0, int64_t i1) {
        gemm_detail::smallk_rows<T>(i0, i1, K, A, lda, B, ldb, N, store);
    });
}

// C[i, j] = max(C[i, j], 0) as Relu::forward writes it (NaN stays NaN, -0 becomes +0), for an
// m x n block.
template <class T>
void relu_block(T* C, int64_t m, int64_t n, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i) {
        T* c = C + i * ldc;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) c[j] = c[j] <= T(0) ? T(0) : c[j];
    }
}

// Short M with op(A) = A and op(B) = B^T (a Linear forward at a small batch: x (M, K) times
// W (N, K) transposed): each C element is the dot product of two rows contiguous along K, so
// nothing is packed. Tiles of kTileXR rows of A (in L1) by kTileWR rows of B (streamed from L2),
// gemm/dots.hpp; threads split the rows of B. Packing W^T took 30% of 32 x 256 x 784 (the MLP's
// batch-32 first layer) on the blocked path.
// Taken when K >= 16 M (each C element costs K / L FMAs against a fixed reduction, while
// packing costs the blocked path about 1 / M of the product), M <= 48 (16 with 4 x 2 tiles) and
// min(M, kTileXR) rows of A fit in 32 KiB (L1, beside the streamed rows of B): the shapes where
// this path measured faster than the blocked one, on AVX-512 and AVX2 (figures in
// docs/performance.md, "Measurements behind the kernels"). Counting the rows actually present
// lets a batch below kTileXR keep longer rows on this path (float64 at batch 2: the MLP's first
// layer, 784 values a row, which otherwise packed W^T on every call).
// On the 32-register ISAs a batch of at most one tile (M <= 8) may have rows of up to 64 KiB in
// all: read from L2 they still beat packing W^T by 1.4-2x (float64 6..8 x 256 x 784, the MLP's
// first layer, 37-50 KiB of x; up to 8 x 1000 float64 and 8 x 2000 float32; figures in
// docs/performance-smallbatch.md); larger batches keep the L1 limit (not measured).
template <class T>
bool use_dots(int64_t M, int64_t K) {
    constexpr int64_t XR = gemm_detail::kTileXR<T>;
    constexpr int64_t max_m = XR >= 8 ? 48 : 16;
    const int64_t rows = std::min<int64_t>(M, XR);
    const int64_t l1_bytes = (XR >= 8 && M <= XR ? int64_t(64) : int64_t(32)) << 10;
    const int64_t max_k = l1_bytes / (rows * int64_t(sizeof(T)));
    return M <= max_m && K >= 16 * M && K <= max_k;
}

template <class T>
using TileFn = void (*)(int64_t, const T*, int64_t, const T*, int64_t, T (*)[8]);

template <class T, int WR, size_t... I>
constexpr std::array<TileFn<T>, sizeof...(I)> tile_fns(std::index_sequence<I...>) {
    return {{&gemm_detail::dots_tile<T, static_cast<int>(I) + 1, WR>...}};
}

// The dots_tile for a tile of xr rows of A and wr rows of B (1 <= xr <= kTileXR, 1 <= wr <=
// kTileWR; or xr <= kWideXR and wr = kWideWR).
template <class T>
TileFn<T> tile_fn(int64_t xr, int64_t wr) {
    constexpr int XR = gemm_detail::kTileXR<T>;
    constexpr auto seq = std::make_index_sequence<XR>{};
    static_assert(gemm_detail::kTileWR<T> <= 3, "three tables");
    static constexpr std::array<TileFn<T>, XR> fns[3] = {
        tile_fns<T, 1>(seq), tile_fns<T, 2>(seq),
        tile_fns<T, std::min(3, gemm_detail::kTileWR<T>)>(seq)};
    static constexpr std::array<TileFn<T>, gemm_detail::kWideXR<T>> wide =
        tile_fns<T, gemm_detail::kWideWR<T>>(std::make_index_sequence<gemm_detail::kWideXR<T>>{});
    if (wr > gemm_detail::kTileWR<T>) return wide[static_cast<size_t>(xr - 1)];
    return fns[wr - 1][static_cast<size_t>(xr - 1)];
}

// The rows of B that the next tile takes, from j (of j1): a wide tile where the rows of A are
// few and enough rows of B are left, else up to kTileWR.
template <class T>
int64_t tile_wr(int64_t xr, int64_t j, int64_t j1) {
    constexpr int64_t WW = gemm_detail::kWideWR<T>;
    if (xr <= gemm_detail::kWideXR<T> && j1 - j >= WW) return WW;
    return std::min<int64_t>(gemm_detail::kTileWR<T>, j1 - j);
}

// sums[c][r] of a tile: as many columns as the widest tile
template <class T>
constexpr int64_t kTileCols = std::max<int64_t>(gemm_detail::kTileWR<T>, gemm_detail::kWideWR<T>);

template <class T>
void gemm_dots(int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
               int64_t ldb, T beta, T* C, int64_t ldc, bool relu) {
    constexpr int64_t XR = gemm_detail::kTileXR<T>, WR = gemm_detail::kTileWR<T>;
    constexpr int64_t kLine = 64 / int64_t(sizeof(T));
    const int64_t flops = 2 * M * N * K;
    const int64_t nt = threads_for(flops);
    const int64_t chunk = nt > 1 ? ceil_div(ceil_div(N, nt), WR) * WR : N;
    const int64_t nchunks = ceil_div(N, chunk);
    // A's rows are 8 of every 11 loads: on rows off the 64-byte grid (NumPy aligns to 16 bytes)
    // each would span two cache lines, which loses most of this path's gain. Then each task
    // copies every kTileXR rows of A onto the grid, into its own buffer, right before it uses
    // them (in L1; a copy shared by the threads measured slower; figures in
    // docs/performance.md, "Measurements behind the kernels").
    // (task t's buffer: XR rows of ld values at bufs + t XR ld, whole cache lines apart)
    const bool copy = reinterpret_cast<uintptr_t>(A) % 64 != 0 ||
                      (lda * int64_t(sizeof(T))) % 64 != 0;
    const int64_t ld = copy ? ceil_div(K, kLine) * kLine : lda;
    T* const bufs = copy ? scratch<T>(0, nchunks * XR * ld) : nullptr;
    parallel_chunks(N, chunk, nt > 1 ? flops : 0, [&](int64_t j0, int64_t j1) {
        alignas(64) T sums[kTileCols<T>][8];
        for (int64_t i0 = 0; i0 < M; i0 += XR) {
            const int64_t xr = std::min(XR, M - i0);
            const T* a = A + i0 * lda;
            if (copy) {
                T* buf = bufs + j0 / chunk * XR * ld;
                for (int64_t r = 0; r < xr; ++r)
                    std::copy(a + r * lda, a + r * lda + K, buf + r * ld);
                a = buf;
            }
            for (int64_t j = j0, wr = 0; j < j1; j += wr) {
                wr = tile_wr<T>(xr, j, j1);
                tile_fn<T>(xr, wr)(K, a, ld, B + j * ldb, ldb, sums);
                T* c = C + i0 * ldc + j;
                for (int64_t r = 0; r < xr; ++r)
                    for (int64_t q = 0; q < wr; ++q)
                        store_scalar(c + r * ldc + q, sums[q][r], alpha, beta);
                if (relu) relu_block(c, xr, wr, ldc);
            }
        }
    });
}

// The blocking of one product: K blocks kc_max deep, N blocks at most nb_max wide, and what is
// packed how.
template <class T>
struct Blocking {
    bool direct;      // short M and op(B) = B: nothing is packed
    bool a_packed;    // op(A) is packed (else op(A) = A is read in place, row by row)
    bool on_the_fly;  // copy packs (op(A) = A^T, op(B) = B) happen in the panel's first kernel call
    int64_t kc_max, nb_max;
    // values of packed A and of packed B for a slab of m rows and n columns
    int64_t a_size(int64_t m) const {
        return a_packed ? ceil_div(std::min(m, kPackRowsMax<T>), Simd<T>::MR) * kc_max *
                              gemm_detail::kMRP<T>
                        : 0;
    }
    int64_t b_size(int64_t n) const {
        return direct ? 0 : kc_max * ceil_div(std::min(n, nb_max), kNR<T>) * kNR<T>;
    }
};

template <class T>
Blocking<T> blocking_for(bool ta, bool tb, int64_t M, int64_t K, int64_t lda) {
    Blocking<T> b{};
    b.direct = !tb && M <= kDirectMaxM<T>;
    // op(A) = A is read in place (MR rows, each front to back: cheaper than a transposing pack)
    // unless its rows lie a multiple of 4 KiB apart: then they all fall in one L1 set (12 ways)
    // and evict each other (1024^3: 5% slower in place).
    b.a_packed = !b.direct && (ta || (lda * int64_t(sizeof(T))) % 4096 == 0);
    const int64_t nkb = ceil_div(K, b.direct ? kKcDirect<T> : kKcMax<T>);
    b.kc_max = ceil_div(K, nkb);
    const int64_t a_bytes = std::min(M, kPackRowsMax<T>) * b.kc_max * int64_t(sizeof(T));
    b.on_the_fly = a_bytes <= kSmallABytes;
    const int64_t b_bytes = b.on_the_fly ? kBlockBBytesSmall : kBlockBBytesLarge;
    b.nb_max = b.direct ? std::numeric_limits<int64_t>::max()
                        : std::max<int64_t>(kNR<T>, b_bytes / (b.kc_max * int64_t(sizeof(T))) /
                                                        kNR<T> * kNR<T>);
    return b;
}

// One thread's share of the blocked product (or all of it on one thread), see the file comment;
// apack and bpack hold at least bk.a_size(M) and bk.b_size(N) values.
template <class T>
void gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                 int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc,
                 const Blocking<T>& bk, T* apack, T* bpack) {
    constexpr int64_t MR = Simd<T>::MR, MRP = gemm_detail::kMRP<T>, NR = kNR<T>;
    const bool direct = bk.direct;
    if (bk.a_packed && M > kPackRowsMax<T>) {  // one slab of rows at a time
        for (int64_t i0 = 0; i0 < M; i0 += kPackRowsMax<T>)
            gemm_serial(ta, tb, std::min(kPackRowsMax<T>, M - i0), N, K, alpha,
                        ta ? A + i0 : A + i0 * lda, lda, B, ldb, beta, C + i0 * ldc, ldc, bk,
                        apack, bpack);
        return;
    }
    const int64_t kc_max = bk.kc_max;
    // N blocks of whole panels, as even as possible (784 = 224 + 224 + 224 + 112, not
    // 3 x 256 + 16): the blocking of N does not change the arithmetic, only K's does.
    const int64_t nblocks = ceil_div(N, std::min(N, bk.nb_max));
    const int64_t nb_max = ceil_div(ceil_div(N, NR), nblocks) * NR;
    const int64_t mpanels = ceil_div(M, MR);
    // The unpacked path deals its rows out evenly (32 = 11 + 11 + 10, not 14 + 14 + 4), so every
    // tile keeps enough independent FMA chains; packed panels are MR rows (the last one fewer).
    const int64_t mr = direct ? ceil_div(M, mpanels) : MR;

    for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
        const int64_t kc = std::min(kc_max, K - k0);
        const T beta_k = k0 == 0 ? beta : T(1);  // later K blocks add to what the first wrote
        for (int64_t j0 = 0; j0 < N; j0 += nb_max) {
            const int64_t nb = std::min(nb_max, N - j0);
            const int64_t npanels = ceil_div(nb, NR);
            if (direct) {
                // Each B strip (kc x NR, read in place, stays in L1) meets every row block of
                // (short) op(A), also read in place.
                for (int64_t pn = 0; pn < npanels; ++pn) {
                    const int64_t jj = j0 + pn * NR, n = std::min(NR, nb - pn * NR);
                    for (int64_t pm = 0; pm < mpanels; ++pm) {
                        const int64_t i0 = pm * mr, m = std::min(mr, M - i0);
                        gemm_detail::kernel_for<T>(m, !ta, n < NR, false, false, n)(
                            kc, ta ? A + k0 * lda + i0 : A + i0 * lda + k0, lda, B + k0 * ldb + jj,
                            ldb, C + i0 * ldc + jj, ldc, n, alpha, beta_k, nullptr, nullptr);
                    }
                }
                continue;
            }
            // Each A micro-panel (kc x MR, in L1) meets every panel of the packed B block
            // (streamed from L2). op(A) = A^T and op(B) = B are packed on the fly
            // (bk.on_the_fly: A panels by their first kernel call in the first N block, B panels
            // by the first A panel's) or by passes ahead; op(A) = A (when packed) and op(B) = B^T
            // by transposing passes ahead.
            const bool fly = bk.on_the_fly, a_rows = !bk.a_packed;
            if (j0 == 0 && bk.a_packed && (!ta || !fly))
                gemm_detail::pack_a(apack, ta, A, lda, M, k0, kc, 0, mpanels);
            if (tb || !fly) gemm_detail::pack_b(bpack, tb, B, ldb, k0, kc, j0, nb, 0, npanels);
            for (int64_t pm = 0; pm < mpanels; ++pm) {
                const int64_t i0 = pm * MR, m = std::min(MR, M - i0);
                T* ap = bk.a_packed ? apack + pm * kc * MRP : nullptr;  // none: A read in place
                for (int64_t pn = 0; pn < npanels; ++pn) {
                    const int64_t jj = j0 + pn * NR, n = std::min(NR, nb - pn * NR);
                    T* bp = bpack + pn * kc * NR;
                    // (a partial B panel, the last of a block, is packed by a pass over it, and
                    // so is the first A panel of a block whose first B panel is packed on the fly)
                    const bool fuse_b = fly && !tb && pm == 0 && n == NR;
                    const bool fuse_a = fly && ta && j0 == 0 && pn == 0 && !fuse_b;
                    if (fly && ta && j0 == 0 && pn == 0 && fuse_b)
                        gemm_detail::pack_a(apack, ta, A, lda, M, k0, kc, pm, pm + 1);
                    if (fly && !tb && pm == 0 && n < NR)
                        gemm_detail::pack_b(bpack, tb, B, ldb, k0, kc, j0, nb, pn, pn + 1);
                    const T* a = a_rows ? A + i0 * lda + k0 : fuse_a ? A + k0 * lda + i0 : ap;
                    const int64_t a_stride = a_rows || fuse_a ? lda : MRP;
                    gemm_detail::kernel_for<T>(m, a_rows, false, fuse_a, fuse_b, n)(
                        kc, a, a_stride, fuse_b ? B + k0 * ldb + jj : bp, fuse_b ? ldb : NR,
                        C + i0 * ldc + jj, ldc, n, alpha, beta_k, ap, bp);
                }
            }
        }
    }
}

// The blocked product on up to num_threads() threads: C is cut into one slab per thread, of whole
// micro-panels, along N (op(A), when packed, is then packed by every thread; it is the smaller
// operand when M <= N) or along M (op(B) packed by every thread). Each thread runs gemm_serial on
// its slab with its own buffers: one parallel region, no barrier inside, so a thread that the OS
// preempts delays only its own slab. The K blocking is the same for every slab. With relu, each
// thread applies relu_block to its slab right after computing it (gemm_relu).
template <class T>
void gemm_blocked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                  int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc,
                  bool relu = false) {
    constexpr int64_t MR = Simd<T>::MR, NR = kNR<T>;
    if (!ta && tb && use_dots<T>(M, K)) {
        gemm_dots(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, relu);
        return;
    }
    const Blocking<T> bk = blocking_for<T>(ta, tb, M, K, lda);
    const int64_t flops = 2 * M * N * K;
    const int64_t nt = threads_for(flops);
    const int64_t mpanels = ceil_div(M, MR), npanels = ceil_div(N, NR);
    if (nt == 1 || (mpanels < 2 && npanels < 2)) {
        gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bk,
                    scratch<T>(0, bk.a_size(M)), scratch<T>(1, bk.b_size(N)));
        if (relu) relu_block(C, M, N, ldc);
        return;
    }
    bool split_n = bk.direct ? npanels >= 2 : (M <= N ? npanels >= 2 : mpanels < 2);
    // A weight gradient (op(A) = A^T: dW = dy^T x) is cut by rows when that is about as even as
    // cutting by columns: faster on 2 threads for even cuts, slower for uneven ones (figures in
    // docs/performance.md, "Measurements behind the kernels"), hence the evenness test
    // (uneven: the largest share of p panels over the mean).
    if (!bk.direct && ta && split_n && mpanels >= 2) {
        const auto uneven = [&](int64_t p) {
            const int64_t t = std::min(nt, p);
            return double(ceil_div(p, t) * t) / double(p);
        };
        if (uneven(mpanels) <= 1.05 * uneven(npanels)) split_n = false;
    }
    const int64_t panels = split_n ? npanels : mpanels;
    const int64_t ntasks = std::min(nt, panels);
    // task t: panels [t * panels / ntasks, (t + 1) * panels / ntasks) -> rows or columns [lo, hi)
    auto range = [&](int64_t t) {
        const int64_t p0 = t * panels / ntasks, p1 = (t + 1) * panels / ntasks;
        return split_n ? std::make_pair(p0 * NR, std::min(N, p1 * NR))
                       : std::make_pair(p0 * MR, std::min(M, p1 * MR));
    };
    std::vector<T*> bufs(static_cast<size_t>(2 * ntasks));
    for (int64_t t = 0; t < ntasks; ++t) {
        const auto [lo, hi] = range(t);
        bufs[2 * t] = scratch<T>(2 * t, bk.a_size(split_n ? M : hi - lo));
        bufs[2 * t + 1] = scratch<T>(2 * t + 1, bk.b_size(split_n ? hi - lo : N));
    }
    parallel_chunks(ntasks, 1, flops, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const auto [lo, hi] = range(t);
            // (a ReLU epilogue on the slab this thread just wrote, while it is in its cache)
            if (split_n) {
                gemm_serial(ta, tb, M, hi - lo, K, alpha, A, lda, tb ? B + lo * ldb : B + lo, ldb,
                            beta, C + lo, ldc, bk, bufs[2 * t], bufs[2 * t + 1]);
                if (relu) relu_block(C + lo, M, hi - lo, ldc);
            } else {
                gemm_serial(ta, tb, hi - lo, N, K, alpha, ta ? A + lo : A + lo * lda, lda, B, ldb,
                            beta, C + lo * ldc, ldc, bk, bufs[2 * t], bufs[2 * t + 1]);
                if (relu) relu_block(C + lo * ldc, hi - lo, N, ldc);
            }
        }
    });
}

}  // namespace

template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == T(0)) {  // A and B are not read (BLAS semantics)
        scale_c(M, N, beta, C, ldc);
        return;
    }
    if (K == 1) {
        outer(ta, tb, M, N, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (M == 1) {  // c (N) = alpha * a (K) op(B) + beta * c, a = op(A)(0, :)
        const T* a = A;
        if (ta) {  // op(A)(0, k) = A[k, 0]: gather once
            T* g = scratch<T>(0, K);
            for (int64_t k = 0; k < K; ++k) g[k] = A[k * lda];
            a = g;
        }
        if (tb) gemv_dots(N, K, a, B, ldb, alpha, beta, C, 1);
        else gemv_axpy(N, K, a, B, ldb, alpha, beta, C, 1);
        return;
    }
    if (N == 1) {  // c (M) = alpha * op(A) b (K) + beta * c, b = op(B)(:, 0), c strided by ldc
        const T* b = B;
        if (!tb) {  // op(B)(k, 0) = B[k, 0]: gather once
            T* g = scratch<T>(0, K);
            for (int64_t k = 0; k < K; ++k) g[k] = B[k * ldb];
            b = g;
        }
        if (ta) gemv_axpy(M, K, b, A, lda, alpha, beta, C, ldc);
        else gemv_dots(M, K, b, A, lda, alpha, beta, C, ldc);
        return;
    }
    if (ta && !tb && K <= gemm_detail::kSmallK) {
        gemm_smallk(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_blocked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class T>
void gemv_rows(int64_t j0, int64_t j1, int64_t K, const T* x, const T* W, int64_t ldw, T alpha,
               T beta, T* y) {
    dots_range(j0, j1, K, x, W, ldw, alpha, beta, y, 1);
}

template <class T>
void gemm_relu(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
               const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
    if (M > 1 && N > 1 && K > 1) {
        gemm_blocked(ta, tb, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc, true);
        return;
    }
    gemm(ta, tb, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc);
    if (M > 0 && N > 0) relu_block(C, M, N, ldc);
}

template <class T>
bool gemm_uses_dots(int64_t M, int64_t N, int64_t K) {
    return M > 1 && N > 1 && K > 1 && use_dots<T>(M, K);
}

template <class T>
void gemm_dots_cols(int64_t j0, int64_t j1, int64_t M, int64_t K, const T* A, int64_t lda,
                    const T* B, int64_t ldb, T beta, T* C, int64_t ldc, bool relu) {
    constexpr int64_t XR = gemm_detail::kTileXR<T>;
    alignas(64) T sums[kTileCols<T>][8];
    for (int64_t i0 = 0; i0 < M; i0 += XR) {
        const int64_t xr = std::min(XR, M - i0);
        for (int64_t j = j0, wr = 0; j < j1; j += wr) {
            wr = tile_wr<T>(xr, j, j1);
            tile_fn<T>(xr, wr)(K, A + i0 * lda, lda, B + j * ldb, ldb, sums);
            T* c = C + i0 * ldc + j;
            for (int64_t r = 0; r < xr; ++r)
                for (int64_t q = 0; q < wr; ++q) store_scalar(c + r * ldc + q, sums[q][r], T(1), beta);
            if (relu) relu_block(c, xr, wr, ldc);
        }
    }
}

// The readable reference: one dot product per element, k in increasing order.
template <class T>
void gemm_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            T acc = 0;
            for (int64_t k = 0; k < K; ++k)
                acc += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
            T* c = C + i * ldc + j;
            *c = beta == T(0) ? alpha * acc : alpha * acc + beta * *c;
        }
}

#define GD_INSTANTIATE(T)                                                                          \
    template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*,  \
                          int64_t, T, T*, int64_t);                                                \
    template void gemm_naive<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t,      \
                                const T*, int64_t, T, T*, int64_t);                              \
    template bool gemm_uses_dots<T>(int64_t, int64_t, int64_t);                                  \
    template void gemm_dots_cols<T>(int64_t, int64_t, int64_t, int64_t, const T*, int64_t,        \
                                    const T*, int64_t, T, T*, int64_t, bool);                     \
    template void gemv_rows<T>(int64_t, int64_t, int64_t, const T*, const T*, int64_t, T, T, T*);\
    template void gemm_relu<T>(bool, bool, int64_t, int64_t, int64_t, const T*, int64_t, const T*, \
                               int64_t, T, T*, int64_t);
GD_INSTANTIATE(float)
GD_INSTANTIATE(double)
#undef GD_INSTANTIATE

}  // namespace GD_NS
}  // namespace gd

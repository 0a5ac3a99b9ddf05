// OpenMP helpers. Work is cut into chunks whose boundaries depend only on the problem size, never
// on the thread count, and reductions add per-chunk partials in chunk order: every kernel gives
// bitwise identical results for any number of threads. Without OpenMP everything runs serially.
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#if GD_HAVE_OPENMP
#include <omp.h>
#endif

namespace gd {

int num_threads();           // the thread budget set by set_num_threads (dispatch.cpp), or 1
                             // inside a job of parallel_pair
void set_num_threads(int n);  // throws std::runtime_error for n > 1 in a bad fork (below)
void note_parallel_region();  // records that OpenMP has started its threads (dispatch.cpp)

// fork() after OpenMP started its threads: GNU libgomp keeps the parent's thread pool in the
// child, where those threads do not exist, and the child's next parallel region waits for them
// forever. A fork handler (dispatch.cpp) therefore sets the child's thread budget to 1, so that
// its kernels never open a parallel region, and refuses set_num_threads(n > 1) there.

// Below this many floating-point operations (for elementwise kernels: about 8 per element) a
// kernel stays on one thread: waking the pool and the closing barrier cost microseconds. Above it
// an elementwise pass over data that 2-thread GEMMs just wrote (half in each core's L2) is
// faster in parallel: on one thread of a 2-thread run such passes are slower than in a 1-thread
// run (figures in docs/performance.md, "Measurements behind the kernels").
constexpr int64_t kParallelWork = int64_t(1) << 19;

// Below this many flops a matrix product (and the batch-1 weight update that follows a
// matrix-vector product, sgd_outer_step) stays on one thread. A kernel that updates what a serial
// kernel reads next must stay serial too: otherwise the other core's L2 holds half the matrix on
// every step (measured slower; figures in docs/performance.md, "Measurements behind the
// kernels").
constexpr int64_t kMatrixParallelFlops = int64_t(1) << 23;

// Calls body(begin, end) for the chunks [c*chunk, min(n, (c+1)*chunk)), in parallel when
// `work` (an estimate of the flops) is large enough. Thread t takes the t-th contiguous share
// of the chunks (schedule(static)), so a kernel that runs again on the same shape runs each
// chunk on the same thread, whose core's cache still holds what the chunk touched last time (a
// GEMM's slab, the weights an SGD chunk wrote): the MLP batch-256 step on 2 threads was 2.2%
// faster than with chunks handed out on demand (same-run A/B on one compiled step, 25 rounds;
// on demand only wins when the OS preempts a thread). Which thread runs a chunk never changes
// what the chunk computes.
template <class F>
inline void parallel_chunks(int64_t n, int64_t chunk, int64_t work, const F& body) {
    if (n <= 0) return;
    chunk = std::max<int64_t>(chunk, 1);
    const int64_t nchunks = (n + chunk - 1) / chunk;
#if GD_HAVE_OPENMP
    const int64_t nt = std::min<int64_t>(num_threads(), nchunks);
    if (nt > 1 && work >= kParallelWork) {
        note_parallel_region();
#pragma omp parallel for num_threads(static_cast<int>(nt)) schedule(static)
        for (int64_t c = 0; c < nchunks; ++c) body(c * chunk, std::min(n, (c + 1) * chunk));
        return;
    }
#else
    (void)work;
#endif
    for (int64_t c = 0; c < nchunks; ++c) body(c * chunk, std::min(n, (c + 1) * chunk));
}

// While one exists, num_threads() is 1 on the thread that made it (parallel_pair's jobs).
class OneThread {
   public:
    OneThread();
    ~OneThread();
    OneThread(const OneThread&) = delete;
    OneThread& operator=(const OneThread&) = delete;

   private:
    bool prev_;
};

// Runs f() and g(), two independent jobs, at the same time on two threads when the thread budget
// is exactly 2 (each job then runs its kernels on one thread: e.g. a layer's dx and dW products,
// which have the same flops, instead of each product cut in two); otherwise f() then g(). An
// exception thrown by a job is rethrown here after both have finished.
template <class F, class G>
inline void parallel_pair(const F& f, const G& g) {
#if GD_HAVE_OPENMP
    if (num_threads() == 2) {
        note_parallel_region();
        std::exception_ptr err[2];
#pragma omp parallel for num_threads(2) schedule(static)
        for (int k = 0; k < 2; ++k) {
            try {
                const OneThread one;
                if (k == 0) f();
                else g();
            } catch (...) {
                err[k] = std::current_exception();
            }
        }
        for (const auto& e : err)
            if (e) std::rethrow_exception(e);
        return;
    }
#endif
    f();
    g();
}

}  // namespace gd

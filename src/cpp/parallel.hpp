// OpenMP helpers. Work is cut into chunks whose boundaries depend only on the problem size, never
// on the thread count, and reductions add per-chunk partials in chunk order: every kernel gives
// bitwise identical results for any number of threads. Without OpenMP everything runs serially.
#pragma once
#include <algorithm>
#include <cstdint>
#if GD_HAVE_OPENMP
#include <omp.h>
#endif

namespace gd {

int num_threads();           // the thread budget set by set_num_threads (dispatch.cpp)
void set_num_threads(int n);  // throws std::runtime_error for n > 1 in a bad fork (below)
void note_parallel_region();  // records that OpenMP has started its threads (dispatch.cpp)

// fork() after OpenMP started its threads: GNU libgomp keeps the parent's thread pool in the
// child, where those threads do not exist, and the child's next parallel region waits for them
// forever. A fork handler (dispatch.cpp) therefore sets the child's thread budget to 1, so that
// its kernels never open a parallel region, and refuses set_num_threads(n > 1) there.

// Below this many floating-point operations (for elementwise kernels: about 8 per element) a
// kernel stays on one thread. Waking the pool and the closing barrier cost microseconds, and after
// a region libgomp's worker spins for a while: on a 2-core machine shared with other work that
// spinning thread takes the core the main thread's next kernels need. Measured (session 3,
// lecture net at batch 1, compiled): with 1 << 18 its 36k-element fused SGD update went parallel
// and the whole step took 23 us at 2 threads against 8 us at 1; with 1 << 21 both take 8 us.
constexpr int64_t kParallelWork = int64_t(1) << 21;

// Calls body(begin, end) for the chunks [c*chunk, min(n, (c+1)*chunk)), in parallel when
// `work` (an estimate of the flops) is large enough. Chunks are handed out dynamically, so a
// thread the OS preempts does not hold the others at the closing barrier; which thread runs a
// chunk never changes what the chunk computes.
template <class F>
inline void parallel_chunks(int64_t n, int64_t chunk, int64_t work, const F& body) {
    if (n <= 0) return;
    chunk = std::max<int64_t>(chunk, 1);
    const int64_t nchunks = (n + chunk - 1) / chunk;
#if GD_HAVE_OPENMP
    const int64_t nt = std::min<int64_t>(num_threads(), nchunks);
    if (nt > 1 && work >= kParallelWork) {
        note_parallel_region();
#pragma omp parallel for num_threads(static_cast<int>(nt)) schedule(dynamic, 1)
        for (int64_t c = 0; c < nchunks; ++c) body(c * chunk, std::min(n, (c + 1) * chunk));
        return;
    }
#else
    (void)work;
#endif
    for (int64_t c = 0; c < nchunks; ++c) body(c * chunk, std::min(n, (c + 1) * chunk));
}

}  // namespace gd

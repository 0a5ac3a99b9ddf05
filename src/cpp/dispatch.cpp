// Chooses the kernel table once at import: GRADDESC_ISA if set, else the best ISA the CPU
// (and OS) supports according to CPUID. Also owns the thread budget.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "kernels.hpp"
#include "parallel.hpp"

namespace gd {
namespace {

std::atomic<const Kernels*> g_active{nullptr};
std::atomic<int> g_threads{0};  // 0 = not yet initialised
std::atomic<bool> g_pool_started{false};  // a parallel region has run in this process
std::atomic<bool> g_bad_fork{false};      // forked after that: OpenMP can't start threads here

void after_fork_in_child() {
    if (g_pool_started.load()) {
        g_threads.store(1);
        g_bad_fork.store(true);
    }
}

#if defined(__unix__) || defined(__APPLE__)
// Installed when the extension is loaded; runs in the child of every fork (os.fork,
// multiprocessing's 'fork' start method, a C library's fork).
[[maybe_unused]] const int g_fork_handler = pthread_atfork(nullptr, nullptr, &after_fork_in_child);
#endif

const Kernels* table_for(const char* name) {
    if (std::strcmp(name, "avx512") == 0) return &kernels_avx512();
    if (std::strcmp(name, "avx2") == 0) return &kernels_avx2();
    if (std::strcmp(name, "baseline") == 0) return &kernels_baseline();
    return nullptr;
}

}  // namespace

bool cpu_supports_isa(const char* name) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (std::strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (std::strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
#endif
    return std::strcmp(name, "baseline") == 0;
}

const char* best_isa() {
    if (cpu_supports_isa("avx512")) return "avx512";
    if (cpu_supports_isa("avx2")) return "avx2";
    return "baseline";
}

bool select_isa(const char* name) {
    const Kernels* k = table_for(name);
    if (k == nullptr || !cpu_supports_isa(name)) return false;
    g_active.store(k);
    return true;
}

const Kernels& active_kernels() {
    const Kernels* k = g_active.load(std::memory_order_relaxed);
    if (k == nullptr) {
        select_isa(best_isa());
        k = g_active.load();
    }
    return *k;
}

namespace {
thread_local bool t_one_thread = false;  // inside one job of parallel_pair
}  // namespace

OneThread::OneThread() : prev_(t_one_thread) { t_one_thread = true; }
OneThread::~OneThread() { t_one_thread = prev_; }

int num_threads() {
    if (t_one_thread) return 1;
    int n = g_threads.load(std::memory_order_relaxed);
    if (n <= 0) {
#if GD_HAVE_OPENMP
        n = omp_get_max_threads();
#else
        n = 1;
#endif
        g_threads.store(n);
    }
    return n;
}

void set_num_threads(int n) {
    if (n > 1 && g_bad_fork.load())
        throw std::runtime_error(
            "set_num_threads: this process was forked after graddesc's OpenMP threads had "
            "started in its parent; OpenMP can't start threads in such a child (it would hang), "
            "so its kernels run on 1 thread (asked for " + std::to_string(n) + "). Use the "
            "'spawn' or 'forkserver' start method for parallel workers.");
    g_threads.store(n < 1 ? 1 : n);
}

void note_parallel_region() {
    if (!g_pool_started.load(std::memory_order_relaxed)) g_pool_started.store(true);
}

}  // namespace gd

// Chooses the kernel table once at import: GRADDESC_ISA if set, else the best ISA the CPU
// (and OS) supports according to CPUID. Also owns the thread budget.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels.hpp"
#include "parallel.hpp"

namespace gd {
namespace {

std::atomic<const Kernels*> g_active{nullptr};
std::atomic<int> g_threads{0};  // 0 = not yet initialised

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

int num_threads() {
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

void set_num_threads(int n) { g_threads.store(n < 1 ? 1 : n); }

}  // namespace gd

// Chooses the kernel table once at import: GRADDESC_ISA if set, else the best ISA the CPU
// (and OS) supports according to CPUID (on x86-64; NEON needs no check on aarch64). Also owns the thread budget.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
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

// The instruction sets compiled into this build (CMakeLists.txt defines GD_BUILT_<ISA>), best
// first: x86-64 avx512, avx2, baseline; aarch64 neon, baseline; other targets baseline.
struct IsaEntry {
    const char* name;
    const Kernels& (*table)();
};
constexpr IsaEntry kIsas[] = {
#if GD_BUILT_AVX512
    {"avx512", &kernels_avx512},
#endif
#if GD_BUILT_AVX2
    {"avx2", &kernels_avx2},
#endif
#if GD_BUILT_NEON
    {"neon", &kernels_neon},
#endif
    {"baseline", &kernels_baseline},
};
constexpr int kIsaCount = static_cast<int>(sizeof(kIsas) / sizeof(kIsas[0]));

// Bit i set once the table of kIsas[i] has been built (tests check that a table the CPU can't
// run is never built: building it runs code compiled for its ISA).
std::atomic<unsigned> g_tables_built{0};

int isa_index(const char* name) {
    for (int i = 0; i < kIsaCount; ++i)
        if (std::strcmp(name, kIsas[i].name) == 0) return i;
    return -1;
}

// Only called after cpu_supports_isa(name): kIsas[index].table() runs code compiled for that ISA.
const Kernels* table_for(int index) {
    g_tables_built.fetch_or(1u << index);
    return &kIsas[index].table();
}

#if defined(__x86_64__) || defined(__i386__)
struct CpuFeatures {
    bool avx2 = false, fma = false, f16c = false, bmi2 = false;
    bool avx512f = false, avx512dq = false, avx512bw = false, avx512vl = false;
    bool os_ymm = false;  // the OS saves and restores YMM state (XCR0 bits 1, 2)
    bool os_zmm = false;  // ... and the AVX-512 opmask and ZMM state (XCR0 bits 5, 6, 7)
};

// CPUID leaves 1 and 7 for the instructions, XGETBV for what the OS has enabled: a CPU that
// has AVX-512 under an OS (or hypervisor) that does not save ZMM state must not run it.
CpuFeatures read_cpu_features() {
    CpuFeatures f;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool osxsave = (c >> 27) & 1u;
    const bool avx = (c >> 28) & 1u;
    f.fma = (c >> 12) & 1u;
    f.f16c = (c >> 29) & 1u;
    if (osxsave && avx) {
        unsigned lo = 0, hi = 0;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        f.os_ymm = (lo & 0x6u) == 0x6u;
        f.os_zmm = f.os_ymm && (lo & 0xe0u) == 0xe0u;
    }
    if (__get_cpuid_max(0, nullptr) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f.avx2 = (b >> 5) & 1u;
        f.bmi2 = (b >> 8) & 1u;
        f.avx512f = (b >> 16) & 1u;
        f.avx512dq = (b >> 17) & 1u;
        f.avx512bw = (b >> 30) & 1u;
        f.avx512vl = (b >> 31) & 1u;
    }
    return f;
}
#endif

// GRADDESC_CPU_LACKS="avx512[,avx2]": treat those instruction sets as missing, as on a CPU
// without them (how the tests reach the refusal paths on a CPU that has everything).
bool hidden_by_env(const char* name) {
    const char* env = std::getenv("GRADDESC_CPU_LACKS");
    if (env == nullptr) return false;
    const std::string list(env), want(name);
    size_t start = 0;
    while (start <= list.size()) {
        size_t end = list.find(',', start);
        if (end == std::string::npos) end = list.size();
        if (list.compare(start, end - start, want) == 0) return true;
        start = end + 1;
    }
    return false;
}

}  // namespace

int isa_count() { return kIsaCount; }

const char* isa_name(int index) { return kIsas[index].name; }

bool cpu_supports_isa(const char* name) {
    const int index = isa_index(name);
    if (index < 0) return false;  // not built for this target
    const std::string isa(name);
    if (isa == "baseline") return true;  // what the compiler targets by default
    if (hidden_by_env(name)) return false;
#if defined(__x86_64__) || defined(__i386__)
    if (hidden_by_env("avx2")) return false;  // AVX-512 implies AVX2
    static const CpuFeatures f = read_cpu_features();
    const bool avx2 = f.os_ymm && f.avx2 && f.fma && f.f16c && f.bmi2;
    if (isa == "avx2") return avx2;
    if (isa == "avx512")
        return avx2 && f.os_zmm && f.avx512f && f.avx512dq && f.avx512bw && f.avx512vl;
    return false;
#elif defined(__aarch64__)
    return isa == "neon";  // Advanced SIMD is part of every AArch64 CPU
#else
    return false;
#endif
}

const char* best_isa() {
    for (int i = 0; i < kIsaCount; ++i)
        if (cpu_supports_isa(kIsas[i].name)) return kIsas[i].name;
    return "baseline";
}

bool select_isa(const char* name) {
    // The CPUID check comes first: building another ISA's table executes its instructions.
    if (!cpu_supports_isa(name)) return false;
    g_active.store(table_for(isa_index(name)));
    return true;
}

unsigned tables_built() { return g_tables_built.load(); }

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

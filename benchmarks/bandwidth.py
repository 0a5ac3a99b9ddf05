"""Measures this machine's single-core memory bandwidth by working-set size (read, write, update).

A tiny C++ program (compiled with g++ at run time, no -march=native: the AVX-512 and AVX2 kernels
are compiled with per-function target pragmas and picked at run time) streams over float32 arrays
(64-byte aligned) and reports GB/s (1e9 bytes/s) on one thread:

- read:   sum of an array with 8 independent vector accumulators (bytes = array size);
- write:  fill an array with a constant using normal (temporal) vector stores (bytes = array
          size; the write-allocate reads the hardware adds are not counted, so this is the rate at
          which the program's own stores retire);
- update: a[i] = a[i] - c * b[i], an SGD-style update (reads a and b, writes a; bytes = 3 x one
          array's size; the working set is split between a and b).

Each figure is the best of many short runs (each ~3 ms of repeated passes over a warm buffer),
timed in thread CPU time: a shared machine's noise only ever makes a run slower. The numbers are the
floor that memory-bound steps (e.g. an optimizer update) can approach, see floor_seconds().

    python benchmarks/bandwidth.py            # table; also saves benchmarks/results/bandwidth.json
    python benchmarks/bandwidth.py --json     # {"sizes": [bytes], "read": [GB/s], ...}
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

KIB = 1024
MIB = 1024 * 1024

# L1d 48 KiB, L2 2 MiB per core, large shared L3, then DRAM.
SIZES: list[int] = [16 * KIB, 32 * KIB, 128 * KIB, 512 * KIB, 1 * MIB, 3 * MIB // 2, 2 * MIB,
                    5 * MIB // 2, 3 * MIB, 8 * MIB, 32 * MIB, 256 * MIB]
KERNELS = ("read", "write", "update")

# Kernel bodies, written once against the V/LOAD/STORE/... macros and emitted once per instruction
# set inside a `#pragma GCC target` region (so no -march flag applies to the whole program).
_KERNELS = r"""
static double read_pass(const float* a, long n) {
    V acc[ACC];
    for (int k = 0; k < ACC; ++k) acc[k] = SET1(0.0f);
    long i = 0;
    for (; i + ACC * LANES <= n; i += ACC * LANES) {
#pragma GCC unroll 8
        for (int k = 0; k < ACC; ++k) acc[k] = ADD(acc[k], LOAD(a + i + k * LANES));
    }
    for (int k = 1; k < ACC; ++k) acc[0] = ADD(acc[0], acc[k]);
    float lanes[LANES];
    STOREU(lanes, acc[0]);
    double s = 0;
    for (int k = 0; k < LANES; ++k) s += lanes[k];
    for (; i < n; ++i) s += a[i];
    return s;
}

static void write_pass(float* a, long n, float v) {
    const V x = SET1(v);
    long i = 0;
    for (; i + 4 * LANES <= n; i += 4 * LANES) {
        STORE(a + i, x);
        STORE(a + i + LANES, x);
        STORE(a + i + 2 * LANES, x);
        STORE(a + i + 3 * LANES, x);
    }
    for (; i < n; ++i) a[i] = v;
}

static void update_pass(float* a, const float* b, long n, float c) {
    const V vc = SET1(c);
    long i = 0;
    for (; i + 4 * LANES <= n; i += 4 * LANES) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            const long j = i + k * LANES;
            STORE(a + j, FNMADD(vc, LOAD(b + j), LOAD(a + j)));
        }
    }
    for (; i < n; ++i) a[i] -= c * b[i];
}

__attribute__((noinline)) static double run_read(Bufs* d, long passes) {
    double s = 0;
    for (long p = 0; p < passes; ++p) {
        s += read_pass(d->a, d->n);
        clobber(d->a);  // the data "may have changed": every pass really reads it
    }
    return s;
}

__attribute__((noinline)) static double run_write(Bufs* d, long passes) {
    for (long p = 0; p < passes; ++p) {
        write_pass(d->a, d->n, float(p & 7));
        clobber(d->a);  // the stores "may be read": none is dead
    }
    return d->a[d->n / 2];
}

__attribute__((noinline)) static double run_update(Bufs* d, long passes) {
    for (long p = 0; p < passes; ++p) {
        update_pass(d->a, d->b, d->n, (p & 1) ? 1e-3f : -1e-3f);  // a stays bounded
        clobber(d->a);
    }
    return d->a[d->n / 2];
}
"""

_ISAS = {
    "avx512": ("avx512f,avx2,fma", """
typedef __m512 V;
#define LANES 16
#define SET1 _mm512_set1_ps
#define LOAD _mm512_load_ps
#define STORE _mm512_store_ps
#define STOREU _mm512_storeu_ps
#define ADD _mm512_add_ps
#define FNMADD _mm512_fnmadd_ps
"""),
    "avx2": ("avx2,fma", """
typedef __m256 V;
#define LANES 8
#define SET1 _mm256_set1_ps
#define LOAD _mm256_load_ps
#define STORE _mm256_store_ps
#define STOREU _mm256_storeu_ps
#define ADD _mm256_add_ps
#define FNMADD _mm256_fnmadd_ps
"""),
    "sse2": ("sse2", """
typedef __m128 V;
#define LANES 4
#define SET1 _mm_set1_ps
#define LOAD _mm_load_ps
#define STORE _mm_store_ps
#define STOREU _mm_storeu_ps
#define ADD _mm_add_ps
#define FNMADD(a, b, c) _mm_sub_ps(c, _mm_mul_ps(a, b))
"""),
}

_MACROS = ("LANES", "SET1", "LOAD", "STORE", "STOREU", "ADD", "FNMADD")

_PRELUDE = r"""
#include <immintrin.h>
#include <time.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#define ACC 8  // read: 2 loads/cycle x 4-cycle add latency = 8 additions in flight

struct Bufs { float* a; float* b; long n; };
typedef double (*RunFn)(Bufs*, long);

static inline void clobber(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

static double now() {  // this thread's CPU time: time spent descheduled does not count
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}
"""

_MAIN = r"""
static float* alloc(long n) {
    size_t bytes = ((size_t(n) * sizeof(float) + 63) / 64) * 64;
    float* p = static_cast<float*>(aligned_alloc(64, bytes ? bytes : 64));
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}

// Best seconds per pass: warm the buffer, size a run to ~target seconds, keep the fastest of reps.
static double best_pass(RunFn fn, Bufs* d, double target, int reps, double* sink) {
    *sink += fn(d, 2);  // warm-up: pages faulted in, lines in the caches they fit in
    long passes = 1;
    double t = 0;
    for (;;) {
        const double t0 = now();
        *sink += fn(d, passes);
        t = now() - t0;
        if (t >= 0.25 * target || passes >= (1L << 40)) break;
        passes *= 2;
    }
    long scaled = long(double(passes) * target / (t > 0 ? t : 1e-9));
    passes = scaled > 1 ? scaled : 1;
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        const double t0 = now();
        *sink += fn(d, passes);
        const double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return best / double(passes);
}

int main(int argc, char** argv) {
    if (argc < 4) { fprintf(stderr, "usage: bw target_seconds reps bytes...\n"); return 2; }
    const double target = atof(argv[1]);
    const int reps = atoi(argv[2]);
    const char* isa = "sse2";
    RunFn fns[3] = {sse2::run_read, sse2::run_write, sse2::run_update};
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        isa = "avx512";
        fns[0] = avx512::run_read; fns[1] = avx512::run_write; fns[2] = avx512::run_update;
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        isa = "avx2";
        fns[0] = avx2::run_read; fns[1] = avx2::run_write; fns[2] = avx2::run_update;
    }
    printf("isa %s\n", isa);
    double sink = 0;
    for (int arg = 3; arg < argc; ++arg) {
        const long bytes = atol(argv[arg]);
        const long n = bytes / long(sizeof(float));
        Bufs d{alloc(n), nullptr, n};
        for (long i = 0; i < n; ++i) d.a[i] = 1.0f;
        const double tr = best_pass(fns[0], &d, target, reps, &sink);
        const double tw = best_pass(fns[1], &d, target, reps, &sink);
        free(d.a);
        const long h = n / 2;  // update: the working set split between a and b
        Bufs u{alloc(h), alloc(h), h};
        for (long i = 0; i < h; ++i) { u.a[i] = 1.0f; u.b[i] = 0.5f; }
        const double tu = best_pass(fns[2], &u, target, reps, &sink);
        free(u.a);
        free(u.b);
        printf("%ld %.9g %.9g %.9g\n", bytes, double(n) * 4 / tr * 1e-9,
               double(n) * 4 / tw * 1e-9, double(3 * h) * 4 / tu * 1e-9);
    }
    printf("sink %g\n", sink * 0);
    return 0;
}
"""


def _source() -> str:
    parts = [_PRELUDE]
    for isa, (target, macros) in _ISAS.items():
        undef = "".join(f"#undef {m}\n" for m in _MACROS)
        parts.append(f'#pragma GCC push_options\n#pragma GCC target("{target}")\n'
                     f"namespace {isa} {{\n{macros}{_KERNELS}\n{undef}"
                     f"}}  // namespace {isa}\n#pragma GCC pop_options\n")
    parts.append(_MAIN)
    return "".join(parts)


@functools.cache
def _executable() -> Path:
    """Compiles the probe once per process into a temporary directory (removed at exit)."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        raise RuntimeError("bandwidth: no C++ compiler (g++) on PATH; the probe needs one")
    tmp = Path(tempfile.mkdtemp(prefix="graddesc_bandwidth_"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    src = tmp / "bandwidth.cpp"
    src.write_text(_source())
    exe = tmp / "bandwidth"
    # -fno-tree-loop-distribute-patterns: the fill stays our vector stores, never a memset call
    # (glibc's memset switches to non-temporal stores for large sizes).
    subprocess.run([cxx, "-O2", "-std=c++17", "-fno-tree-loop-distribute-patterns", str(src),
                    "-o", str(exe)], check=True)
    return exe


def measure(sizes: list[int] | None = None, reps: int = 15, target_seconds: float = 0.003) -> dict:
    """Returns {"isa": str, "sizes": [bytes], "read": [GB/s], "write": [GB/s], "update": [GB/s]}
    for one core, one entry per working-set size (bytes; default SIZES). Each rate is the best of
    `reps` runs of ~target_seconds (thread CPU time) over a warm buffer."""
    if sizes is None:
        sizes = SIZES
    sizes = [int(s) for s in sizes]
    if any(s < 64 for s in sizes):
        raise ValueError(f"bandwidth: working-set sizes must be at least 64 bytes, got {sizes}")
    out = subprocess.run([str(_executable()), repr(target_seconds), str(reps),
                          *map(str, sizes)], check=True, capture_output=True, text=True)
    res: dict = {"isa": "", "sizes": [], "read": [], "write": [], "update": []}
    for line in out.stdout.splitlines():
        fields = line.split()
        if fields[0] == "isa":
            res["isa"] = fields[1]
        elif fields[0] != "sink":
            res["sizes"].append(int(fields[0]))
            for kernel, value in zip(KERNELS, fields[1:]):
                res[kernel].append(float(value))
    return res


@functools.cache
def table() -> dict:
    """measure() with the default sizes, run once per process and then reused."""
    return measure()


def floor_seconds(read_bytes: float, write_bytes: float, footprint_bytes: float,
                  table: dict) -> float:
    """A lower bound on the seconds that moving this traffic takes on one core.

    Uses the bandwidth measured for the smallest working set >= footprint_bytes (the largest one
    if the footprint exceeds them all): every byte, read or written, at the fastest of the read,
    write and update rates measured there. A separate write rate would not be a bound: stores to
    lines a kernel has just read run faster than the write-only probe. It ignores compute,
    latency and call overheads, so real code is at least this slow."""
    sizes = table["sizes"]
    idx = next((i for i, s in enumerate(sizes) if s >= footprint_bytes), len(sizes) - 1)
    best = max(table["read"][idx], table["write"][idx], table["update"][idx])
    return (read_bytes + write_bytes) / (best * 1e9)


def _label(nbytes: int) -> str:
    for unit, scale in (("MiB", MIB), ("KiB", KIB)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    res = table()
    from _common import save_json  # imports graddesc; measure() and table() do not need it

    save_json("bandwidth", res)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"{'working set':>12} {'read GB/s':>10} {'write GB/s':>11} {'update GB/s':>12}"
          f"   (one core, {res['isa']})")
    for i, size in enumerate(res["sizes"]):
        print(f"{_label(size):>12} {res['read'][i]:>10.1f} {res['write'][i]:>11.1f}"
              f" {res['update'][i]:>12.1f}")


if __name__ == "__main__":
    main()

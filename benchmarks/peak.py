"""Measures this CPU's single-core floating-point peak with an FMA-throughput probe.

A tiny C++ program (compiled with g++ at run time, no -march=native) keeps many independent
vector FMA chains in registers, so it is limited by FMA throughput, not latency or memory. The
peak is reported per instruction set that graddesc can dispatch to (avx512, avx2, baseline SSE2).

    python benchmarks/peak.py            # table
    python benchmarks/peak.py --json     # {"avx512": {"float32": GF/s, "float64": GF/s}, ...}
    python benchmarks/peak.py --isa avx2 # one ISA only

It also holds the benchmarks' AVX2 proxy (`--avx2-proxy` in bench_gemm.py and
bench_smallbatch.py, see `avx2_proxy`): on an AVX-512 machine, graddesc's AVX2 kernels against
OpenBLAS forced to its AVX2 (Haswell) kernels, as a stand-in for an AVX2-only CPU.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Many short runs, the best one kept (thread CPU time): a shared machine's noise only ever makes a
# run slower, so the fastest run is the closest to the hardware's rate.
# 24 independent accumulators hide a 4-cycle FMA latency on two FMA ports with room to spare
# (2 ports x 4 cycles = 8 in flight needed); the loop body is pure register FMA.
_SOURCE = r"""
#include <immintrin.h>
#include <time.h>
#include <cstdio>
#include <cstdlib>

#if defined(__AVX512F__)
typedef __m512 VF; typedef __m512d VD;
#define SET1F _mm512_set1_ps
#define SET1D _mm512_set1_pd
#define FMAF _mm512_fmadd_ps
#define FMAD _mm512_fmadd_pd
#define ADDF _mm512_add_ps
#define ADDD _mm512_add_pd
#define REDF _mm512_reduce_add_ps
#define REDD _mm512_reduce_add_pd
#define WIDTH 64
#elif defined(__AVX2__)
typedef __m256 VF; typedef __m256d VD;
#define SET1F _mm256_set1_ps
#define SET1D _mm256_set1_pd
#define FMAF _mm256_fmadd_ps
#define FMAD _mm256_fmadd_pd
#define ADDF _mm256_add_ps
#define ADDD _mm256_add_pd
static float REDF(VF v) { float t[8]; _mm256_storeu_ps(t, v); return t[0]; }
static double REDD(VD v) { double t[4]; _mm256_storeu_pd(t, v); return t[0]; }
#define WIDTH 32
#else
typedef __m128 VF; typedef __m128d VD;
#define SET1F _mm_set1_ps
#define SET1D _mm_set1_pd
#define FMAF(a, b, c) _mm_add_ps(_mm_mul_ps(a, b), c)
#define FMAD(a, b, c) _mm_add_pd(_mm_mul_pd(a, b), c)
#define ADDF _mm_add_ps
#define ADDD _mm_add_pd
static float REDF(VF v) { float t[4]; _mm_storeu_ps(t, v); return t[0]; }
static double REDD(VD v) { double t[2]; _mm_storeu_pd(t, v); return t[0]; }
#define WIDTH 16
#endif

#define ACC 24
template <class V, class S>
static double run(long iters, V (*set1)(S), V (*fma)(V, V, V), V (*add)(V, V), double* sink) {
    V acc[ACC];
    for (int i = 0; i < ACC; ++i) acc[i] = set1(S(1) + S(i) * S(1e-3));
    const V a = set1(S(0.999999)), b = set1(S(1e-7));
    timespec ts0, ts1;  // this thread's CPU time: time spent descheduled does not count
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts0);
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 24
        for (int i = 0; i < ACC; ++i) acc[i] = fma(acc[i], a, b);
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts1);
    V s = acc[0];
    for (int i = 1; i < ACC; ++i) s = add(s, acc[i]);
    S out[WIDTH / sizeof(S)];
    __builtin_memcpy(out, &s, sizeof(s));
    *sink += out[0];
    return double(ts1.tv_sec - ts0.tv_sec) + 1e-9 * double(ts1.tv_nsec - ts0.tv_nsec);
}

static VF set1f(float x) { return SET1F(x); }
static VD set1d(double x) { return SET1D(x); }
static VF fmaf_(VF a, VF b, VF c) { return FMAF(a, b, c); }
static VD fmad_(VD a, VD b, VD c) { return FMAD(a, b, c); }
static VF addf(VF a, VF b) { return ADDF(a, b); }
static VD addd(VD a, VD b) { return ADDD(a, b); }

// For a probe interleaved with other work in one process (peak.probe): the wall-clock seconds of
// `iters` float32 (dtype 0) or float64 (dtype 1) iterations.
extern "C" double gd_peak_probe(long iters, int dtype) {
    double sink = 0;
    timespec ts0, ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    if (dtype == 0) run<VF, float>(iters, set1f, fmaf_, addf, &sink);
    else run<VD, double>(iters, set1d, fmad_, addd, &sink);
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    return double(ts1.tv_sec - ts0.tv_sec) + 1e-9 * double(ts1.tv_nsec - ts0.tv_nsec) + sink * 0;
}

int main(int argc, char** argv) {
    const long iters = argc > 1 ? atol(argv[1]) : 2000000L;
    const int reps = argc > 2 ? atoi(argv[2]) : 41;
    double sink = 0, bestf = 1e30, bestd = 1e30;
    for (int r = 0; r < reps; ++r) {
        double tf = run<VF, float>(iters, set1f, fmaf_, addf, &sink);
        double td = run<VD, double>(iters, set1d, fmad_, addd, &sink);
        if (tf < bestf) bestf = tf;
        if (td < bestd) bestd = td;
    }
    // flops per FMA lane: 2; lanes per vector: WIDTH / sizeof(T)
    const double nf = double(iters) * ACC * (WIDTH / 4) * 2;
    const double nd = double(iters) * ACC * (WIDTH / 8) * 2;
    printf("%.3f %.3f %g\n", nf / bestf * 1e-9, nd / bestd * 1e-9, sink * 0);
    return 0;
}
"""

_FLAGS = {
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
    "avx2": ["-mavx2", "-mfma"],
    "baseline": [],
}


# the probe's independent accumulators, as _SOURCE defines them
_ACC = int(re.search(r"#define ACC (\d+)", _SOURCE).group(1))


def _build(tmp: str, isa: str, shared: bool) -> Path:
    """Compiles _SOURCE for `isa` in tmp: an executable, or a shared library (for Probe)."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        raise RuntimeError("peak: no C++ compiler (g++) on PATH")
    src = Path(tmp) / "peak.cpp"
    if not src.exists():
        src.write_text(_SOURCE)
    out = Path(tmp) / (f"probe_{isa}.so" if shared else f"peak_{isa}")
    subprocess.run([cxx, "-O2", "-std=c++17", *(["-fPIC", "-shared"] if shared else []),
                    *_FLAGS[isa], str(src), "-o", str(out)], check=True)
    return out


def measure_peak(
    isas: list[str] | None = None, iters: int = 2_000_000
) -> dict[str, dict[str, float]]:
    """Returns {isa: {"float32": GF/s, "float64": GF/s}} for one core: the best of many short
    runs timed in thread CPU time, so other work on the machine lowers it as little as possible."""
    if isas is None:
        isas = list(_FLAGS)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for isa in isas:
            exe = _build(tmp, isa, shared=False)
            out = subprocess.run([str(exe), str(iters)], check=True, capture_output=True, text=True)
            f32, f64, _ = out.stdout.split()
            results[isa] = {"float32": float(f32), "float64": float(f64)}
    return results


class Probe:
    """The FMA-throughput probe loaded into this process, to be timed between samples of other
    work (bench_gemm interleaves it with the GEMMs): on a shared machine whose clock follows the
    load, a peak measured in the same spell as the work it is compared with is the fair
    denominator. Calling it runs `iters` iterations; flops() is what one call computes."""

    def __init__(self, isa: str, dtype: str, iters: int = 200_000) -> None:
        import ctypes

        self._tmp = tempfile.TemporaryDirectory()
        lib = _build(self._tmp.name, isa, shared=True)
        self._fn = ctypes.CDLL(str(lib)).gd_peak_probe
        self._fn.restype = ctypes.c_double
        self._fn.argtypes = [ctypes.c_long, ctypes.c_int]
        self._iters, self._dtype = iters, 0 if dtype == "float32" else 1
        width = {"avx512": 64, "avx2": 32, "baseline": 16}[isa]
        self._flops = 2.0 * iters * _ACC * width / (4 if dtype == "float32" else 8)

    def __call__(self) -> float:
        return self._fn(self._iters, self._dtype)

    def flops(self) -> float:
        return self._flops


def _cpu_supports(isa: str) -> bool:
    try:
        from graddesc import _core

        return bool(_core.cpu_supports(isa))
    except ImportError:
        return isa == "baseline"


# The OpenBLAS core type of the AVX2 proxy. This OpenBLAS (NumPy's wheel, DYNAMIC_ARCH) accepts
# Haswell, Zen (which it maps to the same Haswell kernels and reports as Haswell), SkylakeX and
# Sandybridge among others; an unknown name is ignored (it keeps the detected SkylakeX).
PROXY_CORETYPE = "Haswell"


def avx2_proxy(enabled: bool) -> None:
    """With enabled, makes sure this process runs as the AVX2 proxy: graddesc's AVX2 kernels
    (GRADDESC_ISA=avx2) against NumPy's OpenBLAS forced to its AVX2 kernels
    (OPENBLAS_CORETYPE=Haswell). Both are read when the libraries load, so when they are not set
    yet this re-executes the script with them (before anything is timed). Refuses to run on a CPU
    without AVX2 (graddesc's CPUID check, in a subprocess, before any AVX2 code runs here).
    Without enabled, nothing changes."""
    if not enabled:
        return
    if (os.environ.get("GRADDESC_ISA") == "avx2"
            and os.environ.get("OPENBLAS_CORETYPE") == PROXY_CORETYPE):
        return
    code = "from graddesc import _core; print(int(_core.cpu_supports('avx2')))"
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "GRADDESC_ISA"})
    if check.stdout.strip() != "1":
        raise SystemExit("--avx2-proxy: this CPU has no AVX2 (or graddesc did not import: "
                         f"{check.stderr.strip()[-300:]})")
    env = dict(os.environ, GRADDESC_ISA="avx2", OPENBLAS_CORETYPE=PROXY_CORETYPE)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def cpu_name() -> str:
    """The CPU's model name, family and model (/proc/cpuinfo: a VM may name only the vendor),
    or the platform's processor string."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in info:
                    info[key] = value.strip()
                if not line.strip() and info:
                    break
    except OSError:
        pass
    if "model name" in info:
        return (f"{info['model name']} (family {info.get('cpu family', '?')}, "
                f"model {info.get('model', '?')})")
    import platform

    return platform.processor() or "unknown CPU"


def blas_core() -> str:
    """The kernel set NumPy's OpenBLAS picked (openblas_get_corename), or why it is unknown."""
    import numpy as np

    here = os.path.dirname(np.__file__)
    libs = sorted(glob.glob(os.path.join(here, os.pardir, "numpy.libs", "lib*openblas*.so*")))
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                     "openblas_get_corename64_", "openblas_get_corename"):
            fn = getattr(handle, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return "unknown (no OpenBLAS found beside NumPy)"


def describe() -> str:
    """One line: the CPU, graddesc's ISA and NumPy's OpenBLAS core (and whether the AVX2 proxy
    is on), for the benchmarks' headers."""
    from graddesc import _core

    proxy = (os.environ.get("GRADDESC_ISA") == "avx2"
             and os.environ.get("OPENBLAS_CORETYPE") == PROXY_CORETYPE)
    return (f"CPU: {cpu_name()}; graddesc ISA: {_core.isa()}; NumPy OpenBLAS core: "
            f"{blas_core()} (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')})"
            + ("; AVX2 proxy" if proxy else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--isa", choices=list(_FLAGS), help="this ISA only")
    args = parser.parse_args()
    if args.isa is not None and not _cpu_supports(args.isa):
        parser.error(f"--isa {args.isa}: this CPU does not support it")
    isas = [args.isa] if args.isa else [isa for isa in _FLAGS if _cpu_supports(isa)]
    res = measure_peak(isas)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"{'isa':<10} {'fp32 GF/s':>10} {'fp64 GF/s':>10}   (one core, FMA throughput)")
    for isa, r in res.items():
        print(f"{isa:<10} {r['float32']:>10.1f} {r['float64']:>10.1f}")


if __name__ == "__main__":
    main()

"""Tests the runtime configuration (ISA, threads, config) of the kernels in `graddesc._core`.

Import-time behaviour (GRADDESC_ISA, the default ISA and thread count) is checked in fresh
interpreters started with `sys.executable -c`.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import graddesc
import numpy as np
import pytest
from graddesc import _core

SUPPORTED_ISAS = [name for name in _core.ISAS if _core.cpu_supports(name)]
UNSUPPORTED_ISAS = [name for name in _core.ISAS if not _core.cpu_supports(name)]
ISA_LIST = ", ".join(_core.ISAS)  # as error messages name them

# The ISAs a build for each processor has, best first (CMakeLists.txt).
X86_ISAS = ("avx512", "avx2", "baseline")
ARM_ISAS = ("neon", "baseline")
MACHINE = platform.machine().lower()
EXPECTED_ISAS = (X86_ISAS if MACHINE in ("x86_64", "amd64")
                 else ARM_ISAS if MACHINE in ("aarch64", "arm64") else ("baseline",))


def _run_python(code: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter; a None value removes that variable."""
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# ----------------------------------------------------------------------------------------- ISA


def test_kernel_isa_names():
    assert _core.ISAS == EXPECTED_ISAS
    assert _core.isa() in _core.ISAS
    assert _core.best_isa() in _core.ISAS


def test_kernel_cpu_supports():
    assert _core.cpu_supports("baseline") is True
    assert _core.cpu_supports(_core.best_isa()) is True
    assert _core.cpu_supports("sse9") is False
    # "best" is the first supported one in preference order (avx512 > avx2 > baseline on x86-64)
    assert _core.best_isa() == SUPPORTED_ISAS[0]
    if _core.cpu_supports("avx512"):
        assert _core.cpu_supports("avx2")
    # NEON is part of every AArch64 CPU; x86 ISAs are not built for ARM, nor NEON for x86
    if "neon" in _core.ISAS:
        assert _core.cpu_supports("neon") is True
        assert _core.cpu_supports("avx2") is False
    else:
        assert _core.cpu_supports("neon") is False


def test_kernel_set_isa_switches(isa):
    assert _core.isa() == isa
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(_core.gemm(x, x), x @ x)


@pytest.mark.parametrize("name", ["sse9", "AVX2", "", "avx2 "])
def test_kernel_set_isa_rejects_unknown_names(name):
    before = _core.isa()
    with pytest.raises(ValueError, match=rf"set_isa: name must be one of {ISA_LIST}, got"):
        _core.set_isa(name)
    assert _core.isa() == before


def test_kernel_set_isa_rejects_unsupported_isa():
    if not UNSUPPORTED_ISAS:
        pytest.skip("this CPU supports every ISA")
    before = _core.isa()
    for name in UNSUPPORTED_ISAS:
        with pytest.raises(ValueError, match=rf"set_isa: '{name}' is not supported by this CPU"):
            _core.set_isa(name)
        assert _core.isa() == before


def test_kernel_default_isa_is_best():
    proc = _run_python(
        """
        from graddesc import _core
        print(_core.isa(), _core.best_isa())
        """,
        GRADDESC_ISA=None,
    )
    assert proc.returncode == 0, proc.stderr
    isa, best = proc.stdout.split()
    assert isa == best == _core.best_isa()


def test_kernel_empty_graddesc_isa_means_default():
    proc = _run_python("from graddesc import _core; print(_core.isa())", GRADDESC_ISA="")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == _core.best_isa()


@pytest.mark.parametrize("name", SUPPORTED_ISAS)
def test_kernel_graddesc_isa_env_forces_isa(name):
    proc = _run_python(
        """
        import numpy as np
        import graddesc
        from graddesc import _core
        a = np.arange(12.0).reshape(3, 4)
        assert np.array_equal(_core.gemm(a, a, trans_b=True), a @ a.T)
        print(_core.isa(), graddesc.config()["isa"])
        """,
        GRADDESC_ISA=name,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [name, name]


_IMPORT_AND_REPORT = """
    try:
        import graddesc._core
    except ImportError as e:
        print("ImportError:", e)
    else:
        print("imported", graddesc._core.isa())
    """


@pytest.mark.parametrize("value", ["sse9", "AVX2", "avx2,baseline", "native"])
def test_kernel_bad_graddesc_isa_is_import_error(value):
    proc = _run_python(_IMPORT_AND_REPORT, GRADDESC_ISA=value)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip()
    assert out.startswith("ImportError:"), out
    assert f"GRADDESC_ISA='{value}'" in out
    assert f"is not one of {ISA_LIST}" in out


def test_kernel_unsupported_graddesc_isa_is_import_error():
    if not UNSUPPORTED_ISAS:
        pytest.skip("this CPU supports every ISA")
    for name in UNSUPPORTED_ISAS:
        proc = _run_python(_IMPORT_AND_REPORT, GRADDESC_ISA=name)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("ImportError:") and "not supported by this CPU" in proc.stdout


# GRADDESC_CPU_LACKS makes the CPU look as if it lacked the named ISAs, so the refusal paths run
# on every machine, not only on one that really lacks AVX-512. The table of a refused ISA must
# never be built: building it runs instructions of that ISA (a SIGILL on a CPU without them).
_REFUSALS = """
    import graddesc._core as c
    print("isa", c.isa(), "best", c.best_isa())
    print("supports", *[int(c.cpu_supports(n)) for n in c.ISAS])
    for name in c.ISAS:
        try:
            c.set_isa(name)
            print("set", name, "ok")
        except ValueError as e:
            print("set", name, "refused:", e)
    print("built", *sorted(c._tables_built()))
    """


# (GRADDESC_CPU_LACKS, the ISAs left visible) for each processor's build; hiding AVX2 hides
# AVX-512 too.
_LACKS = {
    X86_ISAS: [("avx512", ["avx2", "baseline"]), ("avx2", ["baseline"]),
               ("avx2,avx512", ["baseline"])],
    ARM_ISAS: [("neon", ["baseline"])],
}.get(_core.ISAS, [])


@pytest.mark.parametrize("lacks, visible", _LACKS)
def test_kernel_refused_isa_table_is_never_built(lacks, visible):
    visible = [n for n in visible if n in SUPPORTED_ISAS]
    proc = _run_python(_REFUSALS, GRADDESC_CPU_LACKS=lacks, GRADDESC_ISA=None)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"isa {visible[0]} best {visible[0]}"
    assert lines[1] == "supports " + " ".join(str(int(n in visible)) for n in _core.ISAS)
    n = len(_core.ISAS)
    for name, line in zip(_core.ISAS, lines[2:2 + n]):
        if name in visible:
            assert line == f"set {name} ok"
        else:
            assert line == f"set {name} refused: set_isa: '{name}' is not supported by this CPU"
    assert lines[2 + n] == "built " + " ".join(sorted(visible))


@pytest.mark.parametrize("lacks", [name for name in _core.ISAS if name != "baseline"])
def test_kernel_graddesc_isa_of_a_lacking_cpu_is_import_error(lacks):
    # The user on an AVX2-only CPU who sets GRADDESC_ISA=avx512: a clear ImportError, no crash.
    proc = _run_python(_IMPORT_AND_REPORT, GRADDESC_CPU_LACKS=lacks, GRADDESC_ISA=lacks)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip()
    assert out.startswith(f"ImportError: GRADDESC_ISA='{lacks}' is not supported by this CPU"), out


def test_kernel_only_the_selected_table_is_built():
    # (GRADDESC_ISA unset: the default choice, whatever ISA this test run forces)
    proc = _run_python(_REFUSALS.split("for name")[0] + "print('built', *c._tables_built())\n",
                       GRADDESC_ISA=None)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"built {_core.best_isa()}"


# ------------------------------------------------------------------------------------- threads


def test_kernel_has_openmp_is_bool():
    assert isinstance(_core.has_openmp, bool)


def test_kernel_thread_count_roundtrip(threads):
    assert _core.get_num_threads() >= 1
    for n in (1, 2, 3, 8, 1):
        threads(n)
        assert _core.get_num_threads() == n


@pytest.mark.parametrize("n", [0, -1, -100])
def test_kernel_set_num_threads_rejects_non_positive(threads, n):
    threads(3)
    with pytest.raises(ValueError, match=rf"set_num_threads: n must be >= 1, got {n}"):
        _core.set_num_threads(n)
    assert _core.get_num_threads() == 3


@pytest.mark.parametrize("n", [-(2 ** 31) - 1, -1, 0, 2 ** 31, 10 ** 30])
def test_set_num_threads_rejects_out_of_range_with_value_error(threads, n):
    threads(3)
    limit = "at most 2147483647" if n > 0 else ">= 1"
    with pytest.raises(ValueError, match=rf"set_num_threads: n must be {limit}, got {n}"):
        graddesc.set_num_threads(n)
    assert graddesc.get_num_threads() == 3
    graddesc.set_num_threads(2 ** 31 - 1)  # the largest count is accepted
    assert graddesc.get_num_threads() == 2 ** 31 - 1


def test_kernel_set_num_threads_rejects_non_int():
    with pytest.raises(TypeError):
        _core.set_num_threads(2.5)
    with pytest.raises(TypeError):
        _core.set_num_threads("2")


def test_kernel_default_thread_count_follows_omp_num_threads():
    if not _core.has_openmp:
        pytest.skip("built without OpenMP: always one thread")
    proc = _run_python(
        "from graddesc import _core; print(_core.get_num_threads())", OMP_NUM_THREADS="3"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"


def test_kernel_results_do_not_depend_on_threads_across_isas(isa, threads, rng):
    # One mixed workload per ISA: forward and backward of a small MLP layer, on 1 and 3 threads.
    x = rng.standard_normal((257, 300))
    w = rng.standard_normal((129, 300))
    dy = rng.standard_normal((257, 129))

    def work():
        y = _core.activation_forward("tanh", _core.linear_forward(x, w))
        dz = _core.activation_backward("tanh", dy, y=y)
        return (y, *_core.linear_backward(dz, x, w), _core.sum_all(y))

    threads(1)
    one = work()
    threads(3)
    three = work()
    for a, b in zip(one, three):
        assert np.array_equal(a, b)


def test_kernel_calls_from_python_threads_agree(rng):
    # The bindings release the GIL: concurrent calls must neither crash nor mix up their outputs.
    inputs = [rng.standard_normal((96, 80)).astype(np.float32) for _ in range(8)]
    w = rng.standard_normal((64, 80)).astype(np.float32)

    def job(x):
        y = _core.linear_forward(x, w)
        return y, _core.softmax_forward(y), _core.sum_axis(y, 0)

    serial = [job(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(job, inputs * 4))
    for i, got in enumerate(parallel):
        for a, b in zip(got, serial[i % len(inputs)]):
            assert np.array_equal(a, b)


# -------------------------------------------------------------------------------------- config


def test_kernel_config_reports_runtime(isa, threads):
    threads(2)
    cfg = graddesc.config()
    assert cfg["isa"] == isa == _core.isa()
    assert cfg["best_isa"] == _core.best_isa()
    assert cfg["openmp"] is _core.has_openmp
    assert cfg["num_threads"] == 2

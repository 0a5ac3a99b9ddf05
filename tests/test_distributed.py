"""graddesc.distributed: collectives, DistributedSampler, DistributedDataParallel, faults.

The MPI checks run in a few `mpiexec -n 2` / `-n 3 --oversubscribe` launches on loopback (this
file is also the program those ranks run: `python test_distributed.py <job> <dir>`); every
launch has a timeout. NumPy (and the same computation on one process, which every rank can do
since every rank has the whole batch) is the oracle. Without mpi4py or mpiexec the MPI tests
skip; the sampler and hook tests need neither.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import graddesc as gd
from graddesc.distributed import DistributedSampler

HERE = os.path.abspath(__file__)
TIMEOUT = 120  # seconds for one launch (the checks take a few seconds)


# ---- launching ---------------------------------------------------------------------------------
def _mpiexec() -> str | None:
    here = os.path.dirname(sys.executable)
    return shutil.which("mpiexec", path=here + os.pathsep + os.environ.get("PATH", ""))


def _have_mpi() -> str:
    """'' when MPI tests can run, else the reason to skip."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'graddesc[distributed]')"
    if _mpiexec() is None:
        return "mpiexec is not on PATH (pip install 'graddesc[distributed]' installs Open MPI)"
    return ""


needs_mpi = pytest.mark.skipif(bool(_have_mpi()), reason=_have_mpi() or "MPI available")


def launch(n: int, job: str, tmp: str, *extra: str, timeout: float = TIMEOUT,
           oversubscribe: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl="self,sm,tcp", OMPI_MCA_btl_tcp_if_include="lo",
               GRADDESC_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [_mpiexec(), "-n", str(n)]
    if oversubscribe:
        cmd.append("--oversubscribe")
    cmd += [sys.executable, HERE, job, tmp, *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _ok(res: subprocess.CompletedProcess, n: int, job: str) -> None:
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{job}: exit {res.returncode}\n{out[-4000:]}"
    assert out.count(f"DONE {job}") == n, out[-4000:]


# ---- the ranks' side ---------------------------------------------------------------------------
def _mlp(seed: int) -> gd.nn.Module:
    gd.manual_seed(seed)
    return gd.nn.Sequential(gd.nn.Linear(6, 16), gd.nn.ReLU(), gd.nn.Linear(16, 8), gd.nn.ReLU(),
                            gd.nn.Linear(8, 3))


def _grads(model: gd.nn.Module) -> list:
    return [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()]


def job_collectives(tmp: str) -> None:
    """Every collective against NumPy, with float32, float64 and int64, and the bad inputs."""
    import graddesc.distributed as dist

    dist.init_process_group("mpi")
    r, n = dist.get_rank(), dist.get_world_size()
    assert dist.is_initialized()
    rng = np.random.default_rng(7)
    per_rank = [rng.standard_normal(37) for _ in range(n)]  # every rank knows every rank's data
    for dt in (np.float32, np.float64, np.int64):
        vals = [(v * 100).astype(dt) for v in per_rank]
        for op, ref in (("sum", None), (dist.ReduceOp.SUM, None), (dist.ReduceOp.MAX, np.max),
                        (dist.ReduceOp.MIN, np.min), (dist.ReduceOp.AVG, None), ("mean", None)):
            t = gd.tensor(vals[r])
            dist.all_reduce(t, op=op)
            stacked = np.stack(vals)
            if ref is not None:
                want = ref(stacked, axis=0)
                assert np.array_equal(t.numpy(), want), (op, dt)
            else:
                total = stacked[0].copy()
                for v in stacked[1:]:
                    total = total + v
                if op in (dist.ReduceOp.AVG, "mean"):
                    want = total / dt(n) if dt != np.int64 else total // n
                    want = want.astype(dt)
                else:
                    want = total
                if n == 2 or dt == np.int64:  # one addition (or exact integers): the same bits
                    assert np.array_equal(t.numpy(), want), (op, dt)
                else:
                    np.testing.assert_allclose(t.numpy(), want, rtol=1e-5)
            # the ordered reduction: rank order, the same bits for any number of ranks
            if op in ("sum", dist.ReduceOp.MAX, dist.ReduceOp.AVG):
                t = gd.tensor(vals[r])
                dist.all_reduce_ordered(t, op=op)
                if ref is None:
                    assert np.array_equal(t.numpy(), want), ("ordered", op, dt)
                else:
                    assert np.array_equal(t.numpy(), ref(np.stack(vals), axis=0))
        # async all_reduce
        t = gd.tensor(vals[r])
        work = dist.all_reduce(t, async_op=True)
        work.wait()
        assert work.is_completed()
        assert np.array_equal(t.numpy(), sum(vals[1:], vals[0])) or n > 2
        # broadcast from the last rank
        t = gd.tensor(vals[r].reshape(37, 1))
        dist.broadcast(t, src=n - 1)
        assert np.array_equal(t.numpy(), vals[n - 1].reshape(37, 1))
        # all_gather into a list, and into one tensor
        outs = [gd.zeros(37, dtype=gd.tensor(vals[0]).dtype) for _ in range(n)]
        dist.all_gather(outs, gd.tensor(vals[r]))
        for k in range(n):
            assert np.array_equal(outs[k].numpy(), vals[k])
        out = gd.tensor(np.zeros(37 * n, dtype=dt))
        dist.all_gather_into_tensor(out, gd.tensor(vals[r]))
        assert np.array_equal(out.numpy(), np.concatenate(vals))
        # reduce_scatter: rank r gets the sum of every rank's chunk r
        chunks = [np.stack([(v[:12] * (k + 1)).astype(dt) for k in range(n)]) for v in per_rank]
        chunks = [(c * 100).astype(dt) for c in chunks]  # chunks[rank][k]: rank's input k
        mine = [gd.tensor(chunks[r][k]) for k in range(n)]
        o = gd.tensor(np.zeros(12, dtype=dt))
        dist.reduce_scatter(o, mine, op="max")
        assert np.array_equal(o.numpy(), np.max(np.stack([c[r] for c in chunks]), axis=0))
        o = gd.tensor(np.zeros(12, dtype=dt))
        dist.reduce_scatter_tensor(o, gd.tensor(chunks[r].reshape(-1)), op="sum")
        want = np.sum(np.stack([c[r] for c in chunks]), axis=0)
        if dt == np.int64 or n == 2:
            assert np.array_equal(o.numpy(), want)
        else:
            np.testing.assert_allclose(o.numpy(), want, rtol=1e-5)
    dist.barrier()
    # bad input: sizes that differ between ranks are one clear error on every rank
    t = gd.zeros(5 + r)
    with pytest.raises(dist.DistributedError, match="element count ranges from 5 to"):
        dist.all_reduce(t)
    t = gd.zeros(5, dtype=gd.float64 if r == 0 else gd.float32)
    with pytest.raises(dist.DistributedError, match="dtype"):
        dist.broadcast(t, 0)
    with pytest.raises(ValueError, match="op must be a ReduceOp"):
        dist.all_reduce(gd.zeros(3), op="prod")
    with pytest.raises(ValueError, match="src must be a rank"):
        dist.broadcast(gd.zeros(3), src=n)
    with pytest.raises(ValueError, match="tensor_list must be a list of world size"):
        dist.all_gather([gd.zeros(3)] * (n + 1), gd.zeros(3))
    with pytest.raises(ValueError, match="contiguous"):
        dist.all_reduce(gd.zeros(4, 4).t())
    with pytest.raises(TypeError, match="float32, float64 or int64"):
        dist.all_reduce(gd.zeros(3, dtype=gd.bool))
    with pytest.raises(RuntimeError, match="twice"):
        dist.init_process_group("mpi")
    dist.barrier()
    print(f"DONE collectives rank {r}", flush=True)
    dist.destroy_process_group()
    assert not dist.is_initialized()


def job_ddp(tmp: str) -> None:
    """DDP gradients against one process's gradients of the same global batch."""
    import graddesc.distributed as dist

    dist.init_process_group("mpi")
    r, n = dist.get_rank(), dist.get_world_size()
    rng = np.random.default_rng(3)
    X = gd.tensor(rng.standard_normal((12 * n, 6)).astype(np.float32))
    Y = gd.tensor(rng.integers(0, 3, 12 * n))
    loss_fn = gd.nn.CrossEntropyLoss()
    shard = slice(12 * r, 12 * (r + 1))

    # rank-specific initial weights: the construction broadcasts rank 0's. shared_memory=None
    # (all ranks on this node): MPI shared-memory windows, rank order; False: MPI_Iallreduce
    for deterministic, shared in ((False, None), (True, None), (False, False), (True, False)):
        model = _mlp(seed=100 + r)
        ddp = dist.DistributedDataParallel(model, bucket_cap_mb=0.0005,
                                           deterministic=deterministic, shared_memory=shared)
        assert len(ddp._buckets) > 1  # (several buckets started during backward)
        assert (ddp._shm is not None) == (shared is None)
        ref = _mlp(seed=100)
        for p, q in zip(model.parameters(), ref.parameters()):
            assert np.array_equal(p.detach().numpy(), q.detach().numpy())
        loss_fn(ddp(X[shard]), Y[shard]).backward()
        got = _grads(model)
        # oracle 1: one process, whole global batch (mean loss): equal within rounding
        ref.zero_grad()
        loss_fn(ref(X), Y).backward()
        for g, w in zip(got, _grads(ref)):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        # oracle 2: each shard's gradient on one process, summed in rank order, / n: bitwise
        # (with 2 ranks for MPI's order; with any number in deterministic mode)
        shard_grads = []
        for k in range(n):
            ref.zero_grad()
            sl = slice(12 * k, 12 * (k + 1))
            loss_fn(ref(X[sl]), Y[sl]).backward()
            shard_grads.append(_grads(ref))
        for i, g in enumerate(got):
            total = shard_grads[0][i].copy()
            for k in range(1, n):
                total = total + shard_grads[k][i]
            want = total / np.float32(n)
            if deterministic or n == 2 or shared is None:
                assert np.array_equal(g, want), (deterministic, shared, i,
                                                 np.abs(g - want).max())
            else:
                np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)
        # every rank holds the same bits
        flat = np.concatenate([x.ravel() for x in got])
        every = dist.all_gather_object(flat.tobytes())
        assert all(e == every[0] for e in every)
        # a second step: .grad zeroed in place (the engine accumulates into the averaged
        # buffer) and a .grad replaced by the user: the same average of the new gradients
        for p in model.parameters():
            p.grad.zero_()
        list(model.parameters())[0].grad = gd.zeros(16, 6)
        loss_fn(ddp(X[shard] * 2), Y[shard]).backward()
        ref.zero_grad()
        loss_fn(ref(X * 2), Y).backward()
        for g, w in zip(_grads(model), _grads(ref)):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)

    # shared memory over many rounds, the ranks out of step by random sleeps (a rank writing
    # round t + 1's gradients while another still reads round t's must not change a bit): the
    # default path (2 ranks: each rank averages both buckets whole, two input regions in turns;
    # 3 ranks: one chunk each), and with 3 ranks the direct path too (rank order for 3 ranks)
    from graddesc.distributed import ddp as ddp_mod

    for direct_max in sorted({ddp_mod._DIRECT_MAX_WORLD, n}):
        old_max = ddp_mod._DIRECT_MAX_WORLD
        ddp_mod._DIRECT_MAX_WORLD = direct_max
        try:
            model = _mlp(seed=30)
            ddp = dist.DistributedDataParallel(model, bucket_cap_mb=0.0005)
        finally:
            ddp_mod._DIRECT_MAX_WORLD = old_max
        assert ddp._shm is not None and ddp._shm[3] == (n <= direct_max)
        ref = _mlp(seed=30)
        delay = np.random.default_rng(40 + r)
        for step in range(7):
            if step % 2:
                model.zero_grad(set_to_none=False)  # (accumulates into the private buckets)
            else:
                model.zero_grad()
            xs = X[shard] * (1 + step)
            time.sleep(delay.uniform(0, 0.004))
            out = ddp(xs)
            time.sleep(delay.uniform(0, 0.004))
            loss_fn(out, Y[shard]).backward()
            got = _grads(model)
            shard_grads = []
            for k in range(n):
                ref.zero_grad()
                sl = slice(12 * k, 12 * (k + 1))
                loss_fn(ref(X[sl] * (1 + step)), Y[sl]).backward()
                shard_grads.append(_grads(ref))
            for i, g in enumerate(got):
                total = shard_grads[0][i].copy()
                for k in range(1, n):
                    total = total + shard_grads[k][i]
                assert np.array_equal(g, total / np.float32(n)), (direct_max, step, i)

    # no_sync: two micro-batches accumulated locally, averaged once at the second backward
    model = _mlp(seed=5)
    ddp = dist.DistributedDataParallel(model)
    half = [slice(12 * r, 12 * r + 6), slice(12 * r + 6, 12 * (r + 1))]
    with ddp.no_sync():
        loss_fn(ddp(X[half[0]]), Y[half[0]]).backward()
    local = _grads(model)  # not averaged yet: this rank's own gradient
    ref = _mlp(seed=5)
    loss_fn(ref(X[half[0]]), Y[half[0]]).backward()
    for g, w in zip(local, _grads(ref)):
        assert np.array_equal(g, w)
    loss_fn(ddp(X[half[1]]), Y[half[1]]).backward()
    ref.zero_grad()
    for k in range(n):
        for h in (slice(12 * k, 12 * k + 6), slice(12 * k + 6, 12 * (k + 1))):
            (loss_fn(ref(X[h]), Y[h]) / n).backward()
    for g, w in zip(_grads(model), _grads(ref)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)

    # a parameter no rank uses keeps .grad None; one used on one rank only is averaged
    class TwoHeads(gd.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = gd.nn.Linear(6, 3)
            self.b = gd.nn.Linear(6, 3)
            self.c = gd.nn.Linear(6, 3)

        def forward(self, x, use_b):
            return self.a(x) + (self.b(x) if use_b else 0)

    gd.manual_seed(1)
    m = TwoHeads()
    ddp = dist.DistributedDataParallel(m)
    loss_fn(ddp(X[shard], r == 0), Y[shard]).backward()
    assert m.c.weight.grad is None and m.c.bias.grad is None
    ref = TwoHeads()
    ref.load_state_dict(m.state_dict())
    ref.zero_grad()
    loss_fn(ref(X[0:12], True), Y[0:12]).backward()
    wb = ref.b.weight.grad.numpy() / n
    np.testing.assert_allclose(m.b.weight.grad.numpy(), wb, rtol=1e-5, atol=1e-7)

    # every optimizer sees the averaged gradient: training stays identical on every rank
    # (zero_grad to None and to zeros in turn, with shared memory and with MPI_Iallreduce)
    for make, shared in ((lambda p: gd.optim.SGD(p, lr=0.1, momentum=0.9), None),
                         (lambda p: gd.optim.SGD(p, lr=0.1, momentum=0.9), False),
                         (lambda p: gd.optim.Adam(p, lr=1e-2), None),
                         (lambda p: gd.optim.RMSprop(p, lr=1e-2), False)):
        model = _mlp(seed=9 + r)
        ddp = dist.DistributedDataParallel(model, shared_memory=shared)
        opt = make(list(ddp.parameters()))
        ref = _mlp(seed=9)
        ropt = make(list(ref.parameters()))
        for step in range(4):
            opt.zero_grad(set_to_none=step % 2 == 0)
            loss_fn(ddp(X[shard]), Y[shard]).backward()
            opt.step()
            ropt.zero_grad()
            loss_fn(ref(X), Y).backward()
            ropt.step()
        for p, q in zip(model.parameters(), ref.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-4,
                                       atol=1e-5)
        every = dist.all_gather_object(
            np.concatenate([p.detach().numpy().ravel() for p in model.parameters()]).tobytes())
        assert all(e == every[0] for e in every)

    # gd.compile: a compiled step with the all-reduce inside falls back to eager (one
    # warning) and matches the eager step bitwise
    def run(compiled: bool) -> np.ndarray:
        model = _mlp(seed=11)
        ddp = dist.DistributedDataParallel(model)
        opt = gd.optim.SGD(list(ddp.parameters()), lr=0.1, momentum=0.9)

        def step(x, y):
            opt.zero_grad()
            out = loss_fn(ddp(x), y)
            out.backward()
            opt.step()
            return out

        f = gd.compile(step) if compiled else step
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(4):
                f(X[shard], Y[shard])
        if compiled:
            assert any("gradient all-reduce (MPI" in str(w.message) for w in caught)
        return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])

    assert np.array_equal(run(True), run(False))

    # graddesc.fit(compile=True): forward + backward replayed locally, averaged after the
    # replay, before the optimizer step: bitwise equal to fit without compile
    def run_fit(compiled: bool) -> np.ndarray:
        model = _mlp(seed=12)
        ddp = dist.DistributedDataParallel(model)
        opt = gd.optim.SGD(list(ddp.parameters()), lr=0.1, momentum=0.9)
        batches = [(X[shard], Y[shard])] * 5
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gd.fit(ddp, loss_fn, batches, opt, epochs=2, progress=False, compile=compiled)
        return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])

    assert np.array_equal(run_fit(True), run_fit(False))

    # bad input: models whose parameter shapes differ are a clear error on every rank
    gd.manual_seed(0)
    bad = gd.nn.Linear(6, 3 + r)
    with pytest.raises(ValueError, match=r"models differ: entry 0 is parameter 'weight' of "
                                         r"shape \[3, 6\]"):
        dist.DistributedDataParallel(bad)
    with pytest.raises(ValueError, match=r"the settings bucket_cap_mb=0\.5, .* on rank 0 but "
                                         r"the settings bucket_cap_mb=2\.0"):
        dist.DistributedDataParallel(_mlp(0), bucket_cap_mb=0.5 if r == 0 else 2.0)
    with pytest.raises(ValueError, match="shared_memory must be None"):
        dist.DistributedDataParallel(_mlp(0), shared_memory="yes")
    dist.barrier()
    # after destroy_process_group (which frees the shared-memory windows) a DDP model refuses
    # to average, also once a new group exists; its .grad stay readable
    model = _mlp(0)
    ddp = dist.DistributedDataParallel(model)
    loss_fn(ddp(X[shard]), Y[shard]).backward()
    before = _grads(model)
    dist.destroy_process_group()
    assert all(np.array_equal(g, w) for g, w in zip(_grads(model), before))
    with pytest.raises(RuntimeError, match="process group was destroyed"):
        loss_fn(ddp(X[shard]), Y[shard]).backward()
    dist.init_process_group("mpi")
    with pytest.raises(RuntimeError, match="process group was destroyed"):
        ddp.synchronize_gradients()
    print(f"DONE ddp rank {r}", flush=True)


def job_train(tmp: str, ranks_for_resume: str, epochs_s: str, mode: str) -> None:
    """A small training job: DistributedSampler shards, DDP, a checkpoint written by rank 0
    each epoch, resumable with any number of ranks (global batch 12)."""
    import graddesc.distributed as dist

    dist.init_process_group("mpi")
    r, n = dist.get_rank(), dist.get_world_size()
    epochs = int(epochs_s)
    rng = np.random.default_rng(0)
    X = gd.tensor(rng.standard_normal((60, 6)).astype(np.float32))
    Y = gd.tensor(rng.integers(0, 3, 60))
    ds = gd.data.TensorDataset(X, Y)
    sampler = DistributedSampler(ds, shuffle=True, seed=4)
    loader = gd.data.DataLoader(ds, batch_size=12 // n, sampler=sampler)
    model = _mlp(seed=21)
    ddp = dist.DistributedDataParallel(model)
    opt = gd.optim.Adam(list(ddp.parameters()), lr=1e-2)
    ckpt = os.path.join(tmp, "ckpt.gd")
    start = 0
    if mode == "resume":
        state = gd.load(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
    loss_fn = gd.nn.CrossEntropyLoss()
    for epoch in range(start, epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad()
            loss_fn(ddp(x), y).backward()
            opt.step()
        dist.save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(),
                              "epoch": epoch + 1}, ckpt)
        if epoch + 1 == 2 and r == 0:
            shutil.copy(ckpt, ckpt + ".2")  # (to resume from with other rank counts)
    if r == 0:
        np.save(os.path.join(tmp, f"params-{ranks_for_resume}.npy"),
                np.concatenate([p.detach().numpy().ravel() for p in model.parameters()]))
    print(f"DONE train rank {r}", flush=True)


def job_fault(tmp: str, kind: str) -> None:
    import graddesc.distributed as dist

    dist.init_process_group("mpi", timeout=3.0 if kind == "stall" else 60.0)
    r = dist.get_rank()
    t = gd.ones(1000)
    for step in range(10 ** 6):
        if r == 1 and step == 5:
            if kind == "raise":
                raise ValueError("rank 1 fails on purpose")
            if kind == "kill":
                os.kill(os.getpid(), 9)
            if kind == "stall":
                time.sleep(100)
        dist.all_reduce(t, op="max")


# ---- the tests -----------------------------------------------------------------------------
@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_collectives_against_numpy(tmp_path, n):
    _ok(launch(n, "collectives", str(tmp_path), oversubscribe=n > 2), n, "collectives")


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_ddp_gradients_match_one_process(tmp_path, n):
    _ok(launch(n, "ddp", str(tmp_path), oversubscribe=n > 2), n, "ddp")


@needs_mpi
def test_checkpoint_resume_across_rank_counts_and_reproducible(tmp_path):
    d = str(tmp_path)
    # straight: 4 epochs on 2 ranks, twice (bitwise the same)
    _ok(launch(2, "train", d, "2full", "4", "fresh"), 2, "train")
    _ok(launch(2, "train", d, "2again", "4", "fresh"), 2, "train")
    full = np.load(os.path.join(d, "params-2full.npy"))
    assert np.array_equal(full, np.load(os.path.join(d, "params-2again.npy")))
    # the checkpoint after 2 epochs on 2 ranks, resumed on 3 ranks (and on 1): the same
    # batches, so the same parameters up to the order of the float additions
    ckpt = os.path.join(d, "ckpt.gd")
    assert gd.load(ckpt)["epoch"] == 4 and gd.load(ckpt + ".2")["epoch"] == 2
    shutil.copy(ckpt + ".2", ckpt)
    _ok(launch(3, "train", d, "3", "4", "resume", oversubscribe=True), 3, "train")
    shutil.copy(ckpt + ".2", ckpt)
    _ok(launch(1, "train", d, "1", "4", "resume"), 1, "train")
    for k in ("3", "1"):
        np.testing.assert_allclose(np.load(os.path.join(d, f"params-{k}.npy")), full,
                                   rtol=1e-4, atol=1e-5)
    assert not [f for f in os.listdir(d) if f.endswith(".tmp")]  # (written atomically)


@needs_mpi
@pytest.mark.parametrize("kind,expect", [
    ("raise", "rank 1 fails on purpose"),
    ("kill", "signal 9"),
    ("stall", "waited 3 s for the other ranks"),
])
def test_failing_rank_ends_the_job(tmp_path, kind, expect):
    t0 = time.monotonic()
    res = launch(2, "fault", str(tmp_path), kind, timeout=90)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert expect in out, out[-3000:]
    if kind != "kill":
        assert "aborting every rank of the job" in out, out[-3000:]
    assert time.monotonic() - t0 < 60


@needs_mpi
def test_cli_train_ranks_2(tmp_path):
    """`graddesc train --ranks 2` starts mpiexec: one set of epoch lines and one final line (rank
    0), a checkpoint, a network that learned."""
    env = dict(os.environ, OMPI_MCA_btl="self,sm,tcp", OMPI_MCA_btl_tcp_if_include="lo",
               GRADDESC_NUM_THREADS="1")
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "graddesc", "train", "--ranks", "2", "--epochs",
                          "3", "--out", str(out)], env=env,
                         capture_output=True, text=True, timeout=TIMEOUT,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert sum(line.startswith("test accuracy:") for line in lines) == 1, res.stdout
    assert lines[-1].startswith("test accuracy: ") and float(lines[-1].split()[-1]) >= 0.8
    assert sum(line.startswith("epoch ") for line in lines) == 3, res.stdout
    assert "x 2 ranks" in lines[0] and "batch 32" in lines[0]
    assert gd.load(str(out / "checkpoint.npz"))["epoch"] == 3
    # a global batch that does not split across the ranks is refused on every rank
    res = subprocess.run([sys.executable, "-m", "graddesc", "train", "--ranks", "2",
                          "--batch-size", "33", "--out", str(tmp_path / "bad")], env=env,
                         capture_output=True, text=True, timeout=TIMEOUT,
                         stdin=subprocess.DEVNULL)
    assert res.returncode != 0
    assert "global batch 33 must split evenly across 2 ranks" in res.stderr


# ---- without MPI -----------------------------------------------------------------------------
@pytest.mark.parametrize("n_items,ranks", [(10, 3), (9, 3), (2, 4), (17, 2)])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_sampler_shards_disjoint_and_complete(n_items, ranks, drop_last, shuffle):
    ds = list(range(n_items))
    shards = []
    for r in range(ranks):
        s = DistributedSampler(ds, num_replicas=ranks, rank=r, shuffle=shuffle, seed=5,
                               drop_last=drop_last)
        s.set_epoch(3)
        shards.append(list(s))
        assert len(shards[-1]) == len(s)
    sizes = {len(x) for x in shards}
    assert len(sizes) == 1  # every rank the same number of steps
    flat = [i for x in shards for i in x]
    if drop_last:
        assert len(flat) == n_items // ranks * ranks
        assert len(set(flat)) == len(flat)  # disjoint
    else:
        assert set(flat) == set(range(n_items))  # complete
        assert len(flat) == -(-n_items // ranks) * ranks
        # padding repeats only as many as needed
        assert len(flat) - len(set(flat)) == len(flat) - n_items
    # the global order: rank r takes every ranks-th index of one permutation (PyTorch's rule)
    s0 = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=shuffle, seed=5)
    s0.set_epoch(3)
    perm = list(s0)
    if shuffle:
        assert sorted(perm) == ds
    else:
        assert perm == ds
    interleaved = [shards[i % ranks][i // ranks] for i in range(len(flat))]
    assert interleaved[:min(len(flat), n_items)] == perm[:min(len(flat), n_items)]


def test_sampler_epochs_and_bad_input():
    ds = list(range(50))
    s = DistributedSampler(ds, num_replicas=2, rank=1, seed=1)
    a = list(s)
    assert list(s) == a  # same epoch, same order
    s.set_epoch(1)
    assert list(s) != a
    with pytest.raises(ValueError, match="invalid rank 2"):
        DistributedSampler(ds, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be >= 1"):
        DistributedSampler(ds, num_replicas=0, rank=0)
    with pytest.raises(TypeError, match="shuffle must be a bool"):
        DistributedSampler(ds, num_replicas=2, rank=0, shuffle="yes")
    import graddesc.distributed as dist

    if not dist.is_initialized():
        with pytest.raises(RuntimeError, match="not initialized"):
            DistributedSampler(ds)
        with pytest.raises(RuntimeError, match="init_process_group"):
            dist.get_rank()


def test_post_accumulate_grad_hook_and_queue_callback():
    from graddesc.autograd import engine

    w = gd.randn(3, 2, requires_grad=True)
    b = gd.randn(2, requires_grad=True)
    seen = []

    def hook(t):
        seen.append((t is w, t.grad.numpy().copy()))
        if len(seen) == 1:
            engine.queue_callback(lambda: seen.append("end"))

    h = w.register_post_accumulate_grad_hook(hook)
    x = gd.randn(4, 3)
    (x @ w + b).sum().backward()
    assert seen[0][0] and seen[-1] == "end" and len(seen) == 2
    np.testing.assert_allclose(seen[0][1], x.numpy().sum(0)[:, None] * np.ones((1, 2)),
                               rtol=1e-5)
    # the hook sees the accumulated gradient, not the increment
    (x @ w).sum().backward()
    np.testing.assert_allclose(seen[2][1], 2 * seen[0][1], rtol=1e-5)
    h.remove()
    (x @ w).sum().backward()
    assert len(seen) == 3
    with pytest.raises(RuntimeError, match="no backward is running"):
        engine.queue_callback(lambda: None)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(hook)
    with pytest.raises(TypeError, match="must be callable"):
        w.register_post_accumulate_grad_hook(3)


def test_import_without_mpi_and_errors():
    import graddesc.distributed as dist

    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="backend must be 'mpi'"):
        dist.init_process_group("nccl")
    with pytest.raises(RuntimeError, match="not been initialized"):
        dist.all_reduce(gd.zeros(2))
    with pytest.raises(RuntimeError, match="not been initialized"):
        dist.DistributedDataParallel(gd.nn.Linear(2, 2))


def test_cli_refuses_zeroth_order_before_starting_ranks(capsys):
    from graddesc import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--ranks", "2", "--optimizer", "zeroth"])
    assert e.value.code == 2
    assert "zeroth-order optimizer uses no gradients to average" in capsys.readouterr().err


if __name__ == "__main__":  # one rank of a launch: python test_distributed.py <job> <dir> ...
    job, args = sys.argv[1], sys.argv[2:]
    {"collectives": job_collectives, "ddp": job_ddp, "train": job_train,
     "fault": job_fault}[job](*args)

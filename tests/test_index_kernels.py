"""The gather/scatter kernels (src/cpp/bind_index.cpp) against NumPy, their errors, and their
capture by gd.compile through a registered instruction kind (no per-op translator)."""

import warnings

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core

RNG = np.random.default_rng(7)
SHAPES = [((5,), 0), ((3, 4), 0), ((3, 4), 1), ((2, 3, 4), 1), ((2, 3, 4), 2), ((2, 1, 3, 2), 0)]


def _index(xshape, dim, rng, smaller=True):
    """An index array for `dim` of x's shape: other dims at most x's, entries in [-n, n)."""
    ishape = tuple(rng.integers(1, s + 1) if smaller and k != dim else s
                   for k, s in enumerate(xshape))
    ishape = tuple(int(s) for s in ishape)
    ishape = ishape[:dim] + (int(rng.integers(1, 6)),) + ishape[dim + 1:]
    n = xshape[dim]
    return rng.integers(-n, n, ishape).astype(np.int64)


def _np_gather(x, idx, dim):
    grids = list(np.indices(idx.shape, sparse=True))
    grids[dim] = idx
    return x[tuple(grids)]


def _np_scatter(out, idx, src, dim, accumulate):
    grids = list(np.indices(idx.shape, sparse=True))
    grids[dim] = idx % out.shape[dim]
    src = src[tuple(slice(0, s) for s in idx.shape)] if not np.isscalar(src) else src
    if accumulate:  # in index order, as the kernel adds
        for pos in np.ndindex(*idx.shape):
            q = tuple(int(g[pos] if np.ndim(g) == idx.ndim else g.reshape(-1)[0])
                      for g in np.broadcast_arrays(*grids))
            out[q] += src[pos] if not np.isscalar(src) else src
    else:
        out[tuple(grids)] = src
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xshape,dim", SHAPES)
def test_gather_matches_numpy(xshape, dim, dtype):
    for trial in range(4):
        rng = np.random.default_rng(trial)
        x = rng.standard_normal(xshape).astype(dtype)
        idx = _index(xshape, dim, rng)
        out = _core.index_gather(x, idx, dim)
        assert out.dtype == dtype and out.shape == idx.shape
        np.testing.assert_array_equal(out, _np_gather(x, idx, dim))
        # a negative dim names the same dimension
        np.testing.assert_array_equal(_core.index_gather(x, idx, dim - len(xshape)), out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("xshape,dim", SHAPES)
def test_scatter_matches_numpy(xshape, dim, accumulate, dtype):
    for trial in range(3):
        rng = np.random.default_rng(100 + trial)
        base = rng.standard_normal(xshape).astype(dtype)
        idx = _index(xshape, dim, rng)
        if not accumulate:  # repeated positions: which write wins is unspecified
            n = xshape[dim]
            perm = np.stack([rng.permutation(np.arange(-n, 0) if trial % 2 else np.arange(n))
                             for _ in range(int(np.prod(idx.shape)) // idx.shape[dim] or 1)])
            idx = np.moveaxis(
                perm[:, :min(idx.shape[dim], n)].reshape(
                    *[s for k, s in enumerate(idx.shape) if k != dim], -1), -1, dim).copy()
        # src larger than index in every dimension: only its leading block is read
        src = rng.standard_normal(tuple(s + 1 for s in idx.shape)).astype(dtype)
        got = _core.index_scatter(base, idx, src, dim, accumulate)
        want = _np_scatter(base.copy(), idx, src, dim, accumulate)
        np.testing.assert_array_equal(got, want)
        zeros = _core.index_scatter(None, idx, src, dim, accumulate, xshape)
        np.testing.assert_array_equal(
            zeros, _np_scatter(np.zeros(xshape, dtype), idx, src, dim, accumulate))
        filled = _core.index_scatter(base, idx, None, dim, accumulate, None, 2.5)
        np.testing.assert_array_equal(
            filled, _np_scatter(base.copy(), idx, dtype(2.5), dim, accumulate))


def test_scatter_add_sums_repeats_in_index_order():
    # 1e8 + 1 + ... - 1e8 in float32 depends on the order: the kernel adds in index order
    src = np.array([1e8, 1.0, 1.0, -1e8], np.float32)
    idx = np.zeros(4, np.int64)
    got = _core.index_scatter(None, idx, src, 0, True, (1,))
    acc = np.float32(0)
    for v in src:
        acc = np.float32(acc + v)
    assert got[0] == acc


def test_empty_index_gives_empty_gather_and_unchanged_scatter():
    x = np.arange(6.0).reshape(2, 3)
    idx = np.zeros((2, 0), np.int64)
    assert _core.index_gather(x, idx, 1).shape == (2, 0)
    np.testing.assert_array_equal(_core.index_scatter(x, idx, None, 1, True, None, 1.0), x)


@pytest.mark.parametrize("call,err,match", [
    (lambda: _core.index_gather(np.ones((2, 3), np.float32), np.array([[3]]), 1), IndexError,
     r"gather: index 3 \(at flat position 0\) is out of bounds for dimension 1 with size 3"),
    (lambda: _core.index_gather(np.ones((2, 3), np.float32), np.array([[-4]]), 1), IndexError,
     r"index -4 .* out of bounds"),
    (lambda: _core.index_gather(np.ones((2, 3), np.float32), np.array([0]), 0), ValueError,
     r"argument 'input' must be 1-d, got shape \(2, 3\)"),
    (lambda: _core.index_gather(np.ones((2, 3), np.float32), np.array([[0.0]]), 0), TypeError,
     r"argument 'index' must have dtype int64, got float64"),
    (lambda: _core.index_gather(np.ones((2, 3), np.int64), np.array([[0]]), 0), TypeError,
     r"argument 'input' must have dtype float32 or float64, got int64"),
    (lambda: _core.index_gather(np.ones((2, 3)), np.zeros((3, 1), np.int64), 1), ValueError,
     r"'index' of shape \(3, 1\) is larger than argument 'input' of shape \(2, 3\) in "
     r"dimension 0"),
    (lambda: _core.index_gather(np.ones((2, 3)), np.zeros((1, 1), np.int64), 2), IndexError,
     r"argument 'dim' = 2 is out of range for 2 dimensions"),
    (lambda: _core.index_scatter(np.ones(3), np.array([5]), None, 0, True, None, 1.0), IndexError,
     r"scatter_add: index 5 .* dimension 0 with size 3"),
    (lambda: _core.index_scatter(np.ones(3), np.array([0]), np.ones(1, np.float32), 0), TypeError,
     r"'src' has dtype float32 but argument 'input' has dtype float64"),
    (lambda: _core.index_scatter(None, np.array([0]), np.ones(1), 0, False, (2, 2)), ValueError,
     r"'shape' \(2, 2\) must have as many dimensions as argument 'index'"),
    (lambda: _core.index_scatter(None, np.array([0]), None, 0, False, (2,)), ValueError,
     r"either 'input' or 'src'"),
    (lambda: _core.index_scatter(np.ones((2, 0)), np.zeros((1, 1), np.int64), None, 1, False,
                                 None, 0.0), IndexError, r"dimension 1 of size 0"),
])
def test_bad_input_is_a_clear_error(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_tensor_gather_and_scatter_use_negative_indices_like_torch():
    x = gd.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert gd.gather(x, 1, gd.tensor([[-1, 0], [1, -3]])).tolist() == [[3.0, 1.0], [5.0, 4.0]]
    got = gd.scatter_add(gd.zeros(2, 3), 1, gd.tensor([[-1, -1]]), gd.tensor([[1.0, 2.0]]))
    assert got.tolist() == [[0.0, 0.0, 3.0], [0.0, 0.0, 0.0]]
    with pytest.raises(IndexError, match="out of bounds"):
        gd.gather(x, 1, gd.tensor([[3]]))


# ---- capture -----------------------------------------------------------------------------------

def _gather_step(dtype):
    gd.manual_seed(3)
    w = gd.randn(4, 6, dtype=dtype, requires_grad=True)
    opt = gd.optim.SGD([w], lr=0.1)

    def step(idx, target):
        opt.zero_grad()
        picked = gd.gather(w, 1, idx)  # (4, k)
        spread = gd.scatter_add(target, 1, idx, picked * picked)
        loss = (spread ** 2).sum() + picked.min(dim=1).values.sum()
        loss.backward()
        opt.step()
        return loss

    return w, step


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_compiled_gather_scatter_step_equals_eager_when_indices_change(dtype):
    w1, eager = _gather_step(dtype)
    w2, fn = _gather_step(dtype)
    compiled = gd.compile(fn)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k in range(6):
            idx = gd.tensor(rng.integers(-6, 6, (4, 3)))
            target = gd.tensor(rng.standard_normal((4, 6)), dtype=dtype)
            l1, l2 = eager(idx, target), compiled(idx, target)
            assert l1.detach().numpy().tobytes() == l2.detach().numpy().tobytes(), k
            assert w1.detach().numpy().tobytes() == w2.detach().numpy().tobytes(), k
    assert compiled.stats["eager"] == 0 and compiled.stats["replayed"] >= 4, compiled.stats
    prog = next(e.program for e in compiled._cache.values()
                if getattr(e, "program", None) is not None)
    names = prog.names()
    assert "gather" in names and "scatter" in names and "call" not in names
    # a replay refuses an index out of range, as eager does, instead of reading past the array
    bad = gd.tensor(np.full((4, 3), 6))
    with pytest.raises(IndexError, match="out of bounds for dimension 1 with size 6"):
        compiled(bad, gd.zeros(4, 6, dtype=dtype))
    with pytest.raises(IndexError, match="out of bounds"):
        eager(bad, gd.zeros(4, 6, dtype=dtype))


def test_program_add_checks_a_registered_instruction_layout():
    prog = _core.Program()
    with pytest.raises(ValueError, match="'call' instruction needs ints"):
        prog.add("call", False, [], [], [])
    with pytest.raises(ValueError, match="no registered instruction kind 9999"):
        prog.add("call", False, [0, 0, 0], [9999], [])
    x = np.ones((2, 3), np.float32)
    idx = np.zeros((2, 1), np.int64)
    out = _core.index_gather(x, idx, 1)
    ptrs, ints, reals, f64, _ = _core.index_gather_args(x, idx, 1, result=out)
    with pytest.raises(ValueError, match="malformed 'gather' instruction"):
        prog.add("call", f64, ptrs[:2], ints, reals)
    prog.add("call", f64, ptrs, ints, reals)
    x[:] = 5.0
    prog.run()
    np.testing.assert_array_equal(out, np.full((2, 1), 5.0, np.float32))


# ---- index_select and its adjoint ----------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xshape,dim", SHAPES)
def test_index_take_matches_numpy(xshape, dim, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xshape).astype(dtype)
    n = xshape[dim]
    for K in (0, 1, 2 * n + 1):
        idx = rng.integers(0, n, K).astype(np.int64)
        np.testing.assert_array_equal(_core.index_take(x, idx, dim), np.take(x, idx, axis=dim))
        src = rng.standard_normal(np.take(x, idx, axis=dim).shape).astype(dtype)
        want = np.zeros(xshape, dtype)
        for k in range(K):  # in index order, as the kernel adds
            sl = [slice(None)] * len(xshape)
            sl[dim] = idx[k]
            want[tuple(sl)] += np.take(src, k, axis=dim)
        np.testing.assert_array_equal(_core.index_take(src, idx, dim, True, n), want)


@pytest.mark.parametrize("call,err,match", [
    (lambda: _core.index_take(np.ones((2, 3)), np.array([3]), 1), IndexError,
     r"index_select: index 3 \(at position 0\) is out of range for a dimension of size 3"),
    (lambda: _core.index_take(np.ones((2, 3)), np.array([-1]), 1), IndexError,
     r"index -1 .*expected 0 <= index < 3"),
    (lambda: _core.index_take(np.ones((2, 3)), np.array([[0]]), 1), ValueError,
     r"argument 'index' must be 1-d"),
    (lambda: _core.index_take(np.ones((2, 3)), np.array([0]), 0, True, 4), ValueError,
     r"'source' has 2 slices along dim 0 but 'index' has 1 entries"),
    (lambda: _core.index_take(np.ones(3, np.int32), np.array([0]), 0), TypeError,
     r"must have dtype float32 or float64, got int32"),
])
def test_index_take_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_compiled_index_select_step_equals_eager():
    def make():
        gd.manual_seed(4)
        table = gd.randn(10, 5, requires_grad=True)
        opt = gd.optim.Adam([table], lr=0.01)

        def step(ids, y):
            opt.zero_grad()
            emb = gd.index_select(table, 0, ids)  # (B, 5)
            loss = ((emb.sum(1) - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss

        return table, step

    (t1, eager), (t2, fn) = make(), make()
    compiled = gd.compile(fn)
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k in range(5):
            ids = gd.tensor(rng.integers(0, 10, 7))  # repeats: the adjoint accumulates
            y = gd.tensor(rng.standard_normal(7), dtype=gd.float32)
            assert eager(ids, y).item() == compiled(ids, y).item(), k
            assert t1.detach().numpy().tobytes() == t2.detach().numpy().tobytes(), k
    assert compiled.stats["eager"] == 0, compiled.stats
    with pytest.raises(IndexError, match="out of range"):
        compiled(gd.tensor(np.full(7, 10)), gd.zeros(7))


def test_compiled_flip_and_repeat_step_equals_eager():
    """flip and repeat run the elementwise copy kernel on a reversed / broadcast view, so a
    step using them is captured; torch is the oracle for their values."""
    def make():
        gd.manual_seed(6)
        lin = gd.nn.Linear(4, 3)
        opt = gd.optim.SGD(lin.parameters(), lr=0.05)

        def step(x):
            opt.zero_grad()
            h = lin(x)                                   # (B, 3)
            h = h.flip(1) + h.repeat(1, 2)[:, 1:4]       # reversed and tiled views of h
            loss = (h.repeat(2, 1) ** 2).mean() + h.flip(0, 1).sum()
            loss.backward()
            opt.step()
            return loss

        return lin, step

    (l1, eager), (l2, fn) = make(), make()
    compiled = gd.compile(fn)
    rng = np.random.default_rng(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k in range(4):
            x = gd.tensor(rng.standard_normal((5, 4)), dtype=gd.float32)
            assert eager(x).item() == compiled(x).item(), k
            for p1, p2 in zip(l1.parameters(), l2.parameters()):
                assert p1.detach().numpy().tobytes() == p2.detach().numpy().tobytes(), k
    assert compiled.stats["eager"] == 0, compiled.stats


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flip_and_repeat_match_numpy(dtype):
    a = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(dtype)
    x = gd.tensor(a)
    for reps in [(2, 1, 3), (1, 2, 2, 1), (3,) * 3, (1, 1, 1)]:
        np.testing.assert_array_equal(x.repeat(*reps).numpy(), np.tile(a, reps))
    for dims in [(0,), (1, 2), (0, 1, 2), (-1,)]:
        np.testing.assert_array_equal(x.flip(dims).numpy(), np.flip(a, dims))
    t = x[:, ::2, :]  # a strided view as the source
    np.testing.assert_array_equal(t.flip(1).numpy(), np.flip(a[:, ::2, :], 1))


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_compiled_step_with_slicing_is_captured_and_equals_eager(dtype):
    """Basic indexing's backward writes g into a zero tensor with two copy kernels, so a step
    that slices (h[:, 1:3], h[0], h[..., -1], h[:, None, ::2]) is captured."""
    def make():
        gd.manual_seed(8)
        lin = gd.nn.Linear(4, 5, dtype=dtype)
        opt = gd.optim.Adam(lin.parameters(), lr=0.01)

        def step(x):
            opt.zero_grad()
            h = lin(x)
            loss = (h[:, 1:3] ** 2).sum() + h[0].sum() * 0.5 + h[..., -1].mean() + \
                (h[:, None, ::2] * h[:, None, 1::2].sum()).sum() * 1e-2
            loss.backward()
            opt.step()
            return loss

        return lin, step

    (l1, eager), (l2, fn) = make(), make()
    compiled = gd.compile(fn)
    rng = np.random.default_rng(9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k in range(4):
            x = gd.tensor(rng.standard_normal((6, 4)) * (k + 1), dtype=dtype)
            assert eager(x).item() == compiled(x).item(), k
            for p1, p2 in zip(l1.parameters(), l2.parameters()):
                assert p1.detach().numpy().tobytes() == p2.detach().numpy().tobytes(), k
    assert compiled.stats["eager"] == 0, compiled.stats

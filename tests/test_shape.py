"""Differentiates the shape ops (functional/shape.py) through the Tensor API.

Views, indexing (basic, integer arrays with repeats, bool masks), index_put via `t[idx] = v`,
cat/stack/split/chunk, clone and dtype casts: gradcheck and gradgradcheck in float64 on 0-d,
size-1, empty and non-contiguous inputs, forward against NumPy, float32 gradients against float64.
"""

from __future__ import annotations

import graddesc as gd
import numpy as np
import pytest
from graddesc.autograd import gradcheck, gradgradcheck


def _leaf(rng, shape, dtype=gd.float64):
    return gd.tensor(rng.standard_normal(shape), dtype=dtype, requires_grad=True)


def _check(fn, *inputs):
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


IDX = np.array([2, 0, 2, 1, 2])  # repeats: the gradient must accumulate


# name -> (graddesc function, NumPy oracle, input shape)
OPS = {
    "reshape": (lambda x: x.reshape(4, 3), lambda a: a.reshape(4, 3), (3, 4)),
    "reshape_tuple_infer": (lambda x: x.reshape((2, -1)), lambda a: a.reshape(2, -1), (3, 4)),
    "reshape_fn": (lambda x: gd.reshape(x, (12,)), lambda a: a.reshape(12), (3, 4)),
    "view": (lambda x: x.view(2, 2, 3), lambda a: a.reshape(2, 2, 3), (3, 4)),
    "view_infer": (lambda x: x.view(-1), lambda a: a.reshape(-1), (3, 4)),
    "view_as": (lambda x: x.view_as(gd.zeros(6, 2)), lambda a: a.reshape(6, 2), (3, 4)),
    "flatten": (lambda x: x.flatten(), lambda a: a.reshape(-1), (2, 3, 2)),
    "flatten_range": (lambda x: gd.flatten(x, 1, 2), lambda a: a.reshape(2, 6, 1), (2, 3, 2, 1)),
    "flatten_neg": (lambda x: x.flatten(-2), lambda a: a.reshape(2, 6), (2, 3, 2)),
    "permute": (lambda x: x.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), (2, 3, 4)),
    "permute_tuple": (lambda x: gd.permute(x, (1, -1, 0)), lambda a: a.transpose(1, 2, 0),
                      (2, 3, 4)),
    "transpose": (lambda x: x.transpose(0, 2), lambda a: a.swapaxes(0, 2), (2, 3, 4)),
    "transpose_fn": (lambda x: gd.transpose(x, -1, -2), lambda a: a.swapaxes(-1, -2), (2, 3, 4)),
    "t": (lambda x: x.t(), lambda a: a.T, (3, 4)),
    "t_1d": (lambda x: x.t(), lambda a: a, (4,)),
    "T": (lambda x: x.T, lambda a: a.T, (2, 3, 4)),
    "mT": (lambda x: x.mT, lambda a: a.swapaxes(-1, -2), (2, 3, 4)),
    "movedim": (lambda x: x.movedim(0, -1), lambda a: np.moveaxis(a, 0, -1), (2, 3, 4)),
    "expand": (lambda x: x.expand(2, 3, 4), lambda a: np.broadcast_to(a, (2, 3, 4)), (3, 1)),
    "expand_keep": (lambda x: x.expand(5, -1, -1), lambda a: np.broadcast_to(a, (5, 3, 1)),
                    (3, 1)),
    "expand_as": (lambda x: x.expand_as(gd.zeros(3, 4)), lambda a: np.broadcast_to(a, (3, 4)),
                  (4,)),
    "squeeze": (lambda x: x.squeeze(), lambda a: a.squeeze(), (1, 3, 1, 2)),
    "squeeze_dim": (lambda x: x.squeeze(2), lambda a: a.squeeze(2), (1, 3, 1, 2)),
    "squeeze_dims": (lambda x: gd.squeeze(x, (0, -2)), lambda a: a.squeeze((0, 2)),
                     (1, 3, 1, 2)),
    "squeeze_not_one": (lambda x: x.squeeze(1), lambda a: a, (1, 3, 1, 2)),
    "unsqueeze": (lambda x: x.unsqueeze(1), lambda a: a[:, None], (3, 4)),
    "unsqueeze_neg": (lambda x: gd.unsqueeze(x, -1), lambda a: a[..., None], (3, 4)),
    "index_int": (lambda x: x[1], lambda a: a[1], (3, 4)),
    "index_neg_int": (lambda x: x[-1, -2], lambda a: a[-1, -2], (3, 4)),
    "index_slice": (lambda x: x[:, 1:3], lambda a: a[:, 1:3], (3, 4)),
    "index_step": (lambda x: x[::2, 1::2], lambda a: a[::2, 1::2], (5, 4)),
    "index_reverse": (lambda x: x[::-1], lambda a: a[::-1], (5, 4)),
    "index_none_ellipsis": (lambda x: x[None, ..., 0], lambda a: a[None, ..., 0], (2, 3, 4)),
    "index_empty_slice": (lambda x: x[1:1], lambda a: a[1:1], (3, 4)),
    "index_int_array_repeats": (lambda x: x[gd.tensor(IDX)], lambda a: a[IDX], (3, 4)),
    "index_list_repeats": (lambda x: x[[0, 0, -1]], lambda a: a[[0, 0, -1]], (3, 4)),
    "index_columns_repeats": (lambda x: x[:, [1, 1, 0]], lambda a: a[:, [1, 1, 0]], (3, 4)),
    "index_pairs": (lambda x: x[[0, 2, 0], [1, 1, 1]], lambda a: a[[0, 2, 0], [1, 1, 1]],
                    (3, 4)),
    "index_2d_array": (lambda x: x[gd.tensor([[0, 1], [1, 1]])],
                       lambda a: a[np.array([[0, 1], [1, 1]])], (3, 4)),
    "index_mixed": (lambda x: x[1:, gd.tensor([3, 0, 3])], lambda a: a[1:, [3, 0, 3]], (3, 4)),
    "index_bool_mask": (lambda x: x[gd.tensor([[True, False, True, False]] * 3)],
                        lambda a: a[np.array([[True, False, True, False]] * 3)], (3, 4)),
    "index_bool_rows": (lambda x: x[gd.tensor([True, False, True])],
                        lambda a: a[np.array([True, False, True])], (3, 4)),
    "index_bool_all_false": (lambda x: x[gd.tensor([False, False, False])],
                             lambda a: a[np.zeros(3, bool)], (3, 4)),
    "clone": (lambda x: x.clone(), lambda a: a.copy(), (3, 4)),
    "contiguous": (lambda x: x.t().contiguous(), lambda a: a.T.copy(), (3, 4)),
    "split": (lambda x: x.split(2, dim=1), lambda a: (a[:, :2], a[:, 2:4], a[:, 4:]), (3, 5)),
    "split_sizes": (lambda x: gd.split(x, [1, 0, 2]), lambda a: (a[:1], a[1:1], a[1:]), (3, 4)),
    "chunk": (lambda x: x.chunk(2, dim=-1), lambda a: (a[:, :3], a[:, 3:]), (3, 5)),
    "stack_self": (lambda x: gd.stack([x, x * 2.0, x], dim=1),
                   lambda a: np.stack([a, a * 2, a], axis=1), (3, 4)),
    "cat_self": (lambda x: gd.cat([x, x[:1], x * 3.0], dim=0),
                 lambda a: np.concatenate([a, a[:1], a * 3.0]), (3, 4)),
    "iterate": (lambda x: tuple(x), lambda a: tuple(a), (3, 4)),
}


def _outputs(y):
    return y if isinstance(y, tuple) else (y,)


@pytest.mark.parametrize("name", sorted(OPS))
def test_shape_op_gradcheck(rng, name):
    fn, _, shape = OPS[name]
    _check(fn, _leaf(rng, shape))


@pytest.mark.parametrize("name", sorted(OPS))
def test_shape_op_forward_matches_numpy(rng, name):
    fn, oracle, shape = OPS[name]
    a = rng.standard_normal(shape)
    got, ref = _outputs(fn(gd.tensor(a, dtype=gd.float64))), _outputs(oracle(a))
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        assert g.dtype == gd.float64
        np.testing.assert_array_equal(g.numpy(), r)


SCALED = {"stack_self", "cat_self"}  # not pure copies: covered by gradcheck alone


@pytest.mark.parametrize("name", sorted(set(OPS) - SCALED))
def test_shape_op_gradient_matches_numpy_scatter(rng, name):
    # With upstream gradients w, the input gradient sums w over every place each element went:
    # the oracle pushes the element indices through the NumPy op and scatters w back.
    fn, oracle, shape = OPS[name]
    x = _leaf(rng, shape)
    outs = _outputs(fn(x))
    ws = [rng.standard_normal(o.shape) for o in outs]
    total = gd.tensor(0.0, dtype=gd.float64)
    for o, w in zip(outs, ws):
        total = total + (o * gd.tensor(w, dtype=gd.float64)).sum()
    total.backward()
    ids = np.arange(x.numel()).reshape(shape)
    ref = np.zeros(x.numel())
    for o_ids, w in zip(_outputs(oracle(ids)), ws):
        np.add.at(ref, o_ids.ravel(), w.ravel())
    np.testing.assert_allclose(x.grad.numpy().ravel(), ref, rtol=1e-15)


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("view", ["transposed", "strided"])
def test_shape_op_on_non_contiguous_input(rng, name, view):
    fn, oracle, shape = OPS[name]
    if view == "transposed":
        base = _leaf(rng, shape[::-1])

        def as_view(b):
            return b.permute(*reversed(range(b.ndim)))
    else:
        base = _leaf(rng, shape[:-1] + (2 * shape[-1],))

        def as_view(b):
            return b[..., ::2]

    def f(b):
        v = as_view(b)
        assert v.shape == shape
        return fn(v)

    if view == "transposed" and name.startswith("view"):
        with pytest.raises(RuntimeError, match="view size is not compatible"):
            f(base)  # as in PyTorch: no view can merge transposed dims; reshape copies
        return
    a = as_view(base).detach().numpy()
    for g, r in zip(_outputs(f(base)), _outputs(oracle(a))):
        np.testing.assert_array_equal(g.detach().numpy(), r)
    _check(f, base)


@pytest.mark.parametrize("name", sorted(OPS))
def test_shape_op_float32_grad_equals_float64(rng, name):
    fn, _, shape = OPS[name]
    a = rng.standard_normal(shape).astype(np.float32)
    grads = []
    for dt in (gd.float32, gd.float64):
        x = gd.tensor(a, dtype=dt, requires_grad=True)
        outs = _outputs(fn(x))
        assert all(o.dtype == dt for o in outs)
        total = gd.tensor(0.0, dtype=dt)
        for k, o in enumerate(outs):
            total = total + (o * (k + 1.0)).sum()
        total.backward()
        assert x.grad.dtype == dt
        grads.append(x.grad.numpy().astype(np.float64))
    np.testing.assert_array_equal(grads[0], grads[1])  # copies and small integer sums are exact


# ---- 0-d, size-1 and empty --------------------------------------------------------------
ZERO_D = {
    "reshape_to_1x1": lambda x: x.reshape(1, 1),
    "reshape_back": lambda x: x.reshape(1).reshape(()),
    "view": lambda x: x.view(1),
    "flatten": lambda x: x.flatten(),
    "unsqueeze": lambda x: x.unsqueeze(0),
    "unsqueeze_neg": lambda x: x.unsqueeze(-1),
    "squeeze": lambda x: x.squeeze(),
    "expand": lambda x: x.expand(2, 3),
    "ellipsis": lambda x: x[...],
    "none": lambda x: x[None],
    "t": lambda x: x.t(),
    "T": lambda x: x.T,
    "transpose": lambda x: x.transpose(0, -1),
    "stack": lambda x: gd.stack([x, x * 2.0]),
    "clone": lambda x: x.clone(),
}


@pytest.mark.parametrize("name", sorted(ZERO_D))
def test_zero_d_input(rng, name):
    x = _leaf(rng, ())
    _check(ZERO_D[name], x)
    y = ZERO_D[name](x)
    np.testing.assert_array_equal(y.detach().numpy().ravel()[:1], [x.item()])
    y.sum().backward()
    assert x.grad.shape == ()


def test_integer_index_of_1d_gives_0d_that_backpropagates(rng):
    x = _leaf(rng, (4,))
    y = x[2]
    assert y.shape == ()
    (y * 3.0).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 3.0, 0.0])


EMPTY = {
    "reshape": ((0, 3), lambda x: x.reshape(3, 0)),
    "reshape_infer": ((0, 3), lambda x: x.reshape(-1, 3)),
    "view": ((2, 0), lambda x: x.view(0, 2)),
    "flatten": ((2, 0, 3), lambda x: x.flatten()),
    "permute": ((2, 0, 3), lambda x: x.permute(2, 0, 1)),
    "t": ((0, 3), lambda x: x.t()),
    "expand": ((0, 1), lambda x: x.expand(0, 4)),
    "expand_new_dim": ((3, 1), lambda x: x.expand(0, 3, 2)),
    "unsqueeze": ((0,), lambda x: x.unsqueeze(0)),
    "squeeze": ((1, 0), lambda x: x.squeeze()),
    "slice": ((3, 4), lambda x: x[:, 2:2]),
    "int_array_empty": ((3, 4), lambda x: x[gd.tensor(np.zeros(0, dtype=np.int64))]),
    "bool_mask_none": ((3, 4), lambda x: x[x > 100.0]),
    "index_of_empty": ((0, 4), lambda x: x[:, [1, 1]]),
    "cat_with_empty": ((0, 4), lambda x: gd.cat([x, x * 2.0], dim=0)),
    "stack_empty": ((0, 2), lambda x: gd.stack([x, x], dim=-1)),
    "split_empty": ((0, 4), lambda x: x.split(2, dim=1)[1]),
    "clone": ((0, 3), lambda x: x.clone()),
    "cast": ((0, 3), lambda x: x.float().double()),
}


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_empty_backward_gives_zero_size_grad(rng, name):
    shape, fn = EMPTY[name]
    x = _leaf(rng, shape)
    y = fn(x)
    assert y.numel() == 0
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == shape and x.grad.dtype == gd.float64
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(shape))
    _check(fn, _leaf(rng, shape))


def test_cat_skips_1d_empty_and_keeps_its_gradient(rng):
    a, e, b = _leaf(rng, (2, 3)), _leaf(rng, (0,)), _leaf(rng, (1, 3))
    y = gd.cat([a, e, b])
    assert y.shape == (3, 3)
    y.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), np.ones((2, 3)))
    np.testing.assert_array_equal(b.grad.numpy(), np.ones((1, 3)))
    assert e.grad is None  # skipped, as in PyTorch


# ---- cat / stack with several inputs --------------------------------------------------------
@pytest.mark.parametrize("dim", [0, 1, -1, 2])
def test_cat_gradcheck_each_dim(rng, dim):
    shapes = {0: [(1, 3, 2), (2, 3, 2), (0, 3, 2)], 1: [(2, 1, 2), (2, 4, 2)],
              -1: [(2, 3, 1), (2, 3, 3), (2, 3, 1)], 2: [(2, 3, 2), (2, 3, 2)]}[dim]
    xs = [_leaf(rng, s) for s in shapes]
    _check(lambda *ts: gd.cat(ts, dim=dim), *xs)
    np.testing.assert_array_equal(gd.cat(xs, dim).detach().numpy(),
                                  np.concatenate([x.detach().numpy() for x in xs], axis=dim))


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_stack_gradcheck_each_dim(rng, dim):
    xs = [_leaf(rng, (2, 3)) for _ in range(3)]
    _check(lambda *ts: gd.stack(ts, dim=dim), *xs)
    np.testing.assert_array_equal(gd.stack(xs, dim).detach().numpy(),
                                  np.stack([x.detach().numpy() for x in xs], axis=dim))


def test_cat_of_non_contiguous_views_and_a_constant(rng):
    base = _leaf(rng, (4, 3))
    const = gd.tensor(rng.standard_normal((3, 2)), dtype=gd.float64)
    _check(lambda b: gd.cat([b.t(), const, b[::2].t()], dim=1), base)


def test_cat_of_mixed_requires_grad_only_grads_the_leaf(rng):
    a = _leaf(rng, (2, 2))
    c = gd.ones(2, 2, dtype=gd.float64)
    gd.cat([c, a, c], dim=1).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(a.grad.numpy(), np.ones((2, 2)))


@pytest.mark.parametrize("sizes,dim", [(2, 0), (3, 1), ([1, 3, 1], 1), ([0, 3], 0)])
def test_split_gradcheck(rng, sizes, dim):
    x = _leaf(rng, (3, 5))
    _check(lambda t: t.split(sizes, dim=dim), x)


def test_split_with_only_some_pieces_used(rng):
    x = _leaf(rng, (6, 2))
    a, b, c = x.chunk(3)
    (b * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.repeat([[0.0], [2.0], [0.0]], 2, 0)
                                  .repeat(2, 1)[:, :2])


# ---- index_put via t[idx] = v -------------------------------------------------------------
# name -> (index, value shape or None for a Python scalar)
SETITEM = {
    "row": (1, (4,)),
    "row_broadcast": (1, (1,)),
    "slice": ((slice(None), slice(1, 3)), (3, 2)),
    "slice_broadcast_col": ((slice(None), slice(1, 3)), (3, 1)),
    "step": ((slice(None, None, 2), 0), (2,)),
    "element": ((2, 3), ()),
    "int_array": (([2, 0],), (2, 4)),
    "int_pairs": (([0, 1, 2], [3, 1, 0]), (3,)),
    "int_tensor": ((gd.tensor([0, 2]), slice(None)), (1, 4)),
    "bool_mask": (gd.tensor([[True, False, False, True]] * 3), (6,)),
    "bool_rows": (gd.tensor([False, True, True]), (4,)),
    "scalar_value": ((0, slice(1, None)), None),
    "ellipsis": ((Ellipsis, 1), (3,)),
}


@pytest.mark.parametrize("name", sorted(SETITEM))
def test_setitem_gradcheck(rng, name):
    idx, vshape = SETITEM[name]
    x = _leaf(rng, (3, 4))
    if vshape is None:
        def f(t):
            y = t * 1.0
            y[idx] = 0.5
            return y

        _check(f, x)
        ref = x.detach().numpy().copy()
        ref[_np_idx(idx)] = 0.5
    else:
        v = _leaf(rng, vshape)

        def f(t, val):
            y = t.clone()
            y[idx] = val * 2.0
            return y

        _check(f, x, v)
        ref = x.detach().numpy().copy()
        ref[_np_idx(idx)] = v.detach().numpy() * 2.0
    out = f(x) if vshape is None else f(x, v)
    np.testing.assert_array_equal(out.detach().numpy(), ref)
    out.sum().backward()
    written = np.zeros((3, 4), bool)
    written[_np_idx(idx)] = True
    np.testing.assert_array_equal(x.grad.numpy(), np.where(written, 0.0, 1.0))
    if vshape is not None:
        # broadcasting repeats every element of v equally often over the written cells
        copies = written.sum() / max(int(np.prod(vshape)), 1)
        np.testing.assert_array_equal(v.grad.numpy(), np.full(vshape, 2.0 * copies))


def _np_idx(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    out = tuple(i.numpy() if isinstance(i, gd.Tensor) else i for i in items)
    return out


def test_setitem_on_a_requires_grad_leaf_raises(rng):
    x = _leaf(rng, (3,))
    with pytest.raises(RuntimeError, match="leaf"):
        x[0] = 1.0


def test_setitem_then_reuse_of_the_old_value_raises_at_backward(rng):
    x = _leaf(rng, (3,))
    y = x * 1.0
    z = y * y  # saves y
    y[0] = 5.0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_setitem_value_gradient_through_a_chain(rng):
    # y starts as a constant; only the written values carry gradient
    v = _leaf(rng, (2,))
    y = gd.zeros(4, dtype=gd.float64)
    y[gd.tensor([3, 1])] = v
    assert y.requires_grad
    (y * gd.tensor([1.0, 2.0, 3.0, 4.0], dtype=gd.float64)).sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), [4.0, 2.0])


# ---- indexing details ---------------------------------------------------------------------------
def test_repeated_indices_accumulate(rng):
    x = _leaf(rng, (4,))
    x[[1, 1, 1, 3]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 3.0, 0.0, 1.0])


def test_repeated_index_second_derivative(rng):
    # y = sum(x[idx]^3): d2y/dx2 = 6 x * (count of each index)
    x = _leaf(rng, (3,))
    (g,) = gd.autograd.grad((x[[0, 0, 2]] ** 3).sum(), x, create_graph=True)
    (h,) = gd.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(h.numpy(), 6 * x.detach().numpy() * [2, 0, 1], rtol=1e-14)


def test_bool_mask_from_the_values_themselves(rng):
    x = gd.tensor(rng.uniform(0.2, 1.0, (3, 4)) * rng.choice([-1, 1], (3, 4)),
                  dtype=gd.float64, requires_grad=True)
    _check(lambda t: t[t > 0] * 3.0, x)
    x[x > 0].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), (x.detach().numpy() > 0).astype(float))


def test_float_index_is_rejected(rng):
    with pytest.raises(IndexError, match="long, int or bool"):
        _leaf(rng, (3,))[gd.tensor([0.0, 1.0])]


def test_out_of_range_index_raises_index_error(rng):
    with pytest.raises(IndexError):
        _leaf(rng, (3,))[[0, 3]]


def test_view_of_non_contiguous_raises_but_reshape_copies(rng):
    base = _leaf(rng, (3, 4))
    with pytest.raises(RuntimeError, match="view"):
        base.t().view(12)
    _check(lambda b: b.t().reshape(12), base)


# ---- dtype casts -------------------------------------------------------------------------------
def test_cast_float64_to_float32_and_back_keeps_gradients(rng):
    x = _leaf(rng, (3, 4))
    y = x.float()
    assert y.dtype == gd.float32 and y.requires_grad
    (y * 3.0).sum().backward()
    assert x.grad.dtype == gd.float64
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 4), 3.0))


def test_cast_float32_to_float64_gradient_is_float32(rng):
    x = _leaf(rng, (2, 3), dtype=gd.float32)
    y = x.to(gd.float64)
    assert y.dtype == gd.float64
    (y * y).sum().backward()
    assert x.grad.dtype == gd.float32
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy(), rtol=1e-7)


@pytest.mark.parametrize("conv", [lambda t: t.long(), lambda t: t.bool(),
                                  lambda t: t.to(gd.int64)])
def test_cast_to_integer_or_bool_is_not_differentiable(rng, conv):
    x = _leaf(rng, (3,))
    y = conv(x)
    assert not y.requires_grad and y.grad_fn is None


def test_cast_to_same_dtype_is_identity(rng):
    x = _leaf(rng, (3,))
    assert x.double() is x
    assert x.to(gd.float64, copy=True) is not x

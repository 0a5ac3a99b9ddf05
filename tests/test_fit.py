"""graddesc.training.fit: the training loop, its history, progress output and NaN stops."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

import graddesc as gd
from graddesc.data import DataLoader, TensorDataset
from graddesc.training import History, NonFiniteLossError, fit

try:
    from graddesc.optim import SGD
except ImportError:  # graddesc.optim is being written; a minimal stand-in until it lands
    class SGD:  # type: ignore[no-redef]
        """Plain gradient descent: w <- w - lr * grad."""

        def __init__(self, params: Iterable[gd.Tensor], lr: float) -> None:
            self.param_groups = [{"params": list(params), "lr": lr}]

        def zero_grad(self, set_to_none: bool = True) -> None:
            for p in self.param_groups[0]["params"]:
                p.grad = None

        def step(self) -> None:
            lr = self.param_groups[0]["lr"]
            with gd.no_grad():
                for p in self.param_groups[0]["params"]:
                    if p.grad is not None:
                        p.sub_(p.grad, alpha=lr)


def _regression(n: int = 64) -> tuple[gd.Tensor, gd.Tensor]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    y = X @ np.array([[1.5], [-2.0], [0.5]], np.float32) + 0.3
    y += 0.01 * rng.standard_normal((n, 1)).astype(np.float32)
    return gd.tensor(X), gd.tensor(y)


def _model() -> gd.nn.Module:
    gd.manual_seed(0)
    return gd.nn.Linear(3, 1)


def _flat(model: gd.nn.Module) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


def test_minibatch_fit_reduces_loss() -> None:
    X, y = _regression()
    model = _model()
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True,
                        generator=gd.Generator().manual_seed(0))
    hist = fit(model, gd.nn.MSELoss(), loader, SGD(model.parameters(), lr=0.1), epochs=15,
               progress=False)
    assert isinstance(hist, History)
    assert hist.steps == len(hist.loss) == 15 * len(loader) == 60
    assert hist.epochs == len(hist.epoch_loss) == 15
    assert all(isinstance(v, float) for v in hist.loss)
    np.testing.assert_allclose(hist.epoch_loss[0], np.mean(hist.loss[:4]), rtol=1e-12)
    assert hist.epoch_loss[-1] < 0.01 * hist.epoch_loss[0]
    assert hist.params == []
    w = model.weight.detach().numpy().ravel()
    np.testing.assert_allclose(w, [1.5, -2.0, 0.5], atol=0.05)


def test_full_batch_tuple_is_one_step_per_epoch() -> None:
    X, y = _regression()
    model = _model()
    hist = fit(model, gd.nn.MSELoss(), (X, y), SGD(model.parameters(), lr=0.1), epochs=30,
               progress=False)
    assert hist.steps == len(hist.loss) == len(hist.epoch_loss) == 30
    assert hist.epoch_loss == hist.loss
    assert all(b < a for a, b in zip(hist.loss, hist.loss[1:]))  # full-batch GD descends


def test_matches_a_hand_written_loop() -> None:
    X, y = _regression(20)
    batches = [(X[:10], y[:10]), (X[10:], y[10:])]  # any re-iterable of (x, y) works
    model_a, model_b = _model(), _model()
    hist = fit(model_a, gd.nn.MSELoss(), batches, SGD(model_a.parameters(), lr=0.05), epochs=3,
               progress=False)
    opt, losses = SGD(model_b.parameters(), lr=0.05), []
    for _ in range(3):
        for xb, yb in batches:
            opt.zero_grad()
            loss = gd.nn.functional.mse_loss(model_b(xb), yb)
            losses.append(loss.item())
            loss.backward()
            opt.step()
    assert hist.loss == losses
    np.testing.assert_array_equal(_flat(model_a), _flat(model_b))


def test_record_params_trajectory() -> None:
    X, y = _regression()
    model = _model()
    start = _flat(model)
    loader = DataLoader(TensorDataset(X, y), batch_size=32)
    hist = fit(model, gd.nn.MSELoss(), loader, SGD(model.parameters(), lr=0.1), epochs=3,
               progress=False, record_params=True)
    assert hist.steps == 6
    assert len(hist.params) == hist.steps + 1  # the start, then after every step
    assert all(p.shape == (4,) for p in hist.params)  # weight (1, 3) + bias (1,)
    np.testing.assert_array_equal(hist.params[0], start)
    np.testing.assert_array_equal(hist.params[-1], _flat(model))
    assert not np.array_equal(hist.params[1], hist.params[0])
    hist.params[-1][:] = 0  # a snapshot, not a view of the parameters
    assert np.abs(_flat(model)).sum() > 0


class _NanAt:
    """MSE loss that turns NaN (or inf) at a given call number."""

    def __init__(self, at: int, value: float = float("nan")) -> None:
        self.at, self.value, self.calls = at, value, 0

    def __call__(self, out: gd.Tensor, target: gd.Tensor) -> gd.Tensor:
        self.calls += 1
        loss = gd.nn.functional.mse_loss(out, target)
        return loss * self.value if self.calls == self.at else loss


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_stops_with_step_and_keeps_params(bad: float) -> None:
    X, y = _regression()
    model = _model()
    loader = DataLoader(TensorDataset(X, y), batch_size=16)  # 4 steps per epoch
    with pytest.raises(FloatingPointError, match=r"step 7 \(epoch 2/3, batch 3/4\)") as info:
        fit(model, _NanAt(7, bad), loader, SGD(model.parameters(), lr=0.1), epochs=3,
            progress=False, record_params=True)
    err = info.value
    assert isinstance(err, NonFiniteLossError)
    assert err.step == 7 and err.epoch == 2
    assert err.history.steps == len(err.history.loss) == 6
    assert err.history.epoch_loss and len(err.history.epoch_loss) == 1
    # The parameters are exactly those after step 6: no backward or update ran at step 7.
    np.testing.assert_array_equal(_flat(model), err.history.params[-1])
    assert len(err.history.params) == 7
    assert all(p.grad is None or np.all(p.grad.numpy() == 0) for p in model.parameters())


def test_nan_at_first_step_leaves_initial_params() -> None:
    X, y = _regression()
    model = _model()
    start = _flat(model)
    with pytest.raises(FloatingPointError, match="step 1"):
        fit(model, _NanAt(1), (X, y), SGD(model.parameters(), lr=0.1), progress=False)
    np.testing.assert_array_equal(_flat(model), start)


def test_progress_false_prints_nothing(capfd: pytest.CaptureFixture) -> None:
    X, y = _regression()
    model = _model()
    fit(model, gd.nn.MSELoss(), (X, y), SGD(model.parameters(), lr=0.1), epochs=3,
        progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_progress_bar_goes_to_stderr(capfd: pytest.CaptureFixture) -> None:
    X, y = _regression()
    model = _model()
    fit(model, gd.nn.MSELoss(), DataLoader(TensorDataset(X, y), batch_size=8),
        SGD(model.parameters(), lr=0.1), epochs=2, desc="regression")
    out, err = capfd.readouterr()
    assert out == ""
    assert "regression" in err and "16" in err  # 2 epochs x 8 batches


def test_builtin_text_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import io

    real_import = builtins.__import__

    def no_tqdm(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("tqdm"):
            raise ImportError("no tqdm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    X, y = _regression()
    model = _model()
    buf = io.StringIO()
    fit(model, gd.nn.MSELoss(), DataLoader(TensorDataset(X, y), batch_size=32),
        SGD(model.parameters(), lr=0.1), epochs=5, file=buf)
    text = buf.getvalue()
    assert text.endswith("\n") and "10/10" in text and "epoch 5" in text and "loss" in text


def test_callback_can_stop_early() -> None:
    X, y = _regression()
    model = _model()
    seen: list[int] = []

    def callback(history: History) -> bool:
        seen.append(history.steps)
        return history.steps == 5

    hist = fit(model, gd.nn.MSELoss(), DataLoader(TensorDataset(X, y), batch_size=16),
               SGD(model.parameters(), lr=0.1), epochs=10, progress=False, callback=callback)
    assert seen == [1, 2, 3, 4, 5]
    assert hist.steps == 5 and len(hist.epoch_loss) == hist.epochs == 2


def test_epochs_zero_does_nothing() -> None:
    X, y = _regression()
    model = _model()
    start = _flat(model)
    hist = fit(model, gd.nn.MSELoss(), (X, y), SGD(model.parameters(), lr=0.1), epochs=0,
               progress=False, record_params=True)
    assert hist.steps == 0 and hist.loss == [] and len(hist.params) == 1
    np.testing.assert_array_equal(_flat(model), start)


def test_exhausted_iterator_is_an_error() -> None:
    X, y = _regression()
    model = _model()
    batches = iter([(X, y)])
    with pytest.raises(ValueError, match="epoch 2"):
        fit(model, gd.nn.MSELoss(), batches, SGD(model.parameters(), lr=0.1), epochs=2,
            progress=False)
    empty = DataLoader(TensorDataset(X, y), batch_size=100, drop_last=True)
    with pytest.raises(ValueError, match="epoch 1.*drop_last"):
        fit(model, gd.nn.MSELoss(), empty, SGD(model.parameters(), lr=0.1), progress=False)


@pytest.mark.parametrize("case", ["epochs", "negative", "optimizer", "data", "batch", "loss"])
def test_bad_arguments(case: str) -> None:
    X, y = _regression()
    model = _model()
    opt = SGD(model.parameters(), lr=0.1)
    args: dict[str, Any] = {"model": model, "loss_fn": gd.nn.MSELoss(), "data": (X, y),
                            "optimizer": opt, "epochs": 1}
    exc: type = TypeError
    if case == "epochs":
        args["epochs"] = 1.5
    elif case == "negative":
        args["epochs"], exc = -1, ValueError
    elif case == "optimizer":
        args["optimizer"] = object()
    elif case == "data":
        args["data"] = 42
    elif case == "batch":
        args["data"], exc = [(X, y, y)], ValueError
    elif case == "loss":
        args["loss_fn"], exc = gd.nn.MSELoss(reduction="none"), ValueError
    with pytest.raises(exc):
        fit(progress=False, **args)

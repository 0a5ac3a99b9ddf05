"""The command line: `python -m graddesc` (also the `graddesc` script).

With no arguments it runs the main job: the lecture's kind of network (Flatten -> Linear -> ReLU
-> Linear -> ReLU -> Linear) trained on the embedded 8x8 digits by minibatch SGD, one line per
epoch, ending with `test accuracy: 0.97` (the figure measured). Subcommands: train, bench, draw,
demo, config.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Optional

import numpy as np

import graddesc as gd

OPTIMIZERS = ("sgd", "gd", "adam", "zeroth")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return v


def _batch_size(text: str) -> Any:
    if text == "full":
        return "full"
    return _positive_int(text)


def _hidden(text: str) -> tuple:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 64,32, got "
                                         f"{text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="graddesc",
        description="graddesc: gradient descent and backpropagation. With no subcommand, trains "
                    "the lecture's network on the embedded 8x8 digits.")
    sub = p.add_subparsers(dest="command", metavar="{train,bench,draw,demo,config}")

    t = sub.add_parser("train", help="train a network (the default job)")
    _add_train_args(t)

    b = sub.add_parser("bench", help="a short benchmark table against NumPy (and PyTorch)")
    b.add_argument("--threads", type=_positive_int, default=1)

    d = sub.add_parser("draw", help="draw the block diagram of the network (DOT/SVG)")
    d.add_argument("--hidden", type=_hidden, default=(64, 32))
    d.add_argument("--out", default="graph.dot", help="output .dot or .svg path")

    m = sub.add_parser("demo", help="lecture demos")
    m.add_argument("name", choices=["sgd-vs-gd", "zeroth-order", "preconditioned",
                                    "actor-critic"])
    m.add_argument("--out", default=None, help="output folder (default runs/demo-<name>)")
    m.add_argument("--seed", type=int, default=0)

    sub.add_parser("config", help="print the build and runtime configuration")
    return p


def _add_train_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--data", choices=["digits", "spirals"], default="digits")
    t.add_argument("--hidden", type=_hidden, default=(64, 32),
                   help="hidden layer sizes, comma-separated (default 64,32)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    t.add_argument("--lr", type=_positive_float, default=None)
    t.add_argument("--batch-size", type=_batch_size, default=32,
                   help="minibatch size; 1 is SGD, 'full' is full-batch gradient descent")
    t.add_argument("--epochs", type=_positive_int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=_positive_int, default=None)
    t.add_argument("--out", default=None, help="run folder (default runs/<date>-<time>)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def make_network(n_in: int, hidden: tuple, n_out: int) -> Any:
    """Flatten -> (Linear -> ReLU) per hidden size -> Linear: the lecture's 'traditional' net."""
    layers: list = [gd.nn.Flatten()]
    width = n_in
    for h in hidden:
        layers += [gd.nn.Linear(width, h), gd.nn.ReLU()]
        width = h
    layers.append(gd.nn.Linear(width, n_out))
    return gd.nn.Sequential(*layers)


def _accuracy(model: Any, X: Any, y: Any) -> float:
    with gd.no_grad():
        pred = model(X).argmax(dim=1)
    return float((pred.numpy() == y.numpy()).mean())


def _load_data(name: str, seed: int) -> tuple:
    if name == "digits":
        return gd.data.datasets.digits()
    X, y = gd.data.datasets.spirals(n=200, classes=3, seed=seed)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    cut = int(0.8 * len(perm))
    tr, te = perm[:cut], perm[cut:]
    return X[gd.tensor(tr)], y[gd.tensor(tr)], X[gd.tensor(te)], y[gd.tensor(te)]


def _make_optimizer(name: str, params: list, lr: Optional[float]) -> Any:
    if name in ("sgd", "gd"):
        return gd.optim.SGD(params, lr=lr if lr is not None else 0.05, momentum=0.9)
    if name == "adam":
        return gd.optim.Adam(params, lr=lr if lr is not None else 1e-3)
    return gd.optim.ZerothOrder(params, lr=lr if lr is not None else 0.02, estimator="spsa",
                                num_samples=4, eps=1e-2)


def train(args: argparse.Namespace) -> int:
    """Trains, prints one line per epoch and the final test accuracy, writes a run folder."""
    if args.threads is not None:
        gd.set_num_threads(args.threads)
    gd.manual_seed(args.seed)
    Xtr, ytr, Xte, yte = _load_data(args.data, args.seed)
    n_in, n_classes = int(np.prod(Xtr.shape[1:])), int(ytr.numpy().max()) + 1
    model = make_network(n_in, args.hidden, n_classes)
    loss_fn = gd.nn.CrossEntropyLoss()
    opt = _make_optimizer(args.optimizer, list(model.parameters()), args.lr)
    full = args.optimizer == "gd" or args.batch_size == "full"
    bs = len(ytr) if full else args.batch_size
    gen = gd.Generator().manual_seed(args.seed)
    loader = gd.data.DataLoader(gd.data.TensorDataset(Xtr, ytr), batch_size=bs, shuffle=True,
                                generator=gen)
    epochs = args.epochs if args.epochs is not None else (200 if full else 40)
    out_dir = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    ckpt = os.path.join(out_dir, "checkpoint.npz")
    say = (lambda *a: None) if args.quiet else print
    say(f"graddesc {gd.__version__} ({gd.config()['isa']}, {gd.get_num_threads()} threads): "
        f"{args.data}, {len(ytr)} train / {len(yte)} test, net {n_in}-"
        + "-".join(str(h) for h in args.hidden) + f"-{n_classes}, {args.optimizer}, "
        f"batch {bs}, {epochs} epochs")
    losses: list = []
    t0 = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=epochs * len(loader), unit="step", disable=args.quiet, file=sys.stderr,
               dynamic_ncols=True, leave=False)
    try:
        for epoch in range(1, epochs + 1):
            bar.set_description(f"epoch {epoch}/{epochs}")
            if args.optimizer == "zeroth":
                hist_loss = _zeroth_epoch(model, loss_fn, loader, opt, bar)
            else:
                h = gd.fit(model, loss_fn, loader, opt, epochs=1, progress=False, compile=True,
                           callback=lambda _h: bar.update(1))
                hist_loss = h.loss
            losses += hist_loss
            tr_acc, te_acc = _accuracy(model, Xtr, ytr), _accuracy(model, Xte, yte)
            bar.set_postfix(loss=f"{np.mean(hist_loss):.4f}", test_acc=f"{te_acc:.3f}")
            if not args.quiet:
                bar.write(f"epoch {epoch:3d}  loss {np.mean(hist_loss):.4f}  "
                          f"train accuracy {tr_acc:.4f}  test accuracy {te_acc:.4f}",
                          file=sys.stdout)
            gd.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                     "epoch": epoch}, ckpt)
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted; the last checkpoint is {ckpt}", file=sys.stderr)
        return 130
    bar.close()
    seconds = time.perf_counter() - t0
    acc = _accuracy(model, Xte, yte)
    _write_artifacts(out_dir, model, loss_fn, Xte, yte, losses, say)
    say(f"trained in {seconds:.1f} s; run folder: {out_dir}")
    print(f"test accuracy: {acc:.2f}")
    return 0


def _zeroth_epoch(model: Any, loss_fn: Any, loader: Any, opt: Any, bar: Any) -> list:
    out = []
    for x, y in loader:
        def closure(x: Any = x, y: Any = y) -> Any:
            with gd.no_grad():
                return loss_fn(model(x), y)
        out.append(float(opt.step(closure)))
        bar.update(1)
    return out


def _write_artifacts(out_dir: str, model: Any, loss_fn: Any, X: Any, y: Any, losses: list,
                     say: Any) -> None:
    np.savetxt(os.path.join(out_dir, "loss.txt"), np.asarray(losses), fmt="%.6g")
    try:
        from graddesc import viz

        g = viz.draw_graph(loss_fn(model(X[:4]), y[:4]), model=model)
        g.save(os.path.join(out_dir, "network.dot"))
        try:
            g.save(os.path.join(out_dir, "network.svg"))
        except RuntimeError:
            pass  # Graphviz not installed: the .dot file is still there
    except ImportError:
        pass
    try:
        from graddesc import viz

        viz.plot_loss(losses, path=os.path.join(out_dir, "loss.png"))
    except ImportError:
        say("(matplotlib not installed: no loss plot; pip install 'graddesc[plot]')")


def config(_: argparse.Namespace) -> int:
    for key, value in gd.config().items():
        print(f"{key}: {value}")
    return 0


def main(argv: Optional[list] = None) -> int:
    """Runs the command line; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["train"] + argv
    args = parser.parse_args(argv)
    if args.command == "train":
        return train(args)
    if args.command == "config":
        return config(args)
    if args.command == "bench":
        from graddesc import _bench

        return _bench.main(args)
    if args.command == "draw":
        from graddesc import viz

        model = make_network(64, args.hidden, 10)
        X = gd.zeros(2, 64)
        g = viz.draw_graph(gd.nn.CrossEntropyLoss()(model(X), gd.tensor([0, 1])), model=model)
        g.save(args.out)
        print(f"wrote {args.out}")
        return 0
    if args.command == "demo":
        from graddesc import demos

        return demos.run(args)
    parser.error(f"unknown command {args.command!r}")
    return 2

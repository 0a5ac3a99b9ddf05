"""The command line: `python -m graddesc` (also the `graddesc` script).

With no arguments it runs the main job: the lecture's kind of network (Flatten -> Linear -> ReLU
-> Linear -> ReLU -> Linear) trained on the embedded 8x8 digits by minibatch SGD, one line per
epoch, ending with `test accuracy: 0.97` (the figure measured). Subcommands: train, bench, draw,
demo, config.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from typing import Any, Optional

import numpy as np

import graddesc as gd
from graddesc.optim.zeroth_order import NonFiniteLossError as NonFiniteZerothLoss
from graddesc.training import NonFiniteLossError

OPTIMIZERS = ("sgd", "gd", "adam", "zeroth")
GRAPH_FORMATS = ("dot", "gv", "svg", "png", "pdf")
MAX_THREADS = 2 ** 31 - 1  # set_num_threads takes a C int
# manual_seed reduces a seed modulo 2**64: a larger one would silently repeat a smaller one's run
MAX_SEED = 2 ** 64 - 1


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _thread_count(text: str) -> int:
    v = _positive_int(text)
    if v > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected a thread count from 1 to {MAX_THREADS}, "
                                         f"got {v}")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to 2**64-1, got {v}")
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
    parts = text.split(",")
    # an empty entry ("64,,32", "64,") is most likely a typo for a missing size: refuse it
    # rather than train a network the user did not ask for
    if any(not s.strip() for s in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 64,32, got "
                                         f"{text!r} (an empty size)")
    try:
        sizes = tuple(int(s) for s in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 64,32, got "
                                         f"{text!r}") from None
    if any(s < 1 for s in sizes):
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
    b.add_argument("--threads", type=_thread_count, default=1)

    d = sub.add_parser("draw", help="draw the block diagram of the network (DOT/SVG)")
    d.add_argument("--hidden", type=_hidden, default=(64, 32))
    d.add_argument("--out", default="graph.dot",
                   help="output path: .dot, or .svg/.png/.pdf (these need Graphviz's dot)")

    m = sub.add_parser("demo", help="lecture demos")
    m.add_argument("name", choices=["sgd-vs-gd", "zeroth-order", "preconditioned",
                                    "actor-critic"])
    m.add_argument("--out", default=None, help="output folder (default runs/demo-<name>)")
    m.add_argument("--seed", type=_seed, default=0)

    c = sub.add_parser("config", help="print the build and runtime configuration")
    # each subcommand reports errors under its own name ("graddesc train: error: ...")
    for sp in (t, b, d, m, c):
        sp.set_defaults(command_parser=sp)
    return p


def _add_train_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--data", choices=["digits", "spirals"], default="digits")
    t.add_argument("--model", choices=["mlp", "cnn"], default="mlp",
                   help="mlp: Flatten and Linear layers (--hidden); cnn: a small convnet on the "
                        "8x8 digits (two 3x3 convolutions, max pooling, a Linear head)")
    t.add_argument("--hidden", type=_hidden, default=(64, 32),
                   help="hidden layer sizes, comma-separated (default 64,32)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    t.add_argument("--lr", type=_positive_float, default=None)
    t.add_argument("--batch-size", type=_batch_size, default=None,
                   help="minibatch size (default 32); 1 is SGD, 'full' is full-batch gradient "
                        "descent")
    t.add_argument("--epochs", type=_positive_int, default=None)
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--threads", type=_thread_count, default=None)
    t.add_argument("--out", default=None, help="run folder (default runs/<date>-<time>)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of an MPI job (run under mpiexec; the "
                        "global batch is split across ranks)")
    t.add_argument("--ranks", type=_positive_int, default=None,
                   help="start the job under `mpiexec -n RANKS` (implies --distributed)")


def make_network(n_in: int, hidden: tuple, n_out: int) -> Any:
    """Flatten -> (Linear -> ReLU) per hidden size -> Linear: the lecture's 'traditional' net."""
    layers: list = [gd.nn.Flatten()]
    width = n_in
    for h in hidden:
        layers += [gd.nn.Linear(width, h), gd.nn.ReLU()]
        width = h
    layers.append(gd.nn.Linear(width, n_out))
    return gd.nn.Sequential(*layers)


def make_convnet(n_out: int = 10) -> Any:
    """The digits convnet: the 64 pixels as a 1x8x8 image -> two 3x3 convolutions with ReLU ->
    2x2 max pooling -> a Linear head."""
    nn = gd.nn
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)),
                         nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, n_out))


def _physical_memory() -> Optional[int]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on this platform
        return None


def _check_network_fits(parser: argparse.ArgumentParser, n_in: int, hidden: tuple,
                        n_out: int) -> None:
    """Refuses (parser.error) a network whose float32 weights, gradients and two optimizer
    states would not fit in this machine's memory: allocating it would fail with NumPy's
    errors, or succeed lazily and end with the kernel's OOM killer."""
    widths = (n_in, *hidden, n_out)
    n_params = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    need = 4 * 4 * n_params
    mem = _physical_memory()
    if mem is not None and need > mem:
        parser.error(f"argument --hidden: the {'-'.join(map(str, widths))} network has "
                     f"{n_params:.3g} parameters and needs about {need / 2**30:.3g} GiB for "
                     f"them, their gradients and optimizer state; this machine has "
                     f"{mem / 2**30:.3g} GiB")


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


class _DivergedError(Exception):
    """Training produced a non-finite loss or parameters; the message says where."""


class _RunError(Exception):
    """A failure to report as one line `graddesc <command>: error: ...` with exit status 1."""


def _make_out_dir(parser: argparse.ArgumentParser, path: str) -> Optional[str]:
    """Creates the output folder `path` (and missing parents) or exits through parser.error.
    Returns the outermost folder this created (None if `path` existed), so that a run that
    ends up writing nothing can remove what it created."""
    if not path:
        parser.error("argument --out: expected a folder path, got ''")
    if os.path.exists(path) and not os.path.isdir(path):
        parser.error(f"argument --out: {path!r} exists and is not a folder")
    top = None
    p = os.path.abspath(path)
    while not os.path.lexists(p):
        top, p = p, os.path.dirname(p)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        parser.error(f"argument --out: cannot create the folder {path!r}: {e.strerror or e}")
    if not os.access(path, os.W_OK | os.X_OK):
        parser.error(f"argument --out: the folder {path!r} is not writable")
    return top


def _remove_created(path: str, top: Optional[str]) -> bool:
    """Removes the empty folders from `path` up to `top` (what _make_out_dir created);
    returns True when `path` is gone."""
    if top is None:
        return False
    p = os.path.abspath(path)
    while True:
        try:
            os.rmdir(p)
        except OSError:
            return not os.path.exists(path)
        if p == top:
            return True
        p = os.path.dirname(p)


def _finite_params(model: Any) -> bool:
    return all(np.isfinite(p._data).all() for p in model.parameters())


def _launch_ranks(args: argparse.Namespace) -> int:
    """`train --ranks N`: runs this same command as `mpiexec -n N python -m graddesc train
    --distributed ...` and returns its exit status."""
    parser = args.command_parser
    if args.distributed:
        parser.error("argument --ranks: already running as an MPI job (--distributed); start "
                     "either with mpiexec and --distributed, or with --ranks alone")
    bindir = os.path.dirname(sys.executable)
    mpiexec = shutil.which("mpiexec", path=bindir + os.pathsep + os.environ.get("PATH", ""))
    if mpiexec is None:
        parser.error("argument --ranks: mpiexec not found; pip install 'graddesc[distributed]' "
                     "(mpi4py and Open MPI)")
    argv = []
    skip = False
    for a in args.argv:
        if skip:
            skip = False
        elif a == "--ranks":
            skip = True
        elif not a.startswith("--ranks="):
            argv.append(a)
    if argv and argv[0] == "train":
        argv = argv[1:]
    cmd = [mpiexec, "-n", str(args.ranks)]
    if args.ranks > (os.cpu_count() or 1):
        cmd.append("--oversubscribe")
    cmd += [sys.executable, "-m", "graddesc", "train", "--distributed", *argv]
    env = dict(os.environ)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # Open MPI refuses root without these
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    import subprocess

    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130


def train(args: argparse.Namespace) -> int:
    """Trains, prints one line per epoch and the final test accuracy, writes a run folder."""
    parser = args.command_parser
    if (args.distributed or args.ranks is not None) and args.optimizer == "zeroth":
        # (checked before mpiexec starts: one message, not one per rank)
        parser.error(f"argument {'--ranks' if args.ranks is not None else '--distributed'}: "
                     "the zeroth-order optimizer uses no gradients to average; use sgd, gd or "
                     "adam")
    if args.ranks is not None:
        return _launch_ranks(args)
    if args.distributed:
        if not gd.distributed.is_available():
            parser.error("argument --distributed: needs mpi4py; pip install "
                         "'graddesc[distributed]'")
        if not gd.distributed.is_initialized():
            gd.distributed.init_process_group("mpi")
        if args.out is None:  # one folder for all ranks: rank 0's clock names it
            args.out = gd.distributed.broadcast_object(
                os.path.join("runs", time.strftime("%Y%m%d-%H%M%S")))
        if gd.distributed.get_rank() != 0:
            args.quiet = True
    full = args.optimizer == "gd" or args.batch_size == "full"
    if args.optimizer == "gd" and args.batch_size not in (None, "full"):
        # the batch size would be ignored: refuse instead of training something else
        parser.error(f"argument --batch-size: --optimizer gd is full-batch gradient descent; "
                     f"use --batch-size full or leave it out (got {args.batch_size})")
    out_dir = args.out if args.out is not None else os.path.join(
        "runs", time.strftime("%Y%m%d-%H%M%S"))
    rank0 = not args.distributed or gd.distributed.get_rank() == 0
    created = _make_out_dir(parser, out_dir) if rank0 else None
    if args.distributed:
        gd.distributed.barrier()  # (the folder exists before any rank writes into it)
    try:
        return _train(args, out_dir, created, full)
    except BaseException:
        _remove_created(out_dir, created)  # (only empty folders: a run's files stay)
        raise


def _train(args: argparse.Namespace, out_dir: str, created: Optional[str], full: bool) -> int:
    parser = args.command_parser
    dist = gd.distributed if args.distributed else None
    world = dist.get_world_size() if dist else 1
    rank0 = dist is None or dist.get_rank() == 0
    if args.threads is not None:
        gd.set_num_threads(args.threads)
    elif dist is not None:  # the ranks share this machine's cores (one node)
        gd.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    gd.manual_seed(args.seed)
    Xtr, ytr, Xte, yte = _load_data(args.data, args.seed)
    n_in, n_classes = int(np.prod(Xtr.shape[1:])), int(ytr.numpy().max()) + 1
    cnn = args.model == "cnn"
    if cnn:
        if args.data != "digits":
            parser.error(f"argument --model: cnn needs the 8x8 images of --data digits, got "
                         f"--data {args.data}")
        model = make_convnet(n_classes)
    else:
        _check_network_fits(parser, n_in, args.hidden, n_classes)
        model = make_network(n_in, args.hidden, n_classes)
    loss_fn = gd.nn.CrossEntropyLoss()
    opt = _make_optimizer(args.optimizer, list(model.parameters()), args.lr)
    lr = opt.param_groups[0]["lr"]
    bs = len(ytr) if full else (args.batch_size or 32)
    dataset = gd.data.TensorDataset(Xtr, ytr)
    sampler = None
    if dist is not None:
        if not full and bs % world:
            parser.error(f"argument --batch-size: the global batch {bs} must split evenly "
                         f"across {world} ranks")
        # each rank a shard of every global batch: rank r takes every world-th index of the
        # epoch's permutation (full batch: the ranks' shards pad to equal sizes)
        sampler = dist.DistributedSampler(dataset, shuffle=True, seed=args.seed)
        loader = gd.data.DataLoader(dataset, batch_size=-(-bs // world), sampler=sampler)
        train_model = dist.DistributedDataParallel(model)
    else:
        gen = gd.Generator().manual_seed(args.seed)
        loader = gd.data.DataLoader(dataset, batch_size=bs, shuffle=True, generator=gen)
        train_model = model
    epochs = args.epochs if args.epochs is not None else (200 if full else (10 if cnn else 40))
    # the convnet's learning rate follows a cosine from lr to 0 over the run (its test accuracy
    # then settles instead of wandering by +-0.5% between epochs at a constant rate)
    sched = gd.optim.lr_scheduler.CosineAnnealingLR(opt, epochs) \
        if cnn and args.optimizer != "zeroth" else None
    ckpt = os.path.join(out_dir, "checkpoint.npz")
    saved_epoch = 0
    say = (lambda *a: None) if args.quiet else print
    ranks = f" x {world} ranks" if dist is not None else ""
    say(f"graddesc {gd.__version__} ({gd.config()['isa']}, {gd.get_num_threads()} threads"
        f"{ranks}): "
        f"{args.data}, {len(ytr)} train / {len(yte)} test, "
        + ("convnet 1x8x8-conv16-conv32-pool-" if cnn else
           f"net {n_in}-" + "-".join(str(h) for h in args.hidden) + "-")
        + f"{n_classes}, {args.optimizer}, "
        f"batch {bs}, {epochs} epochs")
    losses: list = []
    curves: dict = {"epoch_loss": [], "epoch_steps": [], "train_accuracy": [],
                    "test_accuracy": []}
    t0 = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=epochs * len(loader), unit="step", disable=args.quiet, file=sys.stderr,
               dynamic_ncols=True, leave=False)
    try:
        for epoch in range(1, epochs + 1):
            bar.set_description(f"epoch {epoch}/{epochs}")
            if sampler is not None:
                sampler.set_epoch(epoch)
            if args.optimizer == "zeroth":
                hist_loss = _zeroth_epoch(model, loss_fn, loader, opt, bar, losses, epoch)
            else:
                try:
                    # the callback returns None: tqdm's update() returns True when it redraws,
                    # and a callback returning True stops fit (that cut epochs short, so the
                    # bar never reached its total)
                    h = gd.fit(train_model, loss_fn, loader, opt, epochs=1, progress=False,
                               compile=True, callback=lambda _h: bar.update(1) and None)
                except NonFiniteLossError as e:
                    losses += e.history.loss
                    raise _DivergedError(f"the loss is {e.loss} at step {len(losses) + 1} (epoch "
                                    f"{epoch})") from None
                hist_loss = h.loss
                if sched is not None:
                    sched.step()
            losses += hist_loss
            if not _finite_params(model):
                # a finite loss followed by an update that overflowed: the next loss would be
                # NaN; stop here so that no checkpoint or accuracy comes from such parameters
                raise _DivergedError(f"the parameters are not finite after step {len(losses)} "
                                f"(epoch {epoch}, last loss {hist_loss[-1]:.6g})")
            epoch_loss = float(np.mean(hist_loss))
            if dist is not None:  # the mean over the ranks' shards
                t = gd.tensor([epoch_loss], dtype=gd.float64)
                dist.all_reduce(t, op=dist.ReduceOp.AVG)
                epoch_loss = float(t.numpy()[0])
            tr_acc, te_acc = _accuracy(model, Xtr, ytr), _accuracy(model, Xte, yte)
            for key, value in (("epoch_loss", epoch_loss),
                               ("epoch_steps", len(losses)), ("train_accuracy", tr_acc),
                               ("test_accuracy", te_acc)):
                curves[key].append(value)
            bar.set_postfix(loss=f"{epoch_loss:.4f}", test_acc=f"{te_acc:.3f}")
            if not args.quiet:
                bar.write(f"epoch {epoch:3d}  loss {epoch_loss:.4f}  "
                          f"train accuracy {tr_acc:.4f}  test accuracy {te_acc:.4f}",
                          file=sys.stdout)
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch}
            if dist is not None:
                dist.save_checkpoint(state, ckpt)  # rank 0 writes, atomically
            else:
                gd.save(state, ckpt)
            saved_epoch = epoch
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted; {_what_is_left(out_dir, created, saved_epoch, losses)}",
              file=sys.stderr)
        return 130
    except _DivergedError as e:
        bar.close()
        parser.exit(1, f"{parser.prog}: error: training diverged: {e}; try a smaller --lr "
                       f"(it was {lr:g}); {_what_is_left(out_dir, created, saved_epoch, losses)}"
                       f"\n")
    bar.refresh()  # the last state (every step done), not the last rate-limited redraw
    bar.close()
    seconds = time.perf_counter() - t0
    acc = _accuracy(model, Xte, yte)
    if rank0:
        _write_artifacts(out_dir, model, loss_fn, Xte, yte, losses, say, curves)
        say(f"trained in {seconds:.1f} s; run folder: {out_dir}")
        print(f"test accuracy: {acc:.2f}")
    if dist is not None:
        dist.barrier()
    return 0


def _what_is_left(out_dir: str, created: Optional[str], saved_epoch: int, losses: list) -> str:
    """After a stopped run: keeps the folder when it holds a checkpoint (and writes the losses
    so far beside it), else removes the folder if this run created it; says which."""
    if saved_epoch:
        np.savetxt(os.path.join(out_dir, "loss.txt"), np.asarray(losses), fmt="%.6g")
        steps = "step 1" if len(losses) == 1 else f"steps 1-{len(losses)}"
        return (f"{out_dir} keeps the checkpoint of epoch {saved_epoch} and the loss of {steps} "
                "(loss.txt)")
    if _remove_created(out_dir, created):
        return f"nothing was saved, so the run folder {out_dir} was removed"
    return f"nothing was saved in {out_dir}"


def _zeroth_epoch(model: Any, loss_fn: Any, loader: Any, opt: Any, bar: Any, losses: list,
                  epoch: int) -> list:
    out: list = []
    for x, y in loader:
        def closure(x: Any = x, y: Any = y) -> Any:
            with gd.no_grad():
                return loss_fn(model(x), y)
        try:
            value = float(opt.step(closure))
        except NonFiniteZerothLoss as e:  # at the current point or a perturbed one
            value = e.value
        if not math.isfinite(value):
            losses += out
            raise _DivergedError(f"the loss is {value} at step {len(losses) + 1} (epoch {epoch})")
        out.append(value)
        bar.update(1)
    return out


def _write_artifacts(out_dir: str, model: Any, loss_fn: Any, X: Any, y: Any, losses: list,
                     say: Any, curves: dict) -> None:
    """Writes loss.txt, network.dot (and .svg with Graphviz) and loss.png: the per-step loss with
    its epoch means and the train and test accuracy after each epoch (`curves`)."""
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

        viz.plot_loss(losses, path=os.path.join(out_dir, "loss.png"), **curves)
    except ImportError:
        say("(matplotlib not installed: no loss plot; pip install 'graddesc[plot]')")


def config(_: argparse.Namespace) -> int:
    for key, value in gd.config().items():
        print(f"{key}: {value}")
    return 0


def draw(args: argparse.Namespace) -> int:
    """Writes the block diagram of the network that `train --hidden ...` would build."""
    from graddesc import viz

    parser = args.command_parser
    out = args.out
    stem, ext = os.path.splitext(out)
    ext = ext[1:].lower() or "dot"  # no extension: DOT text
    if ext not in GRAPH_FORMATS:
        parser.error(f"argument --out: unsupported extension .{ext} (use .dot, .svg, .png or "
                     ".pdf)")
    if not out:
        parser.error("argument --out: expected a file name, got ''")
    if os.path.isdir(out):
        parser.error(f"argument --out: {out!r} is a folder, not a file name")
    parent = os.path.dirname(out) or "."
    if not os.path.isdir(parent):
        parser.error(f"argument --out: the folder {parent!r} does not exist")
    _check_network_fits(parser, 64, args.hidden, 10)
    model = make_network(64, args.hidden, 10)
    X = gd.zeros(2, 64)
    g = viz.draw_graph(gd.nn.CrossEntropyLoss()(model(X), gd.tensor([0, 1])), model=model)
    if ext in ("dot", "gv"):
        g.save(out)
        print(f"wrote {out}")
        return 0
    if shutil.which("dot") is None:
        # the DOT text is still useful: Graphviz (or an online viewer) can render it later
        dot_path = stem + ".dot"
        g.save(dot_path)
        print(f"wrote {dot_path}")
        raise _RunError(f"{out} needs Graphviz's 'dot' program, which is not installed "
                      "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz); "
                      f"wrote the DOT text to {dot_path} instead")
    try:
        g.save(out)
    except RuntimeError as e:  # dot ran and failed
        raise _RunError(str(e).replace("\n", " ")) from None
    print(f"wrote {out}")
    return 0


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "train":
        return train(args)
    if args.command == "config":
        return config(args)
    if args.command == "bench":
        from graddesc import _bench

        return _bench.main(args)
    if args.command == "draw":
        return draw(args)
    if args.command == "demo":
        from graddesc import demos

        if args.out is None:
            args.out = os.path.join("runs", f"demo-{args.name}")
        # create (or refuse) the folder before the demo runs, not after
        created = _make_out_dir(args.command_parser, args.out)
        try:
            return demos.run(args)
        except BaseException:
            _remove_created(args.out, created)  # (only empty folders)
            raise
    parser.error(f"unknown command {args.command!r}")
    return 2


def main(argv: Optional[list] = None) -> int:
    """Runs the command line; returns the exit code. Errors end with one line
    `graddesc <command>: error: ...` on stderr: exit status 2 for bad arguments, 1 for a run that
    failed (diverged, out of memory, a file that could not be written), 130 when interrupted."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["train"] + argv
    args = parser.parse_args(argv)
    args.argv = argv  # (train --ranks runs the same command under mpiexec)
    sub = getattr(args, "command_parser", parser)
    try:
        return _run(parser, args)
    except _RunError as e:
        sub.exit(1, f"{sub.prog}: error: {e}\n")
    except MemoryError as e:
        sub.exit(1, f"{sub.prog}: error: out of memory: {e or 'an allocation failed'}\n")
    except OSError as e:  # a file that could not be written or read (disk full, permissions)
        where = f": {e.filename}" if e.filename else ""
        sub.exit(1, f"{sub.prog}: error: {e.strerror or e}{where}\n")
    except KeyboardInterrupt:
        sub.exit(130, f"\n{sub.prog}: interrupted\n")
    return 1

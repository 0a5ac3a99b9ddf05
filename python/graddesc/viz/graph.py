"""draw_graph: a computation graph drawn in the lecture's block-diagram notation.

- observed variables (inputs that need no gradient, e.g. data x and targets y): shaded ovals;
- computed variables (outputs of deterministic functions): white ovals;
- parameters (implicit weights w of a function block): light blue ovals;
- deterministic functions: rounded boxes, labelled with the op (and its module);
- the scalar-valued cost: a red box at the end.
With a model given, each of its child modules can be collapsed into one function block.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
from typing import Any, Optional

import numpy as np

from graddesc._tensor import Tensor
from graddesc.autograd.function import AccumulateGrad, node_name


class Graph:
    """A drawn graph: `.dot` is Graphviz DOT text; `.svg()` and `.save(path)` render it with the
    Graphviz `dot` program when it is installed.

    >>> x = gd.randn(3, requires_grad=True)
    >>> graph = gd.viz.draw_graph((x * x).sum())
    >>> isinstance(graph, gd.viz.Graph), "->" in graph.dot
    (True, True)
    """

    def __init__(self, dot: str) -> None:
        self.dot = dot

    def __repr__(self) -> str:
        return f"Graph({self.dot.count('->')} edges)"

    def _render(self, fmt: str) -> bytes:
        exe = shutil.which("dot")
        if exe is None:
            raise RuntimeError("rendering needs the Graphviz 'dot' program, which is not "
                               "installed (Debian/Ubuntu: apt-get install graphviz; macOS: brew "
                               "install graphviz). Graph.dot holds the DOT text meanwhile.")
        res = subprocess.run([exe, f"-T{fmt}"], input=self.dot.encode(), capture_output=True,
                             timeout=60, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"dot failed: {res.stderr.decode(errors='replace')[:500]}")
        return res.stdout

    def svg(self) -> str:
        """The graph as SVG text (needs Graphviz)."""
        return self._render("svg").decode()

    def save(self, path: str) -> str:
        """Writes .dot (always possible), or .svg/.png/.pdf (needs Graphviz); returns path."""
        # splitext: a dot in a folder name ("runs.v2/graph") is no extension
        ext = os.path.splitext(path)[1][1:].lower() or "dot"
        if ext in ("dot", "gv"):
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.dot)
        elif ext in ("svg", "png", "pdf"):
            data = self._render(ext)
            with open(path, "wb") as f:
                f.write(data)
        else:
            raise ValueError(f"Graph.save: unsupported extension .{ext} (use .dot, .svg, .png, "
                             ".pdf)")
        return path

    def _repr_svg_(self) -> Optional[str]:
        try:
            return self.svg()
        except RuntimeError:
            return None


_STYLE = {
    "observed": 'shape=ellipse, style=filled, fillcolor="#d9d9d9"',
    "computed": 'shape=ellipse, style=solid',
    "param": 'shape=ellipse, style=filled, fillcolor="#cfe2f3"',
    "function": 'shape=box, style="rounded,filled", fillcolor="#fff2cc"',
    "cost": 'shape=box, style=filled, fillcolor="#f4cccc", penwidth=2',
}


def _shape(shape: Any) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _op_label(node: Any) -> str:
    name = node_name(node)
    return name[:-len("Backward")] if name.endswith("Backward") else name


def draw_graph(output: Tensor, model: Any = None, collapse: Optional[bool] = None,
               show_grads: bool = False, max_nodes: int = 500) -> Graph:
    """Draws the graph that computed `output` (call it before backward frees the graph).

    Args:
        output: a Tensor with a grad_fn; a one-element output is drawn as the scalar cost.
        model: an nn.Module whose parameter names label the weights and whose child modules can
            be collapsed into single blocks.
        collapse: draw each child module of `model` as one function block (default: True when
            a model is given); False expands every op.
        show_grads: label each edge with the norm of the gradient flowing back along it, that
            is its consumer's share of dC/dz, and each variable z with the norm of its total
            dC/dz, the sum of the shares of all its consumers (the fan-out rule). Runs a backward
            pass that leaves .grad untouched.
        max_nodes: refuse graphs larger than this (ValueError), to keep the drawing readable.

    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> loss = nn.CrossEntropyLoss()(net(gd.randn(5, 4)), gd.tensor([0, 1, 0, 1, 1]))
    >>> graph = gd.viz.draw_graph(loss, model=net)
    >>> graph.dot.startswith("digraph")
    True
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"draw_graph: output must be a Tensor, got {type(output).__name__}")
    if output.grad_fn is None:
        raise ValueError("draw_graph: output has no grad_fn (it was computed without "
                         "recording, or it is a leaf); compute it with parameters that require "
                         "grad, outside no_grad()")
    if collapse is None:
        collapse = model is not None
    names: dict = {}
    mod_names: dict = {}
    if model is not None:
        names = {id(p): n for n, p in model.named_parameters()}
        mod_names = {id(m): n for n, m in model.named_modules()}

    # collect nodes reachable from the output
    order: list = []
    seen: set = set()
    stack = [output.grad_fn]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        order.append(n)
        if len(order) > max_nodes:
            raise ValueError(f"draw_graph: more than {max_nodes} nodes; pass a larger max_nodes "
                             "or collapse=True with a model")
        for e in getattr(n, "next_edges", ()):
            if e is not None:
                stack.append(e[0])

    shares: dict = {}
    totals: dict = {}
    if show_grads:
        shares, totals = _edge_gradients(output)

    def block_of(n: Any) -> Any:
        """The collapsed block a function node belongs to: (key, label) or None."""
        if not collapse or type(n) is AccumulateGrad:
            return None
        scope = getattr(n, "_scope", ()) or ()
        # scope = (outermost module, ...); collapse to the child of `model` (or to the
        # outermost module when no model is given)
        if model is not None and model in scope:
            i = scope.index(model)
            if i + 1 < len(scope):
                m = scope[i + 1]
                return id(m), f"{mod_names.get(id(m), '')}: {type(m).__name__}".strip(": ")
            return None  # an op written directly in the model's forward
        if scope:  # a module outside the model (e.g. the loss module): one block
            m = scope[0]
            return id(m), type(m).__name__
        return None

    lines = ["digraph G {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9];']
    ids: dict = {}

    def nid(key: Any) -> str:
        if key not in ids:
            ids[key] = f"n{len(ids)}"
        return ids[key]

    declared: set = set()

    def declare(key: Any, label: str, kind: str, grad: Any = None) -> str:
        i = nid(key)
        if i not in declared:
            declared.add(i)
            text = html.escape(label, quote=True)
            if grad is not None:
                text += "\\n" + _norm_label(grad)  # DOT's line break
            lines.append(f'  {i} [label="{text}", {_STYLE[kind]}];')
        return i

    # (a, b) -> the gradient along the drawn edge a -> b, or None. Several graph edges can map
    # to one drawn edge (a variable used twice inside one collapsed block, or twice by one op as
    # in z * z): the drawn edge carries the sum of their shares
    edges: dict = {}

    def edge(a: str, b: str, grad: Any = None) -> None:
        if a == b:
            return
        if (a, b) not in edges or edges[(a, b)] is None:
            edges[(a, b)] = grad
        elif grad is not None:
            edges[(a, b)] = edges[(a, b)] + grad

    is_cost = output.numel() == 1

    def fn_key(n: Any) -> tuple:
        blk = block_of(n)
        return (("block", blk[0]), blk[1]) if blk is not None else (("fn", id(n)), _op_label(n))

    final_key = fn_key(output.grad_fn)[0]

    def fn_id(n: Any) -> str:
        key, label = fn_key(n)
        if is_cost and key == final_key:  # the scalar-valued cost function
            return declare(key, "cost C = " + label, "cost")
        return declare(key, label, "function")

    def var_id(n: Any, nr: int) -> str:
        """The computed variable that is output nr of node n."""
        meta = n._output_meta[nr] if getattr(n, "_output_meta", None) else None
        label = "z " + _shape(meta[0]) if meta else "z"
        return declare(("var", id(n), nr), label, "computed", totals.get((id(n), nr)))

    for n in order:
        if type(n) is AccumulateGrad:
            continue
        f = fn_id(n)
        for i, e in enumerate(n.next_edges):
            meta = n._input_meta[i] if n._input_meta else None
            if e is None:
                if meta is None:
                    continue
                src = declare(("obs", id(n), i), ("x " if np.dtype(meta[1]).kind == "f" else
                                                   "y ") + _shape(meta[0]), "observed")
                edge(src, f)
                continue
            child, nr = e
            if type(child) is AccumulateGrad:
                v = child.variable
                label = names.get(id(v), "w") + " " + _shape(v.shape)
                src = declare(("param", id(v)), label, "param" if v.is_leaf else "computed",
                              totals.get((id(child), 0)))
                edge(src, f, shares.get((id(n), i)))
                continue
            cblk = block_of(child)
            if cblk is not None and cblk == block_of(n):
                continue  # inside one collapsed block
            src = var_id(child, nr)
            edge(fn_id(child), src)
            edge(src, f, shares.get((id(n), i)))
    if not is_cost:
        out = var_id(output.grad_fn, output._output_nr)
        edge(fn_id(output.grad_fn), out)
    for (a, b), g in edges.items():
        extra = f' [label="{_norm_label(g)}"]' if g is not None else ""
        lines.append(f"  {a} -> {b}{extra};")
    lines.append("}")
    return Graph("\n".join(lines) + "\n")


def _norm_label(g: np.ndarray) -> str:
    return f"|g|={float(np.linalg.norm(g)):.3g}"


def _edge_gradients(output: Tensor) -> tuple:
    """Backpropagates from `output` (seeded with ones) and returns (shares, totals):
    shares[(id(node), i)] is the gradient that node's backward sends to its input i (that
    consumer's contribution to dC/d(input)); totals[(id(node), nr)] is the summed dC/d(output nr
    of node), what node's backward receives. Plain NumPy arrays; .grad and the graph stay as they
    were. The engine only exposes the summed gradients, so the walk is done here: like the
    engine's, each node runs once, after all its consumers."""
    from graddesc.autograd import engine
    from graddesc.autograd.grad_mode import no_grad

    root = output.grad_fn
    deps = engine._collect([root])
    seed = Tensor._make(np.ones(output._data.shape, dtype=output._data.dtype))
    buffers: dict = {root: {output._output_nr: seed}}
    shares: dict = {}
    totals: dict = {}
    ready = [root]
    with no_grad():
        while ready:
            node = ready.pop()
            slots = buffers.pop(node, {})
            for nr, g in slots.items():
                totals[(id(node), nr)] = g._data
            if type(node) is AccumulateGrad:
                continue
            grads_in = engine._run_node(node, slots)
            for i, e in enumerate(node.next_edges):
                if e is None:
                    continue
                child, nr = e
                g = grads_in[i]
                if g is not None:
                    g = engine._fit_to_input(g, node._input_meta[i], node, i)
                    shares[(id(node), i)] = g._data
                    cslots = buffers.setdefault(child, {})
                    cslots[nr] = g if nr not in cslots else cslots[nr] + g
                deps[child] -= 1
                if deps[child] == 0:
                    ready.append(child)
    return shares, totals

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
import shutil
import subprocess
from typing import Any, Optional

import numpy as np

from graddesc._tensor import Tensor
from graddesc.autograd.function import AccumulateGrad, node_name


class Graph:
    """A drawn graph: `.dot` is Graphviz DOT text; `.svg()` and `.save(path)` render it with the
    Graphviz `dot` program when it is installed."""

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
        ext = path.rsplit(".", 1)[-1].lower() if "." in path else "dot"
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
        show_grads: label each edge with the norm of the gradient flowing back along it (runs a
            backward pass that leaves .grad untouched).
        max_nodes: refuse graphs larger than this (ValueError), to keep the drawing readable.
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

    grads: dict = {}
    if show_grads:
        grads = _edge_gradients(output, order)

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

    def declare(key: Any, label: str, kind: str) -> str:
        i = nid(key)
        if i not in declared:
            declared.add(i)
            lines.append(f'  {i} [label="{html.escape(label, quote=True)}", {_STYLE[kind]}];')
        return i

    edges: set = set()

    def edge(a: str, b: str, label: str = "") -> None:
        if a == b or (a, b) in edges:
            return
        edges.add((a, b))
        extra = f' [label="{label}"]' if label else ""
        lines.append(f"  {a} -> {b}{extra};")

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
        return declare(("var", id(n), nr), label, "computed")

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
                src = declare(("param", id(v)), label, "param" if v.is_leaf else "computed")
                g = grads.get((id(child), 0))
                edge(src, f, g)
                continue
            cblk = block_of(child)
            if cblk is not None and cblk == block_of(n):
                continue  # inside one collapsed block
            src = var_id(child, nr)
            edge(fn_id(child), src)
            edge(src, f, grads.get((id(child), nr), ""))
    if not is_cost:
        out = var_id(output.grad_fn, output._output_nr)
        edge(fn_id(output.grad_fn), out)
    lines.append("}")
    return Graph("\n".join(lines) + "\n")


def _edge_gradients(output: Tensor, order: list) -> dict:
    """{(id(node), output_nr): 'label'} with the norm of dC/d(that variable)."""
    from graddesc.autograd import engine

    leaves = [n.variable for n in order if type(n) is AccumulateGrad]
    seen: dict = {}

    def observe(node: Any, slots: dict) -> None:
        for nr, g in slots.items():
            seen[(id(node), nr)] = f"|g|={float(np.linalg.norm(g._data)):.3g}"

    seed = Tensor._make(np.ones(output._data.shape, dtype=output._data.dtype))
    if leaves:
        engine.run_backward([output], [seed], retain_graph=True, create_graph=False,
                            inputs=leaves, allow_unused=True, observer=observe)
    return seen

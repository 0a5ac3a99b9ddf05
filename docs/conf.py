"""Sphinx configuration of graddesc's documentation site.

Build (what .ci/docs runs, strict: every warning, broken link or missing reference fails):
    pip install ".[docs]"
    python -m sphinx -W --keep-going -n -b html docs docs/_build/html
Markdown pages are MyST; the tutorials are Jupyter notebooks that MyST-NB executes during the
build (their figures are the outputs of that run); the API reference is autodoc over the
installed package's docstrings.
"""

from __future__ import annotations

import os
import re
import sys

import graddesc

project = "graddesc"
author = "graddesc developers"
copyright = "2026, graddesc developers"  # noqa: A001
release = version = graddesc.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# Notebooks: executed on every build; an error in a cell fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 120

autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"
autodoc_inherit_docstrings = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Missing references fail the build (-n); these targets live outside graddesc (Python, NumPy,
# Matplotlib), whose inventories are not fetched (the build needs no network).
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|typing|collections|matplotlib|plt|optional|callable)(\..*)?"),
    (r"py:.*", r"(Any|Optional|Callable|Sequence|Iterable|Iterator|Union|TextIO|ndarray)"),
    (r"py:.*", r"(int|float|bool|str|tuple|list|dict|None|object|type|bytes|Exception)"),
    (r"py:.*", r"(ValueError|TypeError|RuntimeError|IndexError|FloatingPointError)"),
    # "Raises:" sections name exceptions in prose ("ValueError / TypeError: ...")
    (r"py:exc", r".*"),
]

html_theme = "furo"
html_title = f"graddesc {release}"
html_static_path: list = []

# The names that PyTorch does not have: their API entries carry a "graddesc addition" note.
sys.path.insert(0, os.path.dirname(__file__))
from additions import ADDITIONS  # noqa: E402, I001


_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")


def _plain(line: str) -> str:
    """The docstrings are plain text, not reST: |x| and a lone * are characters, not markup.
    Escapes them outside `literal` spans; leaves doctest lines and napoleon's output alone."""
    if line.lstrip().startswith((">>>", "...")):
        return line
    field = re.match(r"\s*:[^:]*:", line)  # napoleon's ":param x:" prefix stays as it is
    head = field.group(0) if field else ""
    parts = _LITERAL.split(line[len(head):])
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"(?<!\\)([|*])", r"\\\1", parts[i])
    return head + "".join(parts)


def _mark_additions(app, what, name, obj, options, lines):  # noqa: ANN001
    lines[:] = [_plain(line) for line in lines]
    if name in ADDITIONS:
        lines[:0] = [".. admonition:: graddesc addition", "",
                     "   Not in PyTorch: " + ADDITIONS[name], ""]


def setup(app):  # noqa: ANN001
    app.connect("autodoc-process-docstring", _mark_additions)

"""Shared benchmark helpers: medians of repeated timings, a table printer, JSON output."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time
from typing import Any, Callable

from graddesc._bench import median_seconds

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def median_time(fn: Callable[[], object], min_time: float = 0.2, repeat: int = 7) -> float:
    """Median seconds per call (graddesc._bench.median_seconds: warm-up, auto-sized samples)."""
    return median_seconds(fn, min_time=min_time, repeat=repeat)


def print_table(headers: list, rows: list) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = " | ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(v).ljust(w) for v, w in zip(r, widths)))


def save_json(name: str, payload: dict) -> pathlib.Path:
    RESULTS.mkdir(exist_ok=True)
    payload = dict(payload)
    payload["machine"] = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def torch_one_thread() -> Any:
    """PyTorch set to one intra-op thread, or None when it is not installed (comparisons with it
    are then skipped)."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    return torch


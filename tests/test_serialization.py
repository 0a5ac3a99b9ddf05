"""graddesc.serialization: round trips, a corpus of malformed/hostile files, atomic writes.

This is the one file in the project allowed to mention the pickle module: it builds hostile
files with it to check that `load` refuses them.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import graddesc as gd
from graddesc.serialization import load, save

PACKAGE_DIR = Path(gd.__file__).resolve().parent


def _assert_same(a: Any, b: Any) -> None:
    """Structure, types, dtypes and values (NaN-aware) are identical."""
    if isinstance(a, (gd.Tensor, np.ndarray)):
        assert isinstance(b, gd.Tensor)
        av = a._data if isinstance(a, gd.Tensor) else a
        assert b._data.dtype == av.dtype and b.shape == av.shape
        assert b._data.flags.c_contiguous and b._data.flags.writeable
        np.testing.assert_array_equal(b._data, av)
        assert not b.requires_grad
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert type(k) is type(next(kb for kb in b if kb == k))
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b)
    else:
        assert type(a) is type(b) and a == b


def _checkpoint() -> dict:
    """A model state dict and an optimizer state dict in PyTorch's layout, plus extras."""
    gd.manual_seed(0)
    model = gd.nn.Sequential(gd.nn.Linear(3, 4), gd.nn.ReLU(), gd.nn.Linear(4, 2))
    optimizer = {
        "state": {0: {"step": gd.tensor(7.0), "exp_avg": gd.randn(4, 3),
                      "exp_avg_sq": gd.rand(4, 3, dtype=gd.float64)},
                  3: {"momentum_buffer": None}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                          "amsgrad": False, "foreach": None, "params": [0, 1, 2, 3]}],
    }
    return {"model": model.state_dict(), "optimizer": optimizer, "epoch": 12,
            "loss": 0.1 + 0.2, "nan": float("nan"), "inf": -float("inf"), "name": "réseau ✓",
            "mask": gd.tensor([[True, False], [False, True]]), "index": gd.tensor([3, -1, 2**40]),
            "scalar": gd.tensor(2.5, dtype=gd.float64), "empty": gd.zeros(0, 3),
            "numpy": np.arange(6, dtype=np.int64).reshape(2, 3), "nested": [[[], ()], {}],
            "big": 2**70}


# ---- round trips -----------------------------------------------------------------------------
def test_round_trip_nested(tmp_path: Path) -> None:
    obj = _checkpoint()
    path = tmp_path / "ckpt.npz"
    save(obj, path)
    back = load(path)
    _assert_same(obj, back)
    assert isinstance(back["optimizer"]["param_groups"][0]["betas"], tuple)
    assert list(back["optimizer"]["state"]) == [0, 3]  # int keys stay ints
    assert back["model"]["0.weight"].dtype == gd.float32
    assert back["optimizer"]["state"][0]["exp_avg_sq"].dtype == gd.float64
    assert back["index"].dtype == gd.int64 and back["mask"].dtype == gd.bool
    assert back["loss"] == 0.1 + 0.2  # floats are exact


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64, gd.int64, gd.bool])
def test_round_trip_dtypes(tmp_path: Path, dtype: Any, rng: np.random.Generator) -> None:
    a = gd.tensor(rng.standard_normal((3, 5)) * 100).to(dtype)
    save({"a": a, "t": a.t()}, tmp_path / "x.npz")  # a non-contiguous view too
    back = load(tmp_path / "x.npz")
    _assert_same({"a": a, "t": a.t()}, back)


def test_loads_into_a_module_and_is_a_copy(tmp_path: Path) -> None:
    gd.manual_seed(1)
    src, dst = gd.nn.Linear(5, 3), gd.nn.Linear(5, 3)
    save(src.state_dict(), str(tmp_path / "m.npz"))
    state = load(str(tmp_path / "m.npz"))
    dst.load_state_dict(state)
    x = gd.randn(4, 5)
    np.testing.assert_array_equal(src(x).detach().numpy(), dst(x).detach().numpy())
    state["weight"].numpy()[:] = 0  # loaded tensors own their memory
    assert np.abs(dst.weight.detach().numpy()).sum() > 0


def test_file_objects_and_plain_numpy_reader(tmp_path: Path) -> None:
    buf = io.BytesIO()
    obj = {"w": gd.ones(2, 2), "n": 3}
    save(obj, buf)
    _assert_same(obj, load(io.BytesIO(buf.getvalue())))
    path = tmp_path / "o.npz"
    path.write_bytes(buf.getvalue())
    with np.load(path, allow_pickle=False) as f:  # a standard .npz: NumPy reads it too
        assert sorted(f.files) == ["__structure__", "t0"]
        np.testing.assert_array_equal(f["t0"], np.ones((2, 2), np.float32))
    with open(path, "rb") as fp:
        _assert_same(obj, load(fp))


def test_compressed_npz_written_by_numpy_loads(tmp_path: Path) -> None:
    structure = {"format": "graddesc", "version": 1,
                 "root": {"type": "tensor", "key": "t0", "dtype": "float64", "shape": [2, 2]}}
    raw = np.frombuffer(json.dumps(structure).encode(), np.uint8)
    arr = np.asfortranarray(np.arange(4.0).reshape(2, 2))
    np.savez_compressed(tmp_path / "c.npz", __structure__=raw, t0=arr)
    back = load(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.numpy(), arr)
    assert back._data.flags.c_contiguous


def test_big_endian_entries_load_as_native(tmp_path: Path) -> None:
    save({"a": np.arange(3, dtype=">f8"), "b": np.array([-5, 7], dtype=">i8")}, tmp_path / "b.npz")
    back = load(tmp_path / "b.npz")
    assert back["a"]._data.dtype == np.float64 and back["a"]._data.dtype.isnative
    assert back["a"].tolist() == [0.0, 1.0, 2.0] and back["b"].tolist() == [-5, 7]
    other = load(io.BytesIO(_graddesc_zip(_npy(np.array([1.5, -2.0], dtype=">f4")))))
    assert other._data.dtype == np.float32 and other._data.dtype.isnative
    assert other.tolist() == [1.5, -2.0]


def test_save_rejects_unsupported_values(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"obj\['a'\]"):
        save({"a": object()}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="float16"):
        save({"w": np.zeros(2, np.float16)}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="keys"):
        save({(1, 2): 3}, tmp_path / "x.npz")
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="cycle"):
        save(cyclic, tmp_path / "x.npz")
    assert not list(tmp_path.iterdir())  # nothing written, no temporary files left


# ---- atomic writes ---------------------------------------------------------------------------
def test_failed_replace_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    path = tmp_path / "ckpt.npz"
    save({"v": gd.tensor([1.0])}, path)

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        save({"v": gd.tensor([2.0])}, path)
    monkeypatch.undo()
    assert load(path)["v"].tolist() == [1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # temporary file removed


def test_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    path = tmp_path / "ckpt.npz"
    save({"a": gd.zeros(3), "b": gd.zeros(3)}, path)
    real = np.lib.format.write_array
    calls = []

    def flaky(fp: Any, array: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is interrupted half-way through the archive
        real(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", flaky)
    with pytest.raises(KeyboardInterrupt):
        save({"a": gd.ones(3), "b": gd.ones(3)}, path)
    monkeypatch.undo()
    assert load(path)["b"].tolist() == [0.0, 0.0, 0.0]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz")


# ---- malformed and hostile files ---------------------------------------------------------------
def _valid_bytes() -> bytes:
    buf = io.BytesIO()
    save({"w": gd.arange(12, dtype=gd.float32).reshape(3, 4), "b": gd.zeros(4), "n": 1}, buf)
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=False)
    return buf.getvalue()


def _npy_raw(header: str, data: bytes, version: int = 1) -> bytes:
    text = header.encode("latin1")
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text + data


def _structure(root: Any, **top: Any) -> bytes:
    doc = {"format": "graddesc", "version": 1, "root": root}
    doc.update(top)
    return _npy(np.frombuffer(json.dumps(doc).encode(), np.uint8))


_T0 = {"type": "tensor", "key": "t0", "dtype": "float32", "shape": [2]}


def _zip(entries: dict, compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _graddesc_zip(t0: bytes, root: Any = None, compression: int = zipfile.ZIP_STORED,
                  **extra: bytes) -> bytes:
    return _zip({"__structure__.npy": _structure(root or _T0), "t0.npy": t0, **extra},
                compression)


class _Boom:
    """Unpickling this would create a directory: proof that code ran."""

    marker = ""

    def __reduce__(self) -> Any:
        return (os.mkdir, (self.marker,))


def _hostile_pickle(marker: str) -> bytes:
    boom = _Boom()
    boom.marker = marker
    return pickle.dumps(boom)


def _patch_central_size(data: bytes, name: bytes, size: int) -> bytes:
    """Rewrites the uncompressed size of one entry in the zip's central directory."""
    at = 0
    while True:
        at = data.index(b"PK\x01\x02", at)
        nlen = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + nlen] == name:
            return data[:at + 24] + struct.pack("<I", size) + data[at + 28:]
        at += 46


def _malformed_corpus(tmp: Path) -> dict[str, Callable[[], bytes]]:
    good = _valid_bytes()
    marker = str(tmp / "pwned")
    corpus: dict[str, Callable[[], bytes]] = {
        "empty file": lambda: b"",
        "random bytes": lambda: np.random.default_rng(0).bytes(1000),
        "random bytes after PK": lambda: b"PK\x03\x04" + np.random.default_rng(1).bytes(500),
        "text": lambda: b"hello, this is not a checkpoint\n",
        "raw pickle file": lambda: _hostile_pickle(marker),
        "plain .npy, not a zip": lambda: _npy(np.zeros(3, np.float32)),
        "npz with a pickled object array": lambda: _np_savez_object(tmp),
        "zip with an object-dtype entry": lambda: _graddesc_zip(
            _npy_raw("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
                     _hostile_pickle(marker))),
        "entry that is a raw pickle": lambda: _graddesc_zip(_hostile_pickle(marker)),
        "no structure entry": lambda: _zip({"t0.npy": _npy(np.zeros(2, np.float32))}),
        "missing tensor entry": lambda: _zip({"__structure__.npy": _structure(_T0)}),
        "extra entry": lambda: _graddesc_zip(_npy(np.zeros(2, np.float32)),
                                             **{"t1.npy": _npy(np.zeros(2, np.float32))}),
        "entry with a path": lambda: _graddesc_zip(_npy(np.zeros(2, np.float32)),
                                                   **{"../evil.npy": b""}),
        "non-npy entry": lambda: _graddesc_zip(_npy(np.zeros(2, np.float32)),
                                               **{"readme.txt": b"hi"}),
        "dtype differs from the structure": lambda: _graddesc_zip(_npy(np.zeros(2, np.float64))),
        "shape differs from the structure": lambda: _graddesc_zip(_npy(np.zeros(3, np.float32))),
        "complex entry": lambda: _graddesc_zip(_npy(np.zeros(2, np.complex64))),
        "float16 entry": lambda: _graddesc_zip(_npy(np.zeros(2, np.float16))),
        "int32 entry": lambda: _graddesc_zip(_npy(np.zeros(2, np.int32))),
        "string entry": lambda: _graddesc_zip(_npy(np.array(["ab", "cd"]))),
        "structured entry": lambda: _graddesc_zip(_npy(np.zeros(2, [("a", "<f4")]))),
        "bool bytes other than 0/1": lambda: _zip({
            "__structure__.npy": _structure({"type": "tensor", "key": "t0", "dtype": "bool",
                                             "shape": [2]}),
            "t0.npy": _npy_raw("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }",
                               b"\x01\x07")}),
        "huge claimed shape": lambda: _zip({
            "__structure__.npy": _structure({"type": "tensor", "key": "t0", "dtype": "float64",
                                             "shape": [10**12]}),
            "t0.npy": _npy_raw(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }",
                b"\x00" * 16)}),
        "huge shape in the npy header only": lambda: _graddesc_zip(_npy_raw(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }", b"\0" * 8)),
        "too many dims": lambda: _graddesc_zip(_npy_raw(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (" + "1," * 40 + "), }", b"")),
        "negative shape": lambda: _graddesc_zip(_npy_raw(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", b"")),
        "absurd header length": lambda: _graddesc_zip(
            b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{}"),
        "header length past the end": lambda: _graddesc_zip(
            b"\x93NUMPY\x01\x00" + struct.pack("<H", 5000) + b"{'descr'"),
        "header is code": lambda: _graddesc_zip(_npy_raw(
            "__import__('os').mkdir(" + repr(marker) + ")", b"")),
        "header with extra keys": lambda: _graddesc_zip(_npy_raw(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", b"\0" * 8)),
        "header deeply nested": lambda: _graddesc_zip(_npy_raw("(" * 5000 + ")" * 5000, b"")),
        "npy version 9": lambda: _graddesc_zip(b"\x93NUMPY\x09\x00" + _npy(np.zeros(2))[8:]),
        "truncated npy data": lambda: _graddesc_zip(_npy(np.zeros(2, np.float32))[:-3]),
        "trailing npy data": lambda: _graddesc_zip(_npy(np.zeros(2, np.float32)) + b"\0"),
        "structure not uint8": lambda: _zip({
            "__structure__.npy": _npy(np.frombuffer(json.dumps({}).encode(), np.int8)),
            "t0.npy": _npy(np.zeros(2, np.float32))}),
        "structure not UTF-8": lambda: _zip({
            "__structure__.npy": _npy(np.frombuffer(b"\xff\xfe{\x00", np.uint8))}),
        "structure not JSON": lambda: _zip({
            "__structure__.npy": _npy(np.frombuffer(b"{'root': 1", np.uint8))}),
        "structure is a list": lambda: _zip({
            "__structure__.npy": _npy(np.frombuffer(b"[1, 2]", np.uint8))}),
        "structure deeply nested JSON": lambda: _zip({
            "__structure__.npy": _npy(np.frombuffer(b"[" * 100000 + b"]" * 100000, np.uint8))}),
        "structure with NaN constant": lambda: _zip({"__structure__.npy": _npy(np.frombuffer(
            b'{"format": "graddesc", "version": 1, "root": {"type": "float", "value": NaN}}',
            np.uint8))}),
        "structure with duplicate keys": lambda: _zip({"__structure__.npy": _npy(np.frombuffer(
            b'{"format": "graddesc", "version": 1, "version": 1, "root": {"type": "none"}}',
            np.uint8))}),
        "wrong format name": lambda: _zip({"__structure__.npy": _structure(
            {"type": "none"}, format="torch")}),
        "future version": lambda: _zip({"__structure__.npy": _structure(
            {"type": "none"}, version=2)}),
        "unknown node type": lambda: _zip({"__structure__.npy": _structure(
            {"type": "code", "value": "os.system('x')"})}),
        "node with extra field": lambda: _zip({"__structure__.npy": _structure(
            {"type": "none", "value": 1})}),
        "int node holding a string": lambda: _zip({"__structure__.npy": _structure(
            {"type": "int", "value": "3"})}),
        "float node holding garbage": lambda: _zip({"__structure__.npy": _structure(
            {"type": "float", "value": "one"})}),
        "bool dict key": lambda: _zip({"__structure__.npy": _structure(
            {"type": "dict", "items": [[True, {"type": "none"}]]})}),
        "duplicate dict key": lambda: _zip({"__structure__.npy": _structure(
            {"type": "dict", "items": [["a", {"type": "none"}], ["a", {"type": "none"}]]})}),
        "tensor referenced twice": lambda: _graddesc_zip(
            _npy(np.zeros(2, np.float32)), root={"type": "list", "items": [_T0, _T0]}),
        "unsupported dtype in structure": lambda: _graddesc_zip(
            _npy(np.zeros(2, np.float16)),
            root={"type": "tensor", "key": "t0", "dtype": "float16", "shape": [2]}),
        "structure nested too deep": lambda: _zip({"__structure__.npy": _structure(
            _deep_node(150))}),
        "bzip2-compressed entries": lambda: _zip({
            "__structure__.npy": _structure({"type": "none"})}, zipfile.ZIP_BZIP2),
        "lying stored size": lambda: _patch_central_size(good, b"t0.npy", 10**9),
        "deflated entry claiming a huge size": lambda: _patch_central_size(
            _graddesc_zip(_npy(np.zeros(2, np.float32)), compression=zipfile.ZIP_DEFLATED),
            b"t0.npy", 2**32 - 2),
        "corrupted data (CRC)": lambda: _flip_last_data_byte(good),
        "duplicate zip entries": lambda: _duplicate_entries(),
    }
    for cut in (1, 4, 30, 100, len(good) // 2, len(good) - 23, len(good) - 1):
        corpus[f"truncated at {cut}"] = (lambda c=cut: good[:c])
    return corpus


def _deep_node(depth: int) -> dict:
    node: dict = {"type": "none"}
    for _ in range(depth):
        node = {"type": "list", "items": [node]}
    return node


def _np_savez_object(tmp: Path) -> bytes:
    path = tmp / "object.npz"
    # NumPy's writer stores object arrays as pickles by default: a typical hostile .npz.
    np.savez(path, __structure__=np.frombuffer(json.dumps(
        {"format": "graddesc", "version": 1, "root": _T0}).encode(), np.uint8),
        t0=np.array([{"a": 1}, _Boom()], dtype=object))
    return path.read_bytes()


def _flip_last_data_byte(good: bytes) -> bytes:
    at = good.index(b"PK\x01\x02") - 1  # last byte of the last entry's data
    return good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1:]


def _duplicate_entries() -> bytes:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("__structure__.npy", _structure(_T0))
            zf.writestr("t0.npy", _npy(np.zeros(2, np.float32)))
            zf.writestr("t0.npy", _npy(np.ones(2, np.float32)))
    return buf.getvalue()


_CORPUS_NAMES = sorted(_malformed_corpus(Path("/nonexistent")).keys())


@pytest.mark.parametrize("case", _CORPUS_NAMES)
def test_malformed_file_raises_value_error(case: str, tmp_path: Path) -> None:
    data = _malformed_corpus(tmp_path)[case]()
    path = tmp_path / "bad.npz"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="not a valid graddesc checkpoint") as info:
        load(path)
    assert type(info.value) is ValueError
    with pytest.raises(ValueError):
        load(io.BytesIO(data))
    assert not (tmp_path / "pwned").exists()  # no payload ran


def test_every_truncation_raises_value_error(tmp_path: Path) -> None:
    good = _valid_bytes()
    for cut in range(0, len(good), 7):
        with pytest.raises(ValueError):
            load(io.BytesIO(good[:cut]))


def test_random_byte_flips_never_crash() -> None:
    good = _valid_bytes()
    rng = np.random.default_rng(123)
    for _ in range(300):
        data = bytearray(good)
        for at in rng.integers(0, len(data), size=rng.integers(1, 4)):
            data[at] = int(rng.integers(0, 256))
        try:
            load(io.BytesIO(bytes(data)))
        except ValueError:
            pass  # a flip may land in a harmless place (e.g. a timestamp) and load fine


def test_map_location() -> None:
    buf = io.BytesIO()
    save({"a": 1}, buf)
    assert load(io.BytesIO(buf.getvalue()), map_location="cpu") == {"a": 1}
    with pytest.raises(ValueError, match="map_location"):
        load(io.BytesIO(buf.getvalue()), map_location="cuda")


# ---- no pickle anywhere in the package -------------------------------------------------------
_BINARY_SUFFIXES = {".so", ".pyd", ".dll", ".dylib", ".pyc", ".npz", ".npy"}


def _package_text_files() -> list[Path]:
    files = [p for p in PACKAGE_DIR.rglob("*") if p.is_file()
             and "__pycache__" not in p.parts and p.suffix not in _BINARY_SUFFIXES]
    assert any(p.name == "serialization.py" for p in files)
    return files


_WORKER_IPC_FILES = {"_workers.py", "dataloader.py"}


def test_no_pickle_in_the_package() -> None:
    offenders = []
    for path in _package_text_files():
        text = path.read_bytes().decode("utf-8", errors="replace")
        if "allow_pickle=True" in text:
            offenders.append(f"{path}: allow_pickle=True")
        # The only permitted spelling is the explicit refusal passed to np.load/write_array.
        rest = text.replace("allow_pickle=False", "")
        # Except DataLoader workers: multiprocessing sends the dataset and the batches pickled
        # through pipes between the loader and the processes it spawned; nothing is read from
        # a file or from anyone else.
        if path.name in _WORKER_IPC_FILES:
            continue
        if re.search("pickle", rest, flags=re.IGNORECASE):
            offenders.append(f"{path}: mentions pickle")
        if re.search(r"^\s*(import|from)\s+(marshal|shelve|dill|joblib)\b", text, re.MULTILINE):
            offenders.append(f"{path}: imports a code-executing serializer")
        for m in re.finditer(r"\b(np|numpy)\.load\(", text):
            call = _call_text(text, m.end() - 1)
            if "allow_pickle=False" not in call:
                offenders.append(f"{path}: np.load without allow_pickle=False: {call[:60]}")
    assert not offenders, "\n".join(offenders)


def _call_text(text: str, open_paren: int) -> str:
    depth = 0
    for i in range(open_paren, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_paren:i + 1]
    return text[open_paren:]


def test_packaged_data_file_holds_plain_arrays() -> None:
    with np.load(PACKAGE_DIR / "data" / "digits.npz", allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)


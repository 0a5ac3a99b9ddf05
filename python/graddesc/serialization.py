"""save/load of state dicts as .npz files: plain arrays plus a JSON description, never code.

A checkpoint is a zip archive (NumPy's .npz layout) holding
- `__structure__.npy`: a uint8 array, the UTF-8 JSON
  `{"format": "graddesc", "version": 1, "root": <node>}` describing the nested object, and
- `t0.npy`, `t1.npy`, ...: one .npy array per tensor (float32, float64, int64 or bool).

Nodes: `{"type": "dict", "items": [[key, node], ...]}` (keys are str or int, order kept),
`{"type": "list"|"tuple", "items": [node, ...]}`,
`{"type": "tensor", "key": "t0", "dtype": "float32", "shape": [2, 3]}`,
`{"type": "int", "value": 3}`, `{"type": "float", "value": "0.1"}` (repr, so nan/inf survive),
`{"type": "bool", "value": true}`, `{"type": "str", "value": "..."}`, `{"type": "none"}`.

`load` parses the .npy headers itself (bounded size, literal values only), checks every dtype,
shape and size against the archive before allocating, and raises ValueError for anything
malformed. No executable payload can be stored or read.
"""

from __future__ import annotations

import ast
import io
import json
import numbers
import os
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO, Union

import numpy as np

from graddesc._atomic import write_atomic as _write_atomic
from graddesc._tensor import Tensor

FORMAT = "graddesc"
VERSION = 1
STRUCTURE = "__structure__"
MAX_DEPTH = 100              # nesting of dicts/lists/tuples
MAX_NPY_HEADER = 10_000      # bytes; NumPy's own limit for .npy headers
MAX_DIMS = 32
MAX_DEFLATE_RATIO = 1100     # deflate can't expand more than ~1032x

_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64),
           "int64": np.dtype(np.int64), "bool": np.dtype(np.bool_)}

PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]


# ---- save ------------------------------------------------------------------------------------
def save(obj: Any, f: PathOrFile) -> None:
    """Writes `obj` (a state dict, or nested dicts/lists/tuples of tensors and plain values).

    Supported leaves: Tensors and NumPy arrays of float32/float64/int64/bool (saved with their
    dtype and shape; loaded back as Tensors), int, float, bool, str, None. Dict keys are str or
    int. A path is written atomically (temporary file in the same directory, fsync, rename), so
    an interrupted save leaves any previous file intact; the path is used as given (no suffix is
    added). `f` may also be a writable binary file object.

    Raises:
        TypeError: an unsupported value, dtype or key type (the message names where it is).
        ValueError: nesting deeper than MAX_DEPTH or a reference cycle.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> gd.save(nn.Linear(2, 1).state_dict(), path)
    >>> sorted(gd.load(path))
    ['bias', 'weight']
    """
    arrays: list[np.ndarray] = []
    root = _describe(obj, arrays, "obj", 0, set())
    header = json.dumps({"format": FORMAT, "version": VERSION, "root": root},
                        ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    structure = np.frombuffer(header.encode("utf-8"), dtype=np.uint8)
    if hasattr(f, "write"):
        _write_archive(f, structure, arrays)
        return
    _write_atomic(f, lambda out: _write_archive(out, structure, arrays))


def _write_archive(out: BinaryIO, structure: np.ndarray, arrays: list) -> None:
    with zipfile.ZipFile(out, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        _write_npy(zf, STRUCTURE, structure)
        for i, a in enumerate(arrays):
            _write_npy(zf, f"t{i}", a)


def _write_npy(zf: zipfile.ZipFile, key: str, a: np.ndarray) -> None:
    with zf.open(key + ".npy", mode="w", force_zip64=True) as fp:
        np.lib.format.write_array(fp, a, allow_pickle=False)


def _describe(obj: Any, arrays: list, where: str, depth: int, active: set) -> dict:
    """The JSON node of obj; tensors are appended to `arrays`."""
    if depth > MAX_DEPTH:
        raise ValueError(f"save: {where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(obj, (Tensor, np.ndarray)):
        a = obj._data if isinstance(obj, Tensor) else obj
        name = _dtype_name(a.dtype)
        if name is None:
            raise TypeError(f"save: {where} has unsupported dtype {a.dtype}; supported are "
                            f"{', '.join(_DTYPES)}")
        key = f"t{len(arrays)}"
        arrays.append(np.asarray(a, dtype=_DTYPES[name]))  # write_array handles any layout
        return {"type": "tensor", "key": key, "dtype": name, "shape": list(a.shape)}
    if obj is None:
        return {"type": "none"}
    if isinstance(obj, (bool, np.bool_)):
        return {"type": "bool", "value": bool(obj)}
    if isinstance(obj, numbers.Integral):
        return {"type": "int", "value": int(obj)}
    if isinstance(obj, numbers.Real):
        return {"type": "float", "value": repr(float(obj))}
    if isinstance(obj, str):
        return {"type": "str", "value": obj}
    if isinstance(obj, (Mapping, list, tuple)):
        if id(obj) in active:
            raise ValueError(f"save: {where} contains itself (a reference cycle)")
        active.add(id(obj))
        try:
            return _describe_container(obj, arrays, where, depth, active)
        finally:
            active.discard(id(obj))
    raise TypeError(f"save: {where} is a {type(obj).__name__}; supported are Tensors, NumPy "
                    "arrays, dicts, lists, tuples, int, float, bool, str and None")


def _describe_container(obj: Any, arrays: list, where: str, depth: int, active: set) -> dict:
    if isinstance(obj, Mapping):
        items = []
        for k, v in obj.items():
            if isinstance(k, (bool, np.bool_)) or not isinstance(k, (str, numbers.Integral)):
                raise TypeError(f"save: dict keys must be str or int; {where} has a key of "
                                f"type {type(k).__name__}")
            k = k if isinstance(k, str) else int(k)
            items.append([k, _describe(v, arrays, f"{where}[{k!r}]", depth + 1, active)])
        return {"type": "dict", "items": items}
    kind = "list" if isinstance(obj, list) else "tuple"
    return {"type": kind, "items": [_describe(v, arrays, f"{where}[{i}]", depth + 1, active)
                                    for i, v in enumerate(obj)]}


def _dtype_name(dt: np.dtype) -> Any:
    for name, d in _DTYPES.items():
        if dt == d or (dt.kind == d.kind and dt.itemsize == d.itemsize and dt.kind in "fib"):
            return name
    return None


# ---- load ------------------------------------------------------------------------------------
class _Malformed(ValueError):  # noqa: N818  (private, never escapes: re-raised as ValueError)
    pass


def load(f: PathOrFile, map_location: Any = None, weights_only: bool = True) -> Any:
    """Reads a file written by `save`; returns the same nested structure with Tensors.

    Tensors come back as new float32/float64/int64/bool Tensors (requires_grad False), dicts as
    dicts (key order kept), lists as lists, tuples as tuples. `map_location` (None or "cpu") and
    `weights_only` exist for torch.load compatibility; loading never runs code either way.
    A .safetensors file (recognised by its content, whatever its name) loads too, as a dict of
    tensors (see graddesc.safetensors; needs the safetensors package).

    Raises:
        ValueError: the file is not a valid graddesc checkpoint (not a zip, truncated, missing
            or extra entries, bad JSON, unsupported dtype, object arrays, sizes that don't
            match, ...). The message says what is wrong.
        OSError: the path can't be opened (missing file, directory, permissions).

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "t.npz")
    >>> gd.save({"w": gd.ones(2)}, path)
    >>> gd.load(path)["w"].tolist()
    [1.0, 1.0]
    """
    if map_location not in (None, "cpu"):
        raise ValueError(f"load: map_location must be None or 'cpu', got {map_location!r}")
    if hasattr(f, "read"):
        name = getattr(f, "name", None)
        name = repr(name) if isinstance(name, str) else "file object"
        return _load_from(f, name)
    path = os.fspath(f)
    with open(path, "rb") as fp:
        return _load_from(fp, repr(os.fsdecode(path)))


def _load_from(fp: BinaryIO, name: str) -> Any:
    try:
        return _parse(fp)
    except ImportError:  # a safetensors file without the safetensors package
        raise
    except _Malformed as e:
        raise ValueError(f"load: {name} is not a valid graddesc checkpoint: {e}") from None
    except Exception as e:  # noqa: BLE001 -- any failure to parse means a malformed file
        raise ValueError(f"load: {name} is not a valid graddesc checkpoint "
                         f"({type(e).__name__}: {e})") from None


def _parse(fp: BinaryIO) -> Any:
    try:
        size = fp.seek(0, io.SEEK_END)
        fp.seek(0)
    except (OSError, AttributeError, io.UnsupportedOperation):
        fp = io.BytesIO(fp.read())
        size = len(fp.getvalue())
    if size == 0:
        raise _Malformed("the file is empty")
    head = fp.read(9)
    fp.seek(0)
    if _is_safetensors(head, size):
        from graddesc import safetensors

        try:
            return safetensors.load(fp.read())
        except ValueError as e:
            raise _Malformed(f"a safetensors file that can't be read: "
                             f"{str(e).removeprefix('load: ')}") from None
    if head[:2] != b"PK":
        raise _Malformed("not a zip archive (.npz); it does not start with the zip signature")
    try:
        zf = zipfile.ZipFile(fp, mode="r")
    except zipfile.BadZipFile as e:
        raise _Malformed(f"not a readable zip archive (truncated or corrupt?): {e}") from None
    with zf:
        entries = _entries(zf, size)
        if STRUCTURE not in entries:
            raise _Malformed(f"no {STRUCTURE}.npy entry (not written by graddesc.save?)")
        raw = _read_npy(zf, entries[STRUCTURE], STRUCTURE, size)
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise _Malformed(f"{STRUCTURE} must be a 1-d uint8 array, got {raw.dtype} "
                             f"{raw.shape}")
        doc = _parse_json(raw.tobytes())
        refs: dict = {}
        _check_doc(doc, refs)
        tensor_keys = {k for k in entries if k != STRUCTURE}
        missing = sorted(set(refs) - tensor_keys)
        extra = sorted(tensor_keys - set(refs))
        if missing:
            raise _Malformed(f"entries referenced by the structure are missing: {missing[:10]}")
        if extra:
            raise _Malformed(f"unexpected entries not referenced by the structure: {extra[:10]}")
        tensors = {}
        for key, (dtype_name, shape) in refs.items():
            a = _read_npy(zf, entries[key], key, size)
            if a.dtype != _DTYPES[dtype_name] or list(a.shape) != shape:
                raise _Malformed(f"entry {key} is {a.dtype} {list(a.shape)}, the structure says "
                                 f"{dtype_name} {shape}")
            tensors[key] = a
    return _build(doc["root"], tensors)


def _is_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file starts with its header's length (u64, little endian), then '{'."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= size - 8


def _entries(zf: zipfile.ZipFile, size: int) -> dict:
    """{key: ZipInfo} after checking names, duplicates, compression and claimed sizes."""
    entries: dict = {}
    for info in zf.infolist():
        nm = info.filename
        if not nm.endswith(".npy") or "/" in nm or "\\" in nm:
            raise _Malformed(f"unexpected zip entry {nm!r} (only <key>.npy entries are allowed)")
        key = nm[:-4]
        if key != STRUCTURE and not _is_tensor_key(key):
            raise _Malformed(f"unexpected zip entry {nm!r}")
        if key in entries:
            raise _Malformed(f"duplicate zip entry {nm!r}")
        if info.flag_bits & 0x1:
            raise _Malformed(f"zip entry {nm!r} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise _Malformed(f"zip entry {nm!r} claims {info.file_size} bytes but stores "
                                 f"{info.compress_size}")
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size, 1):
                raise _Malformed(f"zip entry {nm!r} claims an impossible size {info.file_size} "
                                 f"for {info.compress_size} compressed bytes")
        else:
            raise _Malformed(f"zip entry {nm!r} uses unsupported compression method "
                             f"{info.compress_type}")
        if info.compress_size > size:
            raise _Malformed(f"zip entry {nm!r} claims {info.compress_size} bytes, more than "
                             f"the whole file ({size} bytes)")
        entries[key] = info
    return entries


def _is_tensor_key(key: str) -> bool:
    """t0, t1, ...: canonical decimal numbers only."""
    digits = key[1:]
    return (key.startswith("t") and 0 < len(digits) <= 12 and digits.isascii()
            and digits.isdigit() and digits == str(int(digits)))


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, size: int) -> np.ndarray:
    """The array in one .npy entry; header and sizes are checked before allocating."""
    with zf.open(info, "r") as fp:
        magic = fp.read(8)
        if len(magic) != 8 or magic[:6] != b"\x93NUMPY":
            raise _Malformed(f"entry {key} is not a .npy array (bad magic)")
        major = magic[6]
        if major == 1:
            nlen = 2
        elif major in (2, 3):
            nlen = 4
        else:
            raise _Malformed(f"entry {key} has unsupported .npy version {major}.{magic[7]}")
        lenbytes = fp.read(nlen)
        if len(lenbytes) != nlen:
            raise _Malformed(f"entry {key} is truncated in its .npy header")
        hlen = int.from_bytes(lenbytes, "little")
        if hlen > MAX_NPY_HEADER:
            raise _Malformed(f"entry {key} claims a .npy header of {hlen} bytes (limit "
                             f"{MAX_NPY_HEADER})")
        text = fp.read(hlen)
        if len(text) != hlen:
            raise _Malformed(f"entry {key} is truncated in its .npy header")
        dtype, fortran, shape = _parse_npy_header(text, key, major)
        count = 1
        for s in shape:
            count *= s
        nbytes = count * dtype.itemsize
        if 8 + nlen + hlen + nbytes != info.file_size:
            raise _Malformed(f"entry {key} claims shape {list(shape)} of {dtype} ({nbytes} bytes) "
                             f"but holds {info.file_size - 8 - nlen - hlen} bytes of data")
        if info.compress_type == zipfile.ZIP_STORED and nbytes > size:
            raise _Malformed(f"entry {key} claims more data than the file holds")
        data = fp.read(nbytes)
        if len(data) != nbytes or fp.read(1) != b"":
            raise _Malformed(f"entry {key} is truncated or has trailing bytes")
    flat = np.frombuffer(data, dtype=dtype, count=count)
    if dtype == np.bool_ and count and flat.view(np.uint8).max() > 1:
        raise _Malformed(f"entry {key} holds bool values other than 0 and 1")
    a = flat.reshape(shape, order="F" if fortran else "C")
    return np.array(a, dtype=dtype.newbyteorder("="), order="C", copy=True)


def _parse_npy_header(text: bytes, key: str, major: int) -> tuple:
    try:
        s = text.decode("utf-8" if major >= 3 else "latin1")
        d = ast.literal_eval(s)
    except (UnicodeDecodeError, ValueError, SyntaxError, TypeError, MemoryError,
            RecursionError) as e:
        raise _Malformed(f"entry {key} has an unreadable .npy header ({type(e).__name__})") \
            from None
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise _Malformed(f"entry {key}: the .npy header must be a dict with keys descr, "
                         "fortran_order and shape")
    descr, fortran, shape = d["descr"], d["fortran_order"], d["shape"]
    if not isinstance(descr, str):
        raise _Malformed(f"entry {key} has a structured or unsupported dtype {descr!r}")
    allowed = {"<f4", ">f4", "<f8", ">f8", "<i8", ">i8", "|b1", "|u1"}
    if descr not in allowed:
        raise _Malformed(f"entry {key} has unsupported dtype {descr!r} (object arrays and "
                         "anything but float32, float64, int64 and bool are refused)")
    if not isinstance(fortran, bool):
        raise _Malformed(f"entry {key}: fortran_order must be True or False")
    if (not isinstance(shape, tuple) or len(shape) > MAX_DIMS
            or not all(type(s) is int and s >= 0 for s in shape)):
        raise _Malformed(f"entry {key} has an invalid shape {shape!r}")
    return np.dtype(descr), fortran, shape


def _parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Malformed(f"{STRUCTURE} is not UTF-8 ({e})") from None

    def no_constants(c: str) -> Any:
        raise _Malformed(f"{STRUCTURE} contains the non-JSON constant {c}")

    def no_duplicates(pairs: list) -> dict:
        d = dict(pairs)
        if len(d) != len(pairs):
            raise _Malformed(f"{STRUCTURE} has duplicate keys in a JSON object")
        return d

    try:
        return json.loads(text, parse_constant=no_constants, object_pairs_hook=no_duplicates)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        if isinstance(e, _Malformed):
            raise
        raise _Malformed(f"{STRUCTURE} is not valid JSON ({type(e).__name__}: {e})") from None


_NODE_FIELDS = {"dict": {"type", "items"}, "list": {"type", "items"}, "tuple": {"type", "items"},
                "tensor": {"type", "key", "dtype", "shape"}, "int": {"type", "value"},
                "float": {"type", "value"}, "bool": {"type", "value"}, "str": {"type", "value"},
                "none": {"type"}}


def _check_doc(doc: Any, refs: dict) -> None:
    if not isinstance(doc, dict) or set(doc) != {"format", "version", "root"}:
        raise _Malformed(f"{STRUCTURE} must be an object with keys format, version and root")
    if doc["format"] != FORMAT:
        raise _Malformed(f"unknown format {doc['format']!r} (expected {FORMAT!r})")
    if type(doc["version"]) is not int or doc["version"] != VERSION:
        raise _Malformed(f"unsupported format version {doc['version']!r} (this graddesc reads "
                         f"version {VERSION})")
    _check_node(doc["root"], refs, "root", 0)


def _check_node(node: Any, refs: dict, where: str, depth: int) -> None:
    """Validates one structure node (recursively) and collects tensor references."""
    if depth > MAX_DEPTH:
        raise _Malformed(f"the structure is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(node, dict) or node.get("type") not in _NODE_FIELDS:
        raise _Malformed(f"{where}: not a valid node")
    kind = node["type"]
    if set(node) != _NODE_FIELDS[kind]:
        raise _Malformed(f"{where}: a {kind} node needs exactly the fields "
                         f"{sorted(_NODE_FIELDS[kind])}")
    value = node.get("value")
    if kind in ("dict", "list", "tuple"):
        items = node["items"]
        if not isinstance(items, list):
            raise _Malformed(f"{where}: items must be a list")
        if kind == "dict":
            keys = set()
            for item in items:
                if (not isinstance(item, list) or len(item) != 2
                        or not isinstance(item[0], (str, int)) or isinstance(item[0], bool)):
                    raise _Malformed(f"{where}: dict items must be [str or int key, node]")
                if item[0] in keys:
                    raise _Malformed(f"{where}: duplicate dict key {item[0]!r}")
                keys.add(item[0])
                _check_node(item[1], refs, f"{where}[{item[0]!r}]", depth + 1)
        else:
            for i, item in enumerate(items):
                _check_node(item, refs, f"{where}[{i}]", depth + 1)
    elif kind == "tensor":
        key, dtype, shape = node["key"], node["dtype"], node["shape"]
        if not isinstance(key, str) or not _is_tensor_key(key):
            raise _Malformed(f"{where}: invalid tensor key {key!r}")
        if key in refs:
            raise _Malformed(f"{where}: tensor entry {key} is referenced twice")
        if dtype not in _DTYPES:
            raise _Malformed(f"{where}: unsupported dtype {dtype!r}")
        if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                or not all(type(s) is int and s >= 0 for s in shape)):
            raise _Malformed(f"{where}: invalid shape {shape!r}")
        refs[key] = (dtype, shape)
    elif kind == "int" and type(value) is not int:
        raise _Malformed(f"{where}: int node holds {type(value).__name__}")
    elif kind == "bool" and type(value) is not bool:
        raise _Malformed(f"{where}: bool node holds {type(value).__name__}")
    elif kind == "str" and not isinstance(value, str):
        raise _Malformed(f"{where}: str node holds {type(value).__name__}")
    elif kind == "float":
        if not isinstance(value, str) or len(value) > 40:
            raise _Malformed(f"{where}: float node must hold a short decimal string")
        try:
            float(value)
        except ValueError:
            raise _Malformed(f"{where}: float node holds {value!r}, not a number") from None


def _build(node: dict, tensors: dict) -> Any:
    kind = node["type"]
    if kind == "dict":
        return {k: _build(v, tensors) for k, v in node["items"]}
    if kind == "list":
        return [_build(v, tensors) for v in node["items"]]
    if kind == "tuple":
        return tuple(_build(v, tensors) for v in node["items"])
    if kind == "tensor":
        return Tensor._make(tensors[node["key"]])
    if kind == "float":
        return float(node["value"])
    if kind == "none":
        return None
    return node["value"]


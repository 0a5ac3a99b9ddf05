"""Reading and writing `.safetensors` files: the counterpart of `safetensors.torch`.

A port changes `from safetensors.torch import save_file, load_file` into
`from graddesc.safetensors import save_file, load_file`; the functions take the same arguments.
Files are written and read by the `safetensors` package (the optional extra
`pip install graddesc[safetensors]`), so a state dict written by PyTorch loads into the same
graddesc model and back. The format holds a JSON header and raw little-endian arrays: no code,
like `gd.save`.

Saved dtypes are graddesc's own: float32 (F32), float64 (F64), int64 (I64) and bool (BOOL).
Loading converts what graddesc does not compute with, exactly (no rounding): F16 and BF16 to
float32, the other integer types (I8, U8, I16, U16, I32, U32, and U64 values that fit) to
int64. Other dtypes (float8 types, complex) raise ValueError naming the tensor.
`gd.load` also recognises a safetensors file by its content, whatever its name.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Union

import numpy as np

from graddesc._atomic import write_atomic
from graddesc._tensor import Tensor

__all__ = ["load", "load_file", "load_model", "save", "save_file", "save_model"]

_SAVE = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
         np.dtype(np.int64): "I64", np.dtype(np.bool_): "BOOL"}
# safetensors dtype -> (the NumPy dtype of the stored bytes, graddesc's dtype after loading)
_LOAD = {"F32": ("<f4", np.float32), "F64": ("<f8", np.float64), "F16": ("<f2", np.float32),
         "BF16": ("<u2", np.float32), "I64": ("<i8", np.int64), "I32": ("<i4", np.int64),
         "I16": ("<i2", np.int64), "I8": ("i1", np.int64), "U8": ("u1", np.int64),
         "U16": ("<u2", np.int64), "U32": ("<u4", np.int64), "U64": ("<u8", np.int64),
         "BOOL": ("?", np.bool_)}

PathLike = Union[str, "os.PathLike[str]"]


def _package() -> Any:
    try:
        import safetensors
    except ImportError:
        raise ImportError("graddesc.safetensors needs the 'safetensors' package: "
                          "pip install safetensors (or graddesc[safetensors])") from None
    return safetensors


def _arrays(tensors: Any, where: str) -> dict:
    """{name: C-contiguous ndarray} after checking names and dtypes."""
    if not isinstance(tensors, dict):
        raise TypeError(f"{where}: argument 'tensors' must be a dict of name -> Tensor, got "
                        f"{type(tensors).__name__}")
    out = {}
    for k, v in tensors.items():
        if not isinstance(k, str):
            raise TypeError(f"{where}: tensor names must be str, got {type(k).__name__} {k!r}")
        if isinstance(v, Tensor):
            a = v._data
        elif isinstance(v, np.ndarray):
            a = v
        else:
            raise TypeError(f"{where}: tensors[{k!r}] must be a graddesc Tensor, got "
                            f"{type(v).__name__}")
        if a.dtype not in _SAVE:
            raise TypeError(f"{where}: tensors[{k!r}] has dtype {a.dtype}; graddesc writes "
                            f"float32, float64, int64 and bool")
        out[k] = a if a.flags.c_contiguous else a.copy(order="C")  # keeps 0-d arrays 0-d
    return out


def _check_metadata(metadata: Any, where: str) -> Optional[dict]:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError(f"{where}: argument 'metadata' must be a dict of str -> str or None, "
                        f"got {metadata!r}")
    return metadata


def save(tensors: dict, metadata: Optional[dict] = None) -> bytes:
    """The bytes of a safetensors file holding `tensors` (a dict of name -> Tensor).

    >>> data = gd.safetensors.save({"w": gd.ones(2, 3)})
    >>> gd.safetensors.load(data)["w"].shape
    graddesc.Size([2, 3])
    """
    _package()
    import safetensors.numpy

    arrays = _arrays(tensors, "save")
    return safetensors.numpy.save(arrays, metadata=_check_metadata(metadata, "save"))


def save_file(tensors: dict, filename: PathLike, metadata: Optional[dict] = None) -> None:
    """Writes `tensors` (a dict of name -> Tensor, e.g. a state dict) to a .safetensors file.

    The file is written atomically (a temporary file beside it, then a rename). `metadata` is
    an optional dict of str -> str stored in the header.

    Raises:
        TypeError: a name that is not a str, a value that is not a Tensor, or a dtype other
            than float32/float64/int64/bool.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> gd.safetensors.save_file(nn.Linear(2, 1).state_dict(), path)
    >>> sorted(gd.safetensors.load_file(path))
    ['bias', 'weight']
    """
    data = save(tensors, metadata)
    write_atomic(filename, lambda out: out.write(data))


def load(data: bytes) -> dict:
    """The tensors of a safetensors file given as bytes: {name: Tensor}, in the order of their
    data in the file (safetensors.torch's order).

    Raises:
        ValueError: the bytes are not a valid safetensors file, or hold a dtype graddesc can't
            represent exactly (float8 types, complex).
    """
    st = _package()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"load: argument 'data' must be bytes, got {type(data).__name__}")
    try:
        entries = st.deserialize(bytes(data))
    except Exception as e:  # noqa: BLE001  (SafetensorError and friends: a malformed file)
        raise ValueError(f"load: not a valid safetensors file ({e})") from None
    specs = dict(entries)
    out = {}
    for name in _file_order(bytes(data[:8 + int.from_bytes(data[:8], "little")]), specs):
        spec = specs[name]
        out[name] = Tensor._make(_convert(name, spec["dtype"], spec["shape"], spec["data"]))
    return out


def _file_order(head: bytes, specs: dict) -> list:
    """The names in the order of their data in the file (as safetensors.torch returns them)."""
    header = json.loads(head[8:])
    return sorted(specs, key=lambda k: (header[k]["data_offsets"][0], k))


def _convert(name: str, dtype: str, shape: list, raw: Any) -> np.ndarray:
    if dtype not in _LOAD:
        raise ValueError(f"load: tensor {name!r} has dtype {dtype}, which graddesc can't "
                         f"represent exactly (it reads F64, F32, F16, BF16, BOOL and integer "
                         f"types)")
    stored, target = _LOAD[dtype]
    a = np.frombuffer(raw, dtype=stored).reshape(shape)
    if dtype == "BF16":  # the high 16 bits of a float32
        return (a.astype(np.uint32) << 16).view(np.float32)
    if dtype == "U64" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"load: tensor {name!r} (U64) holds values above the int64 range")
    return a.astype(np.dtype(target).newbyteorder("="), copy=True)


def load_file(filename: PathLike, device: Any = "cpu") -> dict:
    """Reads a .safetensors file: {name: Tensor} (dtypes converted as the module says).

    `device` exists for safetensors.torch compatibility: "cpu" (or a cpu graddesc.device) only.

    Raises:
        ValueError: not a valid safetensors file, or a dtype graddesc can't represent exactly.
        OSError: the file can't be opened.
    """
    _check_device(device, "load_file")
    with open(os.fspath(filename), "rb") as f:
        data = f.read()
    try:
        return load(data)
    except ValueError as e:
        raise ValueError(f"load_file: {os.fsdecode(os.fspath(filename))!r}: "
                         f"{str(e).removeprefix('load: ')}") from None


def _check_device(device: Any, where: str) -> None:
    from graddesc._device import check_device

    check_device(device, where)


def save_model(model: Any, filename: PathLike, metadata: Optional[dict] = None,
               force_contiguous: bool = True) -> None:
    """Writes model.state_dict() to a .safetensors file (safetensors.torch.save_model).

    `force_contiguous` is accepted for compatibility: graddesc always writes contiguous data.
    """
    save_file(model.state_dict(), filename, metadata)


def load_model(model: Any, filename: PathLike, strict: bool = True,
               device: Any = "cpu") -> tuple:
    """Loads a .safetensors file into `model` with load_state_dict; returns (missing,
    unexpected): the model's keys the file lacks (a set) and the file's keys the model lacks
    (a list), the types safetensors.torch.load_model returns. With strict=True, missing or
    unexpected keys raise RuntimeError.
    """
    result = model.load_state_dict(load_file(filename, device), strict=strict)
    return set(result[0]), list(result[1])

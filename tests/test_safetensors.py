"""graddesc.safetensors and gd.load of .safetensors files: PyTorch's files load into the same
graddesc model and back; dtypes convert exactly; malformed files and bad arguments raise."""

from __future__ import annotations

import os

import numpy as np
import pytest

import graddesc as gd
import graddesc.nn as nn
from graddesc import safetensors as gst

st_numpy = pytest.importorskip("safetensors.numpy")


def _models(torch):
    """The same architecture in both libraries (the torch one run once in train mode, so its
    BatchNorm statistics are not the defaults)."""
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                             torch.nn.Linear(4, 2))
    tm(torch.randn(6, 3))
    gm = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    return tm, gm


def test_pytorch_file_loads_into_graddesc_and_back(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    tm, gm = _models(torch)
    path = tmp_path / "model.safetensors"
    st_torch.save_file(tm.state_dict(), path)
    assert gst.load_model(gm, path) == st_torch.load_model(_models(torch)[0], path) == (set(), [])
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    tm.eval()
    gm.eval()
    np.testing.assert_allclose(gm(gd.tensor(x)).detach().numpy(),
                               tm(torch.tensor(x)).detach().numpy(), rtol=1e-6, atol=1e-6)
    back = tmp_path / "back.safetensors"
    gst.save_model(gm, back)
    got = st_torch.load_file(back)
    ref = tm.state_dict()
    assert sorted(got) == sorted(ref)
    for k, v in ref.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert torch.equal(got[k], v), k
    # the same file through load_file and through gd.load (recognised by its content)
    for loaded in (gst.load_file(path), gd.load(path)):
        assert list(loaded) == list(st_torch.load_file(path))  # the file's order
        for k, v in loaded.items():
            np.testing.assert_array_equal(v.numpy(), ref[k].numpy())


def test_graddesc_file_is_read_by_the_package(tmp_path):
    rng = np.random.default_rng(1)
    w = gd.tensor(rng.standard_normal((4, 3)))
    tensors = {"w": w, "wT": w.t(), "scalar": gd.tensor(3), "mask": gd.tensor([True, False]),
               "f32": gd.tensor(rng.standard_normal(5), dtype=gd.float32)}
    path = tmp_path / "t.safetensors"
    gst.save_file(tensors, path, metadata={"format": "pt", "note": "x"})
    raw = st_numpy.load_file(str(path))
    for k, t in tensors.items():
        assert raw[k].dtype == t.numpy().dtype and raw[k].shape == tuple(t.shape), k
        np.testing.assert_array_equal(raw[k], t.numpy())
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"format": "pt", "note": "x"}
    again = gst.load(gst.save(tensors))
    for k, t in tensors.items():
        assert again[k].dtype == t.dtype
        np.testing.assert_array_equal(again[k].numpy(), t.numpy())


@pytest.mark.parametrize(("dtype", "expected"), [
    (np.float16, np.float32), (np.int32, np.int64), (np.int16, np.int64), (np.int8, np.int64),
    (np.uint8, np.int64), (np.uint16, np.int64), (np.uint32, np.int64), (np.uint64, np.int64)])
def test_other_dtypes_convert_exactly(dtype, expected):
    a = (np.arange(12).reshape(3, 4) * 7 % 50).astype(dtype)
    got = gst.load(st_numpy.save({"a": a}))["a"]
    assert got.numpy().dtype == expected
    np.testing.assert_array_equal(got.numpy(), a.astype(expected))


def test_bfloat16_converts_exactly():
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    t = torch.tensor([1.5, -2.25, 3.0e38, 1e-3, float("inf")], dtype=torch.bfloat16)
    got = gst.load(st_torch.save({"b": t}))["b"]
    assert got.dtype == gd.float32
    np.testing.assert_array_equal(got.numpy(), t.float().numpy())


def test_unrepresentable_dtypes_raise():
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    data = st_torch.save({"q": torch.zeros(2, dtype=torch.float8_e4m3fn)})
    with pytest.raises(ValueError, match="'q' has dtype F8_E4M3"):
        gst.load(data)
    big = st_numpy.save({"u": np.array([2 ** 63], dtype=np.uint64)})
    with pytest.raises(ValueError, match="'u' .*int64 range"):
        gst.load(big)


def test_gd_save_keeps_its_format_whatever_the_name(tmp_path):
    sd = nn.Linear(2, 3).state_dict()
    for name in ("model.pt", "model.safetensors", "weights"):
        gd.save(sd, tmp_path / name)
        with open(tmp_path / name, "rb") as f:
            assert f.read(2) == b"PK"  # graddesc's .npz checkpoint, never pickle
        back = gd.load(tmp_path / name)
        for k in sd:
            np.testing.assert_array_equal(back[k].numpy(), sd[k].numpy())
    # and gd.load reads a safetensors file whatever its name, from a path or a file object
    gst.save_file(sd, tmp_path / "weights.bin")
    with open(tmp_path / "weights.bin", "rb") as f:
        back = gd.load(f)
    assert sorted(back) == ["bias", "weight"]
    np.testing.assert_array_equal(back["weight"].numpy(), sd["weight"].numpy())


def test_malformed_files_raise_value_error(tmp_path):
    good = gst.save({"w": gd.ones(3, 2)})
    for bad in (good[:-3], good[:8] + b"{" + b"x" * (len(good) - 9), b"not safetensors"):
        with pytest.raises(ValueError, match="not a valid safetensors file"):
            gst.load(bad)
    path = tmp_path / "cut.safetensors"
    path.write_bytes(good[:-3])
    with pytest.raises(ValueError, match="cut.safetensors"):
        gst.load_file(path)
    with pytest.raises(ValueError, match="safetensors file that can't be read"):
        gd.load(path)
    with pytest.raises(OSError):
        gst.load_file(tmp_path / "missing.safetensors")


def test_bad_arguments_name_themselves(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match="names must be str"):
        gst.save_file({1: gd.ones(2)}, path)
    with pytest.raises(TypeError, match=r"tensors\['w'\] must be a graddesc Tensor, got list"):
        gst.save_file({"w": [1.0]}, path)
    with pytest.raises(TypeError, match=r"tensors\['w'\] has dtype int32"):
        gst.save_file({"w": np.zeros(2, np.int32)}, path)
    with pytest.raises(TypeError, match="argument 'tensors' must be a dict"):
        gst.save_file([gd.ones(2)], path)
    with pytest.raises(TypeError, match="argument 'metadata'"):
        gst.save_file({"w": gd.ones(2)}, path, metadata={"n": 1})
    assert not os.path.exists(path)  # nothing half-written
    gst.save_file({"w": gd.ones(2)}, path)
    with pytest.raises(RuntimeError, match="device 'cuda' is not available"):
        gst.load_file(path, device="cuda")
    with pytest.raises(TypeError, match="argument 'data' must be bytes"):
        gst.load(str(path))


def test_load_model_strict_and_not(tmp_path):
    path = tmp_path / "part.safetensors"
    gst.save_file({"weight": gd.ones(3, 2), "extra": gd.zeros(1)}, path)
    with pytest.raises(RuntimeError, match='(?s)Unexpected key.*"extra".*Missing key.*"bias"'):
        gst.load_model(nn.Linear(2, 3), path)
    m = nn.Linear(2, 3)
    assert gst.load_model(m, path, strict=False) == ({"bias"}, ["extra"])
    np.testing.assert_array_equal(m.weight.detach().numpy(), np.ones((3, 2), np.float32))

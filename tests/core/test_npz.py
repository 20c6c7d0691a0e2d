"""core.npz: the in-memory .npz writer reads back as numpy.savez's archives do."""

import io
import zipfile

import numpy as np
import pytest

from core import npz
from core.npz import npz_bytes
from core.store import atomic_save_npz, load_npz

RNG = np.random.default_rng(7)

ARRAYS = {
    "float64": RNG.standard_normal((3, 4)),
    "float32": RNG.standard_normal(5).astype(np.float32),
    "scalar": np.array(2.5),
    "int": np.arange(6, dtype=np.int64).reshape(2, 3),
    "bool": np.array([True, False, True]),
    "empty": np.zeros((0, 3)),
    "uint8": np.frombuffer(b'{"a": 1}', dtype=np.uint8),
    "text": np.array(["alpha", "be"]),
    "big_endian": np.arange(4, dtype=">f8"),
    "fortran": np.asfortranarray(RNG.standard_normal((3, 2))),
    "strided": RNG.standard_normal((4, 6))[::2, ::3],
    "algorithm/W": RNG.standard_normal((2, 2)),
}


def _savez(arrays):
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def test_archive_is_a_valid_zip_with_the_same_members_as_savez():
    data = npz_bytes(ARRAYS)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None  # every member's CRC-32 checks
    reference = zipfile.ZipFile(io.BytesIO(_savez(ARRAYS)))
    assert archive.namelist() == reference.namelist()
    for name in reference.namelist():  # byte for byte the .npy members numpy writes
        assert archive.read(name) == reference.read(name), name
        assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED


def test_np_load_returns_equal_arrays_with_shapes_dtypes_and_values():
    loaded = np.load(io.BytesIO(npz_bytes(ARRAYS)), allow_pickle=False)
    assert sorted(loaded.files) == sorted(ARRAYS)
    for key, array in ARRAYS.items():
        assert loaded[key].dtype == array.dtype and loaded[key].shape == array.shape, key
        np.testing.assert_array_equal(loaded[key], array)


def test_equal_arrays_give_equal_bytes():
    again = {k: v.copy(order="K") for k, v in ARRAYS.items()}
    assert npz_bytes(ARRAYS) == npz_bytes(again)
    assert npz_bytes({}) == _savez({})[-22:]  # an empty archive: the end record alone


def test_large_zip64_and_format_2_cases_are_left_to_numpy(monkeypatch):
    assert npz_bytes({"a": np.zeros(npz.MAX_BYTES // 8 + 1)}) is None
    assert npz_bytes({"a": np.zeros(npz.MAX_BYTES // 8)}) is not None
    monkeypatch.setattr(npz, "_LIMIT", 400)  # as if the arrays were over 4 GiB
    assert npz_bytes({"a": np.zeros(5)}) is not None
    assert npz_bytes({"a": np.zeros(50)}) is None
    monkeypatch.undo()
    wide = np.zeros(1, dtype=[(f"field{i:05d}", "f8") for i in range(3000)])  # header > 64 KiB
    assert npz_bytes({"wide": wide}) is None


def test_atomic_save_npz_falls_back_to_numpy_and_reads_back(tmp_path, monkeypatch):
    atomic_save_npz(tmp_path / "fast.npz", ARRAYS)
    monkeypatch.setattr("core.store.npz_bytes", lambda arrays: None)
    atomic_save_npz(tmp_path / "numpy.npz", ARRAYS)
    fast, slow = load_npz(tmp_path / "fast.npz"), load_npz(tmp_path / "numpy.npz")
    for key, array in ARRAYS.items():
        np.testing.assert_array_equal(fast[key], array)
        np.testing.assert_array_equal(slow[key], array)


@pytest.mark.parametrize("dtype", [object])
def test_object_arrays_are_still_refused(tmp_path, dtype):
    with pytest.raises(TypeError, match="pickle"):
        atomic_save_npz(tmp_path / "x.npz", {"bad": np.array([None], dtype=dtype)})

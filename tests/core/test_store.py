"""Run-store primitives: atomic files, state packing, chunked trace."""

import json

import numpy as np
import pytest

from core.store import (
    TraceWriter,
    atomic_save_npz,
    atomic_write_json,
    load_npz,
    load_state,
    pack_state,
    read_stream,
    save_state,
    unpack_state,
)
from plugins.loggers import on_cadence


def test_atomic_json_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "meta.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": np.float64(2.5), "b": np.arange(2)})
    assert json.loads(path.read_text()) == {"a": 2.5, "b": [0, 1]}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="refusing to pickle"):
        atomic_save_npz(tmp_path / "x.npz", {"x": np.array([{}, 1], dtype=object)})
    assert not list(tmp_path.iterdir())


def test_state_round_trip_nested(tmp_path):
    rng = np.random.default_rng(0)
    state = {
        "W": rng.normal(size=(3, 4)).astype(np.float32),
        "opt": {"state": {"0": {"buf": np.ones(4)}}, "groups": [{"lr": 0.1, "nesterov": False}]},
        "rng": rng.bit_generator.state,
        "t": np.int64(7),
        "none": None,
    }
    save_state(tmp_path / "s.npz", state)
    back = load_state(tmp_path / "s.npz")
    np.testing.assert_array_equal(back["W"], state["W"])
    assert back["W"].dtype == np.float32
    np.testing.assert_array_equal(back["opt"]["state"]["0"]["buf"], np.ones(4))
    assert back["opt"]["groups"] == [{"lr": 0.1, "nesterov": False}]
    assert back["t"] == 7 and back["none"] is None
    fresh = np.random.default_rng(99)
    fresh.bit_generator.state = back["rng"]
    np.testing.assert_array_equal(fresh.normal(size=5), rng.normal(size=5))


def test_pack_state_rejects_objects():
    with pytest.raises(TypeError, match="cannot store object"):
        pack_state({"x": object()})
    arrays, tree = pack_state({"a": [np.zeros(2), 3]})
    assert unpack_state(arrays, tree)["a"][1] == 3


def test_trace_chunks_concatenate_with_missing_columns(tmp_path):
    trace = TraceWriter(tmp_path)
    trace.append("scalars", {"step": 0, "loss": 1.0})
    trace.append("scalars", {"step": 1, "loss": 0.5, "grad_norm": 2.0})
    assert trace.flush() and trace.next_chunk == 1
    trace.append("scalars", {"step": 2, "loss": 0.25})
    trace.append_columns("records", {"step": np.array([2, 2]), "F": np.array([3.0, 2.0])})
    trace.flush()
    assert not trace.flush()  # nothing pending: no empty chunk
    scalars = read_stream(tmp_path, "scalars")
    np.testing.assert_array_equal(scalars["step"], [0, 1, 2])
    np.testing.assert_array_equal(scalars["loss"], [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(scalars["grad_norm"], [np.nan, 2.0, np.nan])
    assert read_stream(tmp_path, "records")["F"].tolist() == [3.0, 2.0]
    trace.drop_chunks_from(1)
    np.testing.assert_array_equal(read_stream(tmp_path, "scalars")["step"], [0, 1])
    assert read_stream(tmp_path, "records") == {}


def test_trace_manifest_lists_the_streams_of_each_chunk(tmp_path):
    trace = TraceWriter(tmp_path)
    for step in range(4):
        trace.append("scalars", {"step": step})
        if step % 3 == 0:
            trace.append("snapshots", {"step": step, "W": np.zeros(2)})
        trace.flush()
    manifest = json.loads((tmp_path / "chunks.json").read_text())
    assert manifest == {
        "format": 1,
        "n_chunks": 4,
        "streams": {"scalars": [[0, 4]], "snapshots": [[0, 1], [3, 4]]},
    }
    trace.drop_chunks_from(2)
    manifest = json.loads((tmp_path / "chunks.json").read_text())
    assert manifest["n_chunks"] == 2 and manifest["streams"] == {
        "scalars": [[0, 2]],
        "snapshots": [[0, 1]],
    }
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [
        "scalars.000000.npz",
        "scalars.000001.npz",
        "snapshots.000000.npz",
    ]
    with pytest.raises(ValueError, match="stream name"):
        trace.append("a.b", {"x": 1})


def test_snapshots_keep_dtype(tmp_path):
    trace = TraceWriter(tmp_path)
    for step in range(3):
        trace.append("snapshots", {"step": step, "W": np.full((2, 3), step, np.float32)})
    trace.flush()
    chunk = load_npz(next(tmp_path.glob("snapshots.*.npz")))
    assert chunk["W"].shape == (3, 2, 3) and chunk["W"].dtype == np.float32


def test_cadence():
    assert [t for t in range(0, 31) if on_cadence(t, every=10)] == [0, 10, 20, 30]
    logged = [t for t in range(0, 10**4 + 1) if on_cadence(t, per_decade=5)]
    assert logged[:10] == [0, 1, 2, 3, 4, 7, 10, 16, 26, 40]
    assert 10**4 in logged and len(logged) < 30

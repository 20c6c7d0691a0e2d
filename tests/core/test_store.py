"""Run-store primitives: atomic files, state packing, chunked trace."""

import enum
import json

import numpy as np
import pytest

from core.store import (
    TraceWriter,
    _json_default,
    atomic_save_npz,
    atomic_write_json,
    indented_json,
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


class _Level(enum.IntEnum):
    HIGH = 2


INDENTED_CASES = [
    {},
    [],
    "top-level text",
    None,
    {"status": "finished", "reason": None, "steps": 540, "final_loss": 1.5e-25, "ok": True},
    {"nested": {"empty": {}, "none": [], "list": [1, [2, [3, {}]], ()], "t": (1.0, "x")}},
    {"nan": float("nan"), "inf": float("inf"), "-inf": -float("inf"), "tiny": 5e-324},
    {"text": 'quote " backslash \\ tab \t newline \n nul \x00', "unicode": "é π 😀"},
    {7: "int key", 2.5: "float key", True: "bool key", None: "None key", "": "empty key"},
    {False: "bool key", -1: "negative key", float("nan"): "nan key"},
    {"numpy": np.float64(0.1), "f32": np.float32(0.5), "i": np.int64(-3), "b": np.bool_(1)},
    {"array": np.arange(3), "matrix": np.eye(2), "scalar_array": np.array(7)},
    {"big": 10**30, "neg": -0.0, "enum": _Level.HIGH, "bool": False},
    [[[[]]], [{"a": [{}]}]],
]


@pytest.mark.parametrize("obj", INDENTED_CASES, ids=range(len(INDENTED_CASES)))
def test_indented_json_is_the_text_json_dumps_writes(obj):
    assert indented_json(obj) == json.dumps(obj, indent=2, default=_json_default)


def test_indented_json_refuses_what_json_refuses():
    loop = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        indented_json(loop)
    with pytest.raises(TypeError, match="set is not JSON serialisable"):
        indented_json({"a": {1, 2}})
    with pytest.raises(TypeError, match="keys must be str, int, float, bool or None"):
        indented_json({(1, 2): 3})
    shared = [1]
    assert indented_json([shared, shared]) == json.dumps([shared, shared], indent=2)


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
        "format": 2,
        "n_chunks": 4,
        "streams": {"scalars": [[0, 4]], "snapshots": [[0, 1], [3, 4]]},
    }
    trace.drop_chunks_from(2)
    manifest = json.loads((tmp_path / "chunks.json").read_text())
    assert manifest["n_chunks"] == 2 and manifest["streams"] == {
        "scalars": [[0, 2]],
        "snapshots": [[0, 1]],
    }
    # one file per save, holding the streams written then
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["000000.npz", "000001.npz"]
    assert sorted(load_npz(tmp_path / "000000.npz")) == [
        "scalars/step",
        "snapshots/W",
        "snapshots/step",
    ]
    with pytest.raises(ValueError, match="stream name"):
        trace.append("a.b", {"x": 1})


def test_a_new_trace_folder_is_taken_as_empty(tmp_path, monkeypatch):
    """``new``: the empty trace/ a new run's folder was just made with; not listed."""
    with pytest.raises(ValueError, match="chunk 0"):
        TraceWriter(tmp_path, 1, new=True)
    monkeypatch.setattr("core.store.os.listdir", None)  # never listed
    trace = TraceWriter(tmp_path, 0, new=True)
    trace.append("scalars", {"step": 0, "loss": 1.0})
    assert trace.flush()
    monkeypatch.undo()
    assert read_stream(tmp_path, "scalars")["step"].tolist() == [0]
    assert json.loads((tmp_path / "chunks.json").read_text())["n_chunks"] == 1


def test_snapshots_keep_dtype(tmp_path):
    trace = TraceWriter(tmp_path)
    for step in range(3):
        trace.append("snapshots", {"step": step, "W": np.full((2, 3), step, np.float32)})
    trace.flush()
    W = read_stream(tmp_path, "snapshots")["W"]
    assert W.shape == (3, 2, 3) and W.dtype == np.float32


def test_cadence():
    assert [t for t in range(0, 31) if on_cadence(t, every=10)] == [0, 10, 20, 30]
    logged = [t for t in range(0, 10**4 + 1) if on_cadence(t, per_decade=5)]
    assert logged[:10] == [0, 1, 2, 3, 4, 7, 10, 16, 26, 40]
    assert 10**4 in logged and len(logged) < 30

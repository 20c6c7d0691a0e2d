"""Trace integrity: a missing or corrupt chunk of any stream is named, never skipped.

Each file-level test runs on both trace layouts: a new trace's (2: one chunk file per
save holding every stream) and that of traces begun before it (1: one file per stream
and save), which are still read and resumed.
"""

import json

import numpy as np
import pytest

from core.errors import RunStoreError
from core.store import (
    RunStore,
    TraceWriter,
    atomic_save_npz,
    atomic_write_json,
    load_npz,
    load_run,
    read_stream,
    verify_trace,
)

SNAPSHOT_CHUNKS = (0, 3, 7)


@pytest.fixture(params=[2, 1], ids=["layout2", "layout1"])
def layout(request):
    return request.param


def _chunk(layout, stream, index):
    """The file holding ``stream``'s chunk ``index``."""
    return f"{index:06d}.npz" if layout == 2 else f"{stream}.{index:06d}.npz"


def _begin(trace_dir, layout):
    """A trace about to be written in ``layout`` (1: as a trace begun before layout 2)."""
    if layout == 1:
        manifest = {"format": 1, "n_chunks": 0, "streams": {}}
        atomic_write_json(trace_dir / "chunks.json", manifest)
    trace = TraceWriter(trace_dir)
    trace.drop_chunks_from(0)
    return trace


def _write(trace, start, stop):
    """Flush chunks ``start..stop-1``: scalars in each, snapshots in 0, 3 and 7 only."""
    for index in range(start, stop):
        assert trace.next_chunk == index
        trace.append("scalars", {"step": index, "loss": 1.0 / (index + 1)})
        if index in SNAPSHOT_CHUNKS:
            trace.append("snapshots", {"step": index, "W": np.full((2, 3), index, np.float32)})
        trace.flush()


def _make_run(tmp_path, n_chunks=8, layout=2):
    store = RunStore.create_at(tmp_path / "run")
    store.write_meta({"status": "finished", "reason": "max_steps"})
    atomic_write_json(store.path / "config.json", {"experiment": "x"})
    _write(_begin(store.trace_dir, layout), 0, n_chunks)
    assert json.loads((store.trace_dir / "chunks.json").read_text())["format"] == layout
    return store


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_whole_trace_reads_every_row(tmp_path, layout):
    store = _make_run(tmp_path, layout=layout)
    run = load_run(store.path)
    np.testing.assert_array_equal(run.scalars["step"], np.arange(8))
    np.testing.assert_array_equal(run.snapshots.steps, SNAPSHOT_CHUNKS)
    np.testing.assert_array_equal(run.snapshots["W"][1], np.full((2, 3), 3, np.float32))
    verify_trace(store.trace_dir, 8)
    files = {p.name for p in store.trace_dir.glob("*.npz")}
    if layout == 2:  # one file per save
        assert files == {_chunk(2, None, i) for i in range(8)}
    else:
        assert len(files) == 8 + len(SNAPSHOT_CHUNKS)


@pytest.mark.parametrize(
    "stream, index", [("scalars", 4), ("snapshots", 3), ("scalars", 0), ("snapshots", 7)]
)
def test_a_missing_chunk_of_any_stream_is_named(tmp_path, layout, stream, index):
    store = _make_run(tmp_path, layout=layout)
    name = _chunk(layout, stream, index)
    (store.trace_dir / name).unlink()
    with pytest.raises(RunStoreError, match=f"{name} is missing"):
        load_run(store.path).stream(stream)
    with pytest.raises(RunStoreError, match=f"{name} is missing; the run cannot be resumed whole"):
        verify_trace(store.trace_dir, 8)


def test_load_run_scalars_raise_on_a_deleted_middle_chunk(tmp_path, layout):
    store = _make_run(tmp_path, layout=layout)
    (store.trace_dir / _chunk(layout, "scalars", 4)).unlink()
    with pytest.raises(RunStoreError, match=_chunk(layout, "scalars", 4)):
        _ = load_run(store.path).scalars


@pytest.mark.parametrize("stream, index", [("scalars", 2), ("snapshots", 3)])
def test_a_truncated_chunk_is_named(tmp_path, layout, stream, index):
    store = _make_run(tmp_path, layout=layout)
    name = _chunk(layout, stream, index)
    _truncate(store.trace_dir / name)
    with pytest.raises(RunStoreError, match=f"{name} is corrupt"):
        load_run(store.path).stream(stream)
    with pytest.raises(RunStoreError, match=f"{name} is corrupt .*; the run cannot be resumed"):
        verify_trace(store.trace_dir, 8)


def test_garbage_chunk_is_named(tmp_path, layout):
    store = _make_run(tmp_path, layout=layout)
    name = _chunk(layout, "scalars", 1)
    (store.trace_dir / name).write_bytes(b"not a zip at all")
    with pytest.raises(RunStoreError, match=f"{name} is corrupt"):
        _ = load_run(store.path).scalars


def test_verify_only_checks_the_chunks_the_checkpoint_needs(tmp_path, layout):
    store = _make_run(tmp_path, layout=layout)
    name = _chunk(layout, "scalars", 6)
    (store.trace_dir / name).unlink()
    verify_trace(store.trace_dir, 6)  # chunks 6 and 7 are dropped by the resume
    verify_trace(store.trace_dir, 0)
    with pytest.raises(RunStoreError, match=f"{name} is missing"):
        verify_trace(store.trace_dir, 7)


def test_verify_refuses_a_checkpoint_beyond_the_trace(tmp_path, layout):
    store = _make_run(tmp_path, n_chunks=3, layout=layout)
    with pytest.raises(RunStoreError, match="cannot be resumed whole"):
        verify_trace(store.trace_dir, 5)


def test_killed_mid_flush_then_resumed_reads_whole(tmp_path, layout):
    store = _make_run(tmp_path, n_chunks=5, layout=layout)
    # the checkpoint said 3 chunks; chunks 3 and 4 were flushed after it, and chunk 5
    # was being written when the process died: its files are there, the manifest
    # does not list them yet
    if layout == 2:
        unfinished = {"scalars/step": [99], "scalars/loss": [0.0], "records/step": [99]}
        atomic_save_npz(store.trace_dir / _chunk(2, None, 5), unfinished)
    else:
        atomic_save_npz(store.trace_dir / _chunk(1, "scalars", 5), {"step": [99], "loss": [0.0]})
        atomic_save_npz(store.trace_dir / _chunk(1, "records", 5), {"step": [99], "F": [1.0]})
    assert 99 not in load_run(store.path).scalars["step"]  # an unfinished flush is not read
    verify_trace(store.trace_dir, 3)
    resumed = TraceWriter(store.trace_dir, 3)
    resumed.drop_chunks_from(3)
    assert not list(store.trace_dir.glob("*00000[345].npz"))
    _write(resumed, 3, 8)
    run = load_run(store.path)
    np.testing.assert_array_equal(run.scalars["step"], np.arange(8))
    np.testing.assert_array_equal(run.snapshots.steps, SNAPSHOT_CHUNKS)
    assert run.records == {}
    verify_trace(store.trace_dir, 8)


def test_chunks_beyond_the_manifest_are_ignored_after_a_killed_drop(tmp_path, layout):
    # drop_chunks_from rewrites the manifest before it deletes: killed in between,
    # the newer chunks are still there but no longer listed
    store = _make_run(tmp_path, layout=layout)
    newer = {p.name: p.read_bytes() for p in store.trace_dir.glob("*00000[4-7].npz")}
    assert newer
    TraceWriter(store.trace_dir, 4).drop_chunks_from(4)
    for name, data in newer.items():
        (store.trace_dir / name).write_bytes(data)
    np.testing.assert_array_equal(read_stream(store.trace_dir, "scalars")["step"], np.arange(4))
    verify_trace(store.trace_dir, 4)
    with pytest.raises(RunStoreError, match="cannot be resumed whole"):
        verify_trace(store.trace_dir, 5)


def test_a_trace_without_manifest_detects_a_missing_index(tmp_path, layout):
    store = _make_run(tmp_path, layout=layout)
    (store.trace_dir / "chunks.json").unlink()
    run = load_run(store.path)
    np.testing.assert_array_equal(run.scalars["step"], np.arange(8))
    np.testing.assert_array_equal(run.snapshots.steps, SNAPSHOT_CHUNKS)
    verify_trace(store.trace_dir, 8)
    (store.trace_dir / _chunk(layout, "scalars", 5)).unlink()  # index 5 held only scalars
    missing = r"\*\.000005\.npz" if layout == 1 else "000005.npz"
    with pytest.raises(RunStoreError, match=f"{missing} is missing"):
        _ = load_run(store.path).scalars
    with pytest.raises(RunStoreError, match="cannot be resumed whole"):
        verify_trace(store.trace_dir, 8)


def test_a_trace_without_manifest_gets_one_on_resume_and_keeps_its_layout(tmp_path, layout):
    store = _make_run(tmp_path, n_chunks=5, layout=layout)
    (store.trace_dir / "chunks.json").unlink()
    verify_trace(store.trace_dir, 4)
    trace = TraceWriter(store.trace_dir, 4)
    trace.drop_chunks_from(4)
    _write(trace, 4, 8)
    assert json.loads((store.trace_dir / "chunks.json").read_text())["format"] == layout
    assert (store.trace_dir / _chunk(layout, "scalars", 7)).is_file()
    np.testing.assert_array_equal(load_run(store.path).scalars["step"], np.arange(8))
    name = _chunk(layout, "snapshots", 3)
    (store.trace_dir / name).unlink()
    with pytest.raises(RunStoreError, match=f"{name} is missing"):
        _ = load_run(store.path).snapshots


def test_corrupt_manifest_is_named(tmp_path):
    store = _make_run(tmp_path)
    (store.trace_dir / "chunks.json").write_text("{not json")
    with pytest.raises(RunStoreError, match="chunks.json is corrupt"):
        _ = load_run(store.path).scalars
    (store.trace_dir / "chunks.json").write_text(
        json.dumps({"format": 1, "n_chunks": 8, "streams": {"scalars": [[0, 9]]}})
    )
    with pytest.raises(RunStoreError, match="chunks.json is corrupt"):
        verify_trace(store.trace_dir, 8)


def test_resumed_run_after_a_kill_mid_flush_reads_whole(tmp_path, toy_registry):
    from conftest import toy_config

    from core.config import resolve
    from core.loop import resume_run, start_run
    from core.store import load_state

    config = resolve(
        toy_config(tmp_path / "runs", stoppers={"max_steps": {"steps": 90}}), toy_registry
    )
    run = start_run(config, "", toy_registry)
    n_chunks = load_state(run.path / "checkpoint.npz")["loop"]["n_chunks"]
    # killed while flushing the chunk after the last checkpoint
    atomic_save_npz(
        run.path / "trace" / f"{n_chunks:06d}.npz", {"scalars/step": [1000], "scalars/loss": [0.0]}
    )
    resumed = resume_run(run.path, toy_registry, overrides=["stoppers.max_steps.steps=150"])
    np.testing.assert_array_equal(resumed.scalars["step"], np.arange(151))
    snapshot_steps = resumed.snapshots.steps
    assert snapshot_steps[-1] == 150 and np.all(np.diff(snapshot_steps) > 0)
    n_chunks = load_state(resumed.path / "checkpoint.npz")["loop"]["n_chunks"]
    verify_trace(resumed.path / "trace", n_chunks)


def test_a_layout2_chunk_without_a_listed_stream_is_named(tmp_path):
    store = _make_run(tmp_path)
    atomic_save_npz(store.trace_dir / "000003.npz", {"scalars/step": [3], "scalars/loss": [0.25]})
    with pytest.raises(RunStoreError, match="000003.npz is corrupt .*no 'snapshots' arrays"):
        _ = load_run(store.path).snapshots
    (store.trace_dir / "chunks.json").unlink()
    (store.trace_dir / "000005.npz").write_bytes(b"not a zip at all")
    with pytest.raises(RunStoreError, match="000005.npz is corrupt"):
        _ = load_run(store.path).scalars


def _to_layout_1(trace_dir):
    """Rewrite a layout-2 trace as a run made before layout 2 wrote it."""
    manifest = json.loads((trace_dir / "chunks.json").read_text())
    for path in sorted(trace_dir.glob("[0-9]*.npz")):
        arrays = load_npz(path)
        for stream in {key.split("/")[0] for key in arrays}:
            columns = {
                k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(stream + "/")
            }
            atomic_save_npz(trace_dir / f"{stream}.{path.name}", columns)
        path.unlink()
    atomic_write_json(trace_dir / "chunks.json", {**manifest, "format": 1})


def test_a_run_begun_in_layout_1_resumes_in_it(tmp_path, toy_registry):
    from conftest import toy_config

    from core.config import resolve
    from core.loop import resume_run, start_run

    config = resolve(
        toy_config(tmp_path / "runs", stoppers={"max_steps": {"steps": 60}}), toy_registry
    )
    run = start_run(config, "", toy_registry)
    reference = start_run(
        resolve(toy_config(tmp_path / "ref", stoppers={"max_steps": {"steps": 120}}), toy_registry),
        "",
        toy_registry,
    )
    trace_dir = run.path / "trace"
    _to_layout_1(trace_dir)
    np.testing.assert_array_equal(load_run(run.path).scalars["step"], np.arange(61))
    resumed = resume_run(run.path, toy_registry, overrides=["stoppers.max_steps.steps=120"])
    assert not list(trace_dir.glob("[0-9]*.npz"))  # every chunk in layout 1
    assert json.loads((trace_dir / "chunks.json").read_text())["format"] == 1
    np.testing.assert_array_equal(resumed.scalars["step"], np.arange(121))
    np.testing.assert_array_equal(resumed.scalars["loss"], reference.scalars["loss"])
    np.testing.assert_array_equal(resumed.final_state()["W"], reference.final_state()["W"])

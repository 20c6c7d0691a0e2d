"""Trace integrity: a missing or corrupt chunk of any stream is named, never skipped."""

import json

import numpy as np
import pytest

from core.errors import RunStoreError
from core.store import (
    RunStore,
    TraceWriter,
    atomic_save_npz,
    atomic_write_json,
    load_run,
    read_stream,
    verify_trace,
)

SNAPSHOT_CHUNKS = (0, 3, 7)


def _write(trace, start, stop):
    """Flush chunks ``start..stop-1``: scalars in each, snapshots in 0, 3 and 7 only."""
    for index in range(start, stop):
        assert trace.next_chunk == index
        trace.append("scalars", {"step": index, "loss": 1.0 / (index + 1)})
        if index in SNAPSHOT_CHUNKS:
            trace.append("snapshots", {"step": index, "W": np.full((2, 3), index, np.float32)})
        trace.flush()


def _make_run(tmp_path, n_chunks=8):
    store = RunStore.create_at(tmp_path / "run")
    store.write_meta({"status": "finished", "reason": "max_steps"})
    atomic_write_json(store.path / "config.json", {"experiment": "x"})
    trace = TraceWriter(store.trace_dir)
    trace.drop_chunks_from(0)
    _write(trace, 0, n_chunks)
    return store


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_whole_trace_reads_every_row(tmp_path):
    store = _make_run(tmp_path)
    run = load_run(store.path)
    np.testing.assert_array_equal(run.scalars["step"], np.arange(8))
    np.testing.assert_array_equal(run.snapshots.steps, SNAPSHOT_CHUNKS)
    verify_trace(store.trace_dir, 8)


@pytest.mark.parametrize(
    "name",
    ["scalars.000004.npz", "snapshots.000003.npz", "scalars.000000.npz", "snapshots.000007.npz"],
)
def test_a_missing_chunk_of_any_stream_is_named(tmp_path, name):
    store = _make_run(tmp_path)
    (store.trace_dir / name).unlink()
    stream = name.split(".")[0]
    with pytest.raises(RunStoreError, match=f"{name} is missing"):
        load_run(store.path).stream(stream)
    with pytest.raises(RunStoreError, match=f"{name} is missing; the run cannot be resumed whole"):
        verify_trace(store.trace_dir, 8)


def test_load_run_scalars_raise_on_a_deleted_middle_chunk(tmp_path):
    store = _make_run(tmp_path)
    (store.trace_dir / "scalars.000004.npz").unlink()
    with pytest.raises(RunStoreError, match="scalars.000004.npz"):
        _ = load_run(store.path).scalars


@pytest.mark.parametrize("name", ["scalars.000002.npz", "snapshots.000003.npz"])
def test_a_truncated_chunk_is_named(tmp_path, name):
    store = _make_run(tmp_path)
    _truncate(store.trace_dir / name)
    stream = name.split(".")[0]
    with pytest.raises(RunStoreError, match=f"{name} is corrupt"):
        load_run(store.path).stream(stream)
    with pytest.raises(RunStoreError, match=f"{name} is corrupt .*; the run cannot be resumed"):
        verify_trace(store.trace_dir, 8)


def test_garbage_chunk_is_named(tmp_path):
    store = _make_run(tmp_path)
    (store.trace_dir / "scalars.000001.npz").write_bytes(b"not a zip at all")
    with pytest.raises(RunStoreError, match="scalars.000001.npz is corrupt"):
        _ = load_run(store.path).scalars


def test_verify_only_checks_the_chunks_the_checkpoint_needs(tmp_path):
    store = _make_run(tmp_path)
    (store.trace_dir / "scalars.000006.npz").unlink()
    verify_trace(store.trace_dir, 6)  # chunks 6 and 7 are dropped by the resume
    verify_trace(store.trace_dir, 0)
    with pytest.raises(RunStoreError, match="scalars.000006.npz is missing"):
        verify_trace(store.trace_dir, 7)


def test_verify_refuses_a_checkpoint_beyond_the_trace(tmp_path):
    store = _make_run(tmp_path, n_chunks=3)
    with pytest.raises(RunStoreError, match="cannot be resumed whole"):
        verify_trace(store.trace_dir, 5)


def test_killed_mid_flush_then_resumed_reads_whole(tmp_path):
    store = _make_run(tmp_path, n_chunks=5)
    # the checkpoint said 3 chunks; chunks 3 and 4 were flushed after it, and chunk 5
    # was being written when the process died: its files are there, the manifest
    # does not list them yet
    atomic_save_npz(store.trace_dir / "scalars.000005.npz", {"step": [99], "loss": [0.0]})
    atomic_save_npz(store.trace_dir / "records.000005.npz", {"step": [99], "F": [1.0]})
    assert 99 not in load_run(store.path).scalars["step"]  # an unfinished flush is not read
    verify_trace(store.trace_dir, 3)
    resumed = TraceWriter(store.trace_dir, 3)
    resumed.drop_chunks_from(3)
    assert not list(store.trace_dir.glob("*.00000[345].npz"))
    _write(resumed, 3, 8)
    run = load_run(store.path)
    np.testing.assert_array_equal(run.scalars["step"], np.arange(8))
    np.testing.assert_array_equal(run.snapshots.steps, SNAPSHOT_CHUNKS)
    assert run.records == {}
    verify_trace(store.trace_dir, 8)


def test_chunks_beyond_the_manifest_are_ignored_after_a_killed_drop(tmp_path):
    # drop_chunks_from rewrites the manifest before it deletes: killed in between,
    # the newer chunks are still there but no longer listed
    store = _make_run(tmp_path)
    newer = {p.name: p.read_bytes() for p in store.trace_dir.glob("*.00000[4-7].npz")}
    TraceWriter(store.trace_dir, 4).drop_chunks_from(4)
    for name, data in newer.items():
        (store.trace_dir / name).write_bytes(data)
    np.testing.assert_array_equal(read_stream(store.trace_dir, "scalars")["step"], np.arange(4))
    verify_trace(store.trace_dir, 4)
    with pytest.raises(RunStoreError, match="cannot be resumed whole"):
        verify_trace(store.trace_dir, 5)


def test_legacy_trace_without_manifest_detects_a_missing_index(tmp_path):
    store = _make_run(tmp_path)
    (store.trace_dir / "chunks.json").unlink()
    np.testing.assert_array_equal(load_run(store.path).scalars["step"], np.arange(8))
    verify_trace(store.trace_dir, 8)
    (store.trace_dir / "scalars.000005.npz").unlink()  # index 5 held only scalars
    with pytest.raises(RunStoreError, match=r"\*\.000005\.npz is missing"):
        _ = load_run(store.path).scalars
    with pytest.raises(RunStoreError, match="cannot be resumed whole"):
        verify_trace(store.trace_dir, 8)


def test_legacy_trace_is_converted_on_resume(tmp_path):
    store = _make_run(tmp_path, n_chunks=5)
    (store.trace_dir / "chunks.json").unlink()
    verify_trace(store.trace_dir, 4)
    trace = TraceWriter(store.trace_dir, 4)
    trace.drop_chunks_from(4)
    _write(trace, 4, 8)
    assert (store.trace_dir / "chunks.json").is_file()
    (store.trace_dir / "snapshots.000003.npz").unlink()
    with pytest.raises(RunStoreError, match="snapshots.000003.npz is missing"):
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
        run.path / "trace" / f"scalars.{n_chunks:06d}.npz", {"step": [1000], "loss": [0.0]}
    )
    resumed = resume_run(run.path, toy_registry, overrides=["stoppers.max_steps.steps=150"])
    np.testing.assert_array_equal(resumed.scalars["step"], np.arange(151))
    snapshot_steps = resumed.snapshots.steps
    assert snapshot_steps[-1] == 150 and np.all(np.diff(snapshot_steps) > 0)
    n_chunks = load_state(resumed.path / "checkpoint.npz")["loop"]["n_chunks"]
    verify_trace(resumed.path / "trace", n_chunks)

"""The live display redraws about ten times a second, never once per step."""

import time

from core.display import Display


def test_plain_display_is_throttled_to_the_refresh_rate(capsys):
    display = Display("plain", title="t", refresh_per_second=10.0, plain_every=0.0)
    display.start(0)
    start = time.perf_counter()
    steps = 0
    while time.perf_counter() - start < 0.35:
        steps += 1
        display.update(steps, 1.0 / steps, time.perf_counter() - start, fraction=None)
    elapsed = time.perf_counter() - start
    display.update(steps, 0.0, elapsed, fraction=1.0, force=True)
    display.stop()
    lines = capsys.readouterr().err.strip().splitlines()
    assert steps > 1000  # a fast loop
    assert 2 <= len(lines) <= elapsed * 10 + 2
    assert lines[-1].startswith("[t] 100.0% step") and f"step {steps} " in lines[-1]


def test_off_display_prints_nothing(capsys):
    display = Display("off")
    display.start(0)
    for step in range(100):
        display.update(step, 1.0, 0.0, force=True)
    display.stop()
    assert capsys.readouterr().err == ""


def test_steps_per_second_is_that_of_the_last_full_window(capsys, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("core.display.time.perf_counter", lambda: clock[0])
    display = Display("plain", title="t", plain_every=0.0)
    display.start(0)
    for now, step in ((101.0, 5), (103.0, 30), (103.01, 30), (104.0, 31)):
        clock[0] = now
        display.update(step, 1.0, now - 100.0, force=True)
    rates = [
        line.split(" steps/s")[0].rsplit(" ", 1)[1] for line in capsys.readouterr().err.splitlines()
    ]
    # 5 steps in the first second; 30 in the first full window (3 s); then that
    # window's rate holds until the next one is full, never 0 from a fresh window
    assert rates == ["5.0", "10.0", "10.0", "10.0"]


def test_a_display_that_never_started_can_still_end(capsys):
    """A run that fails before its loop starts still ends its display: the plain
    mode prints the final line, the live mode (no progress bar yet) prints nothing."""
    display = Display("plain", title="t")
    display.update(3, 0.5, 1.0, force=True)
    display.stop()
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("[t] step 3 loss 5.0000e-01") and "elapsed 1.0s" in line
    live = Display("live", title="t")
    live.update(3, 0.5, 1.0, fraction=0.5, force=True)
    live.stop()
    assert capsys.readouterr().err == "" and live._progress is None

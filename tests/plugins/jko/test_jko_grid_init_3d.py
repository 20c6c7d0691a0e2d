"""A JKO run on a 3-D grid built by the ``grid`` init: 2-D inputs with a bias."""

import numpy as np
from conftest import ROOT

from core.config import load
from core.loop import start_run
from core.registry import get_registry


def test_a_jko_run_on_a_three_dimensional_grid_conserves_each_sign_and_descends(tmp_path):
    registry = get_registry()
    config, source, _ = load(
        ROOT / "configs" / "jko_sinkhorn.py",
        [
            'data={"name": "relu_teacher", "d": 2, "n": 12}',
            "init.per_axis=5",
            "stoppers.max_steps.steps=4",
            "loggers.snapshots.every=1",
            "run.display='off'",
            f"run.runs_dir={str(tmp_path)!r}",
        ],
        registry,
    )
    run = start_run(config, source, registry)
    assert run.meta["status"] == "finished"
    W = run.snapshots["W"]
    assert W.shape[1:] == (3, 2 * 5**3)  # weight, weight, bias; both signs at 125 positions
    p = run.snapshots["p"]
    positive, negative = p[:, :125].sum(axis=1), p[:, 125:].sum(axis=1)
    np.testing.assert_allclose(positive, positive[0], rtol=1e-10)
    np.testing.assert_allclose(negative, negative[0], rtol=1e-10)
    loss = run.scalars["loss"]
    assert np.all(np.diff(loss) < 0)

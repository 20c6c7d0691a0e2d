"""The shipped proximal-point configs resolve and run shortened, lowering the loss."""

import numpy as np
import pytest

from core import config as config_module
from core.loop import start_run
from core.registry import Registry

pytest.importorskip("torch")


@pytest.mark.parametrize("distance", ["frobenius", "wasserstein", "sliced"])
def test_prox_config_runs_shortened(tmp_path, distance):
    if distance != "frobenius":
        pytest.importorskip("ot")
    registry = Registry(entry_points=False)
    overrides = ["stoppers.max_steps.steps=3", f"run.runs_dir={tmp_path}", "run.display=off"]
    config, source, _ = config_module.load(
        config_module.REPO_ROOT / "configs" / f"prox_{distance}.py", overrides, registry
    )
    algorithm = config["algorithm"]
    assert config["experiment"] == f"prox_{distance}"
    assert algorithm["name"] == "proxpoint" and algorithm["distance"] == distance
    run = start_run(config, source, registry)
    assert run.status == "finished" and run.meta["steps"] == 3
    losses = run.scalars["loss"]
    assert np.all(np.diff(losses) < 0) and losses[-1] < 0.5 * losses[0]
    records = run.records
    assert set(np.unique(records["step"])) == {1, 2, 3}
    assert np.all(run.scalars["inner_iters"][1:] == algorithm["inner_steps"])

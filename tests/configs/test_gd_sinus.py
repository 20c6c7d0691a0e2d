"""The shipped config ``configs/gd_sinus.py`` resolves and fits, shortened."""

from core import config as config_module
from core.loop import start_run
from core.registry import Registry


def test_gd_sinus_fits(tmp_path):
    registry = Registry(entry_points=False)
    overrides = ["stoppers.max_steps.steps=300", f"run.runs_dir={tmp_path}", "run.display=off"]
    config, source, _ = config_module.load(
        config_module.REPO_ROOT / "configs" / "gd_sinus.py", overrides, registry
    )
    assert config["experiment"] == "gd_sinus" and config["algorithm"]["name"] == "gd"
    run = start_run(config, source, registry)
    assert run.status == "finished"
    losses = run.scalars["loss"]
    assert losses[-1] < 1e-2 * losses[0]
    assert run.problem["X"].shape == (20, 2)

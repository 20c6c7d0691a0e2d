"""The shipped config ``configs/gd_digits.py`` resolves and fits, shortened."""

import pytest

from core import config as config_module
from core.loop import start_run
from core.registry import Registry


def test_gd_digits_fits(tmp_path):
    pytest.importorskip("sklearn")
    registry = Registry(entry_points=False)
    overrides = ["stoppers.max_steps.steps=300", f"run.runs_dir={tmp_path}", "run.display=off"]
    config, source, _ = config_module.load(
        config_module.REPO_ROOT / "configs" / "gd_digits.py", overrides, registry
    )
    assert config["experiment"] == "gd_digits" and config["data"]["name"] == "digits"
    run = start_run(config, source, registry)
    assert run.status == "finished"
    assert run.problem["X"].shape == (500, 65) and run.problem["Y"].shape == (500, 10)
    assert run.problem["X_test"].shape == (300, 65)
    losses, test = run.scalars["loss"], run.scalars["test_loss"]
    assert losses[-1] < 0.01 * losses[0]
    assert test[-1] < 0.08  # predicting 0.1 for every class scores 0.09


def test_gd_mnist_resolves_and_names_its_files(tmp_path):
    registry = Registry(entry_points=False)
    config, source, _ = config_module.load(
        config_module.REPO_ROOT / "configs" / "gd_mnist.py",
        [f"run.runs_dir={tmp_path}", f"data.path={tmp_path / 'mnist'}"],
        registry,
    )
    assert config["data"]["name"] == "mnist" and config["data"]["pca"] == 50
    with pytest.raises(Exception, match="train-images-idx3-ubyte"):
        start_run(config, source, registry)
    assert not list(tmp_path.glob("gd_mnist/*"))  # no half-made run

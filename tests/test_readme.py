"""The README's commands are the ones CI and newcomers run."""

import re

from conftest import ROOT


def _test_command():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- test-command -->", 1)[1].split("```bash\n", 1)[1]
    return block.split("\n", 1)[0].strip()


def test_ci_runs_exactly_the_readme_test_command():
    command = _test_command()
    assert command.startswith("pip install torch==2.13.0")
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in lines


def test_every_config_the_docs_name_exists():
    texts = [(ROOT / "README.md").read_text()]
    texts += [path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))]
    named = set(re.findall(r"configs/[a-z_0-9]+\.py", "\n".join(texts)))
    assert {"configs/jko_sinkhorn.py", "configs/gd_sinus.py", "configs/base.py",
            "configs/width_sweep.py"} <= named
    assert [name for name in sorted(named) if not (ROOT / name).is_file()] == []

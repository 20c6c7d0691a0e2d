"""The README's commands are the ones CI and newcomers run."""

import re
import tomllib

from conftest import ROOT


def _test_command():
    """The lines of the README's test-command block."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- test-command -->", 1)[1].split("```bash\n", 1)[1]
    return [line.strip() for line in block.split("```", 1)[0].splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_test_command():
    command = _test_command()
    assert command[0].startswith("pip install torch==2.13.0")
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    starts = [i for i, line in enumerate(lines) if line == command[0]]
    assert any(lines[i : i + len(command)] == command for i in starts), (command, lines)
    assert lines[-len(command) :] == command  # nothing else runs after it
    # under `set -e` a failure inside an `a && b` list does not stop the script: one
    # command per line, so a lint failure fails CI
    assert "set -euo pipefail" in lines
    assert not [line for line in command if "&&" in line or "||" in line], command


def test_ci_lints_and_runs_the_doctests():
    words = _test_command()
    assert {"ruff check .", "ruff format --check .", "python -m pytest -n 2 -q"} <= set(words)
    install = next(i for i, w in enumerate(words) if w.startswith("pip install -e"))
    assert install < words.index("ruff check .")  # ruff comes with the test extra
    pytest_ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    assert {"tests", "core", "plugins", "relulab"} <= set(pytest_ini["ini_options"]["testpaths"])
    assert "--doctest-modules" in pytest_ini["ini_options"]["addopts"].split()


def test_every_config_the_docs_name_exists():
    texts = [(ROOT / "README.md").read_text()]
    texts += [path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))]
    named = set(re.findall(r"configs/[a-z_0-9]+\.py", "\n".join(texts)))
    assert {
        "configs/jko_sinkhorn.py",
        "configs/gd_sinus.py",
        "configs/base.py",
        "configs/width_sweep.py",
    } <= named
    assert [name for name in sorted(named) if not (ROOT / name).is_file()] == []

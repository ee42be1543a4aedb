"""The pip path (pyproject.toml) and the conda path (environment.yml) install the same things,
and the README's two commands are the ones CI and the Makefile run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def requirement(spec: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = dict(requirement(s) for s in project["dependencies"])
    for extra in ("book", "scale", "test"):
        pip_side.update(requirement(s) for s in project["optional-dependencies"][extra])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_side = dict(requirement(s) for s in pip_list if not s.startswith("-e"))
    assert conda_side == pip_side, (
        f"only in pyproject.toml: {sorted(set(pip_side.items()) - set(conda_side.items()))}; "
        f"only in environment.yml: {sorted(set(conda_side.items()) - set(pip_side.items()))}")
    assert "-e ." in pip_list, "environment.yml must install course_lib itself"
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_torch_is_pinned_exactly_everywhere():
    for path in ("pyproject.toml", "environment.yml", "Makefile"):
        text = (ROOT / path).read_text()
        assert "torch==2.13.0" in text, path
        assert not re.search(r"torch\s*(>=|~=|<|>(?!=))", text), f"{path}: torch must be pinned"


def test_readme_commands_are_what_ci_and_make_run():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^book:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "jupyter-book build . -W" in makefile

"""environment.yml (conda users) and pyproject.toml (uv users) must list the same packages."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    """'torch>=2.6' -> 'torch'; names compared the PEP 503 way (case, '-', '_' and '.' folded)."""
    name = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"]) + list(data["dependency-groups"]["dev"])
    return {_name(r): r.replace(" ", "") for r in reqs}


def _conda_pip_requirements() -> tuple[dict[str, str], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    editable = [r for r in pip_section if r.startswith("-e")]
    packages = {_name(r): r.replace(" ", "") for r in pip_section if not r.startswith("-")}
    return packages, editable


def test_same_package_names():
    pyproject = _pyproject_requirements()
    conda, _ = _conda_pip_requirements()
    assert sorted(pyproject) == sorted(conda), (
        f"only in pyproject.toml: {sorted(set(pyproject) - set(conda))}; "
        f"only in environment.yml: {sorted(set(conda) - set(pyproject))}"
    )


def test_same_version_bounds():
    pyproject = _pyproject_requirements()
    conda, _ = _conda_pip_requirements()
    differ = {n: (pyproject[n], conda[n]) for n in pyproject if n in conda and pyproject[n] != conda[n]}
    assert not differ, f"version bounds differ (pyproject, environment.yml): {differ}"


def test_environment_installs_segkit_itself():
    _, editable = _conda_pip_requirements()
    assert editable == ["-e ."], "environment.yml's pip section must install segkit with '-e .'"


def test_parity_check_notices_drift(tmp_path, monkeypatch):
    """The comparison is not vacuous: an environment.yml that lost a package or changed a bound fails it."""
    text = (ROOT / "environment.yml").read_text()
    drifted = text.replace("      - scipy>=1.11\n", "").replace("torchvision>=0.21", "torchvision>=0.20")
    assert drifted != text
    (tmp_path / "environment.yml").write_text(drifted)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="only in pyproject.toml: \\['scipy'\\]"):
        test_same_package_names()
    with pytest.raises(AssertionError, match="torchvision"):
        test_same_version_bounds()

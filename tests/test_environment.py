"""envs/dabench.yaml (conda, for cluster users) stays in step with pyproject.toml."""
import re
import tomllib

import yaml


def _pins(requirements):
    out = {}
    for req in requirements:
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", req)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_conda_env_matches_pyproject(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"] + project["optional-dependencies"]["data"])
    env = yaml.safe_load((repo / "envs" / "dabench.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == wanted


def test_every_dependency_is_pinned(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        assert "==" in req, f"{req} is not pinned"

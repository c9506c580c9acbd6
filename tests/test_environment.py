"""envs/*.yaml (conda, for cluster users) stay in step with pyproject.toml."""
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


def test_conda_envs_match_pyproject(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    common = project["dependencies"] + extras["data"] + extras["curvature"]
    for name, wanted in (("dabench", _pins(common)),
                         ("dabench-gpu", _pins(common + extras["gpu"]))):
        env = yaml.safe_load((repo / "envs" / f"{name}.yaml").read_text())
        pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        assert _pins(pip_section) == wanted, name
        # Snakemake copies env files elsewhere: a relative path (-e .., ./x) would break.
        assert not [p for p in pip_section if p.startswith(("-e", ".", "/"))], name


def test_gpu_rules_use_the_gpu_env(repo):
    from dabench.resources import GPU_RULES

    text = "\n".join(p.read_text() for p in (repo / "rules").glob("*.smk"))
    for rule in GPU_RULES - {"featurize_train_shard"}:
        m = re.search(rf"rule {rule}:(.*?)(?:\n\n\n|\Z)", text, re.S)
        if m:                          # use-rule variants inherit their rule's env
            assert "CONDA_GPU_ENV" in m.group(1), rule


def test_every_dependency_is_pinned(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        assert "==" in req, f"{req} is not pinned"

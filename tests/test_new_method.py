"""Adding a method is one new file plus naming it in a config: in a copy of the project, a new
method module and a config that names it — nothing else touched — and a real Snakemake run puts
the method in the LDS table, the cost table and the LDS figure."""
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.workflow
REPO = Path(__file__).resolve().parent.parent

METHOD = '''\
"""Negative L1 distance of pixels: closer training images score higher."""
import numpy as np

from dabench import layout
from dabench.io import load_npz
from dabench.methods.base import AttributionMethod


class PixelL1(AttributionMethod):
    name = "pixel-l1"
    label = "Pixel L1"
    family = "distance"
    family_label = "distance-based"
    colour = "#e377c2"
    defaults = {"scale": 1.0}

    def inputs(self, query_set):
        return {"train": layout.TRAIN_DATA, "queries": layout.query_file(query_set)}

    def score(self, inputs, query_set):
        train = load_npz(inputs["train"])["train_images"]
        queries = load_npz(inputs["queries"])["images"]
        t, q = train.reshape(len(train), -1), queries.reshape(len(queries), -1)
        return (-self.params["scale"] * np.abs(q[:, None] - t[None]).sum(-1)).astype(np.float32)
'''


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def _copy_project(dest: Path) -> None:
    """The project's files (tracked and untracked, not ignored), as a fresh clone has them."""
    files = _git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if not src.exists() and not src.is_symlink():
            continue                     # deleted in the working tree, not yet committed
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(src.readlink())
        else:
            shutil.copy2(src, target)


def test_a_method_is_one_file_and_a_config_entry(tmp_path):
    project = tmp_path / "project"
    _copy_project(project)
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    _git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy")

    (project / "dabench" / "methods" / "pixel_l1.py").write_text(METHOD)
    cfg = yaml.safe_load((REPO / "configs" / "ci.yaml").read_text())
    cfg["name"] = "newmethod"
    cfg["methods"] = {"pixel-l1": {"method": "pixel-l1"},
                      "pixel": {"method": "pixel", "similarity": "cosine"}}
    for section in ("counterfactual", "journey_counterfactual", "checkpoint_selection", "retrac",
                    "ablations", "shapley"):
        cfg[section] = {"enabled": False}
    cfg.pop("companion")                   # the latent companion adds nothing to this question
    (project / "configs" / "newmethod.yaml").write_text(yaml.safe_dump(cfg))

    changed = sorted(line[3:] for line in _git(project, "status", "--porcelain",
                                               "--untracked-files=all").splitlines())
    assert changed == ["configs/newmethod.yaml", "dabench/methods/pixel_l1.py"]

    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile",
                           "configs/newmethod.yaml"], cwd=project, capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = project / "results" / "newmethod"

    lds = pd.read_csv(run / "tables" / "lds.csv")
    mine = lds[lds["method_id"] == "pixel-l1"]
    assert set(mine["query_set"]) == {"validation", "generation"}
    assert (mine["method"] == "Pixel L1").all() and (mine["family"] == "distance").all()
    assert mine["lds"].between(-100, 100).all()
    cost = pd.read_csv(run / "tables" / "cost.csv")
    row = cost[cost["method_id"] == "pixel-l1"]
    assert len(row) == 1 and row["scoring_s"].iloc[0] > 0
    assert {"lds_validation", "lds_generation"} <= set(row.columns)
    # The LDS figure has the method's row (its display name in the vector PDF's text).
    pdf = (run / "figures" / "lds.pdf").read_bytes()
    assert (run / "figures" / "lds.png").stat().st_size > 0
    assert _pdf_has_text(pdf, "Pixel L1")
    # Still nothing else of the project changed (outputs are under ignored folders).
    changed = sorted(line[3:] for line in _git(project, "status", "--porcelain",
                                               "--untracked-files=all").splitlines())
    assert changed == ["configs/newmethod.yaml", "dabench/methods/pixel_l1.py"]


def _pdf_has_text(pdf: bytes, text: str) -> bool:
    """Whether the PDF's extracted text contains ``text``."""
    import io

    from pypdf import PdfReader

    return any(text in page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)

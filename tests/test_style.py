"""Guard rails on the workflow's own files: `snakefmt --check` (the layout and Python of the
Snakefile and rules, at the project's line length) and `snakemake --lint` (Snakemake's own
best-practice checks)."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_snakefmt_leaves_the_workflow_unchanged():
    proc = subprocess.run([str(BIN / "snakefmt"), "--check", "--diff", "Snakefile", "rules/"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def test_snakemake_lint_is_clean(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--snakefile",
                           str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
                           str(REPO / "configs/ci.yaml")], capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "Lints for" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-4000:]

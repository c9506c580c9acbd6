"""Warm starts (dabench/warm.py): local jobs fork from a server that has imported torch.

A tiny Snakefile with real ``script:`` jobs checks the mechanism: a job runs in a fork (torch is
already imported when its script starts), off with DABENCH_WARM=0, a failing job fails with its
own error, a cancelled job's fork ends. Then the real workflow's first stages, run warm and
cold, must write the same bytes.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import snakemake

REPO = Path(__file__).resolve().parent.parent

SNAKEFILE = """
onstart:
    from dabench import warm
    warm.start()

onsuccess:
    from dabench import warm
    warm.stop()

onerror:
    from dabench import warm
    warm.stop()

rule all:
    input: "where.txt"

rule where:
    output: "where.txt"
    log: "logs/where.log"
    script: "where.py"

rule fails:
    output: "never.txt"
    log: "logs/fails.log"
    script: "fails.py"

rule sleeps:
    output: "late.txt"
    log: "logs/sleeps.log"
    script: "sleeps.py"
"""

# Whether torch was imported before the script's first line ran: only in a fork of the server.
WHERE = """import sys
preloaded = "torch" in sys.modules
from dabench.runtime import job

with job(snakemake) as smk:
    import os

    with open(smk.output[0], "w") as f:
        f.write(f"{preloaded} {os.environ.get('DABENCH_WARM_CHILD', '-')} {os.getcwd()}")
"""
FAILS = """from dabench.runtime import job

with job(snakemake) as smk:
    raise ValueError("the value 42 is wrong")
"""
SLEEPS = """from dabench.runtime import job

with job(snakemake) as smk:
    import os
    import time

    with open("sleeper.pid", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)
"""


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "where.py").write_text(WHERE)
    (tmp_path / "fails.py").write_text(FAILS)
    (tmp_path / "sleeps.py").write_text(SLEEPS)
    return tmp_path


def _run(folder, *targets, env=None, **kw):
    env = {**os.environ, **(env or {})}
    env.pop("DABENCH_WARM", None) if env.get("DABENCH_WARM") != "0" else None
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *targets],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=900, **kw)


def test_a_job_runs_in_a_fork_of_the_warm_server_and_cold_when_turned_off(tiny):
    run = _run(tiny)
    assert run.returncode == 0, run.stderr[-3000:]
    _, child, cwd = (tiny / "where.txt").read_text().split(" ", 2)
    # Ran in a fork (torch may not be loaded yet: the server forks jobs that come while it
    # imports, so on a busy machine the first job can arrive before torch is in).
    assert child == "1"
    assert Path(cwd) == tiny                      # the fork works in the job's folder
    log = (tiny / "logs/where.log").read_text()            # its log, as a cold job's
    assert "finished in" in log and "(warm start, peak RSS" in log

    (tiny / "where.txt").unlink()
    run = _run(tiny, env={"DABENCH_WARM": "0"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tiny / "where.txt").read_text().split(" ")[:2] == ["False", "-"]


def test_a_failing_warm_job_fails_with_its_own_error(tiny):
    run = _run(tiny, "never.txt")
    assert run.returncode != 0
    assert "the value 42 is wrong" in (tiny / "logs/fails.log").read_text()
    assert "the value 42 is wrong" in run.stdout + run.stderr
    assert not (tiny / "never.txt").exists()


def _start_sleeper(folder):
    """Snakemake running the sleeping job in its own session: (snakemake, the fork's pid)."""
    (folder / "sleeper.pid").unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", "late.txt"],
                            cwd=folder, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k != "DABENCH_WARM"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = folder / "sleeper.pid"
    deadline = time.monotonic() + 300      # a guard against a hang: the server imports first
    while not pid_file.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert pid_file.exists(), "the sleeping job never started"
    time.sleep(0.5)
    return proc, int(pid_file.read_text())


def _gone(pid, within=60.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    return False


def test_a_cancelled_warm_job_ends_its_fork(tiny):
    # Ctrl-C in a terminal: SIGINT to Snakemake and its jobs (one process group).
    proc, pid = _start_sleeper(tiny)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=300) != 0
    assert _gone(pid), "the cancelled job's fork was still running a minute later"
    assert not (tiny / "late.txt").exists()
    # The job's own process killed outright (no signal to forward): the fork notices and ends.
    proc, pid = _start_sleeper(tiny)
    clients = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
               and b"sleeps.py" in _cmdline(p) and int(p.name) != pid]
    assert clients
    for client in clients:
        os.kill(client, signal.SIGKILL)
    assert _gone(pid), "the fork outlived its job's process by a minute"
    proc.wait(timeout=300)


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.workflow
def test_warm_and_cold_jobs_write_the_same_bytes(tmp_path):
    """The full model, generated queries and one feature set of the ci config, warm and cold."""
    targets = ["results/ci/models/full/model.safetensors", "results/ci/generation/samples.npz",
               "results/ci/features/full/square_K3u_e1_sparse256/train.npy",
               "results/ci/features/full/square_K3u_e1_sparse256/validation.npy"]
    outputs = {}
    for mode in ("warm", "cold"):
        folder = tmp_path / mode
        folder.mkdir()
        old = os.environ.pop("DABENCH_WARM", None)
        if mode == "cold":
            os.environ["DABENCH_WARM"] = "0"
        try:
            run = snakemake(folder, *targets)
        finally:
            os.environ.pop("DABENCH_WARM", None)
            if old is not None:
                os.environ["DABENCH_WARM"] = old
        assert run.returncode == 0, run.stderr[-3000:]
        log = (folder / "logs/ci/train_full_model.log").read_text()
        assert "finished in" in log
        outputs[mode] = {t: (folder / t).read_bytes() for t in targets}
    for t in targets:
        assert outputs["warm"][t] == outputs["cold"][t], t

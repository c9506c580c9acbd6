"""What every workflow job does first: threads, log file, a readable error.

Scripts under ``scripts/`` call :func:`job` as a context manager::

    with job(snakemake) as smk:
        from dabench.stage import do_the_work

        do_the_work(smk.input.x, smk.output.y, **smk.params)

(the dabench import inside the block: on a machine with a warm server, :mod:`dabench.warm`, the
job forks from it first, so the script's own process imports nothing heavy).

It caps torch to the job's threads, chooses the job's device (a GPU rule — one that asked the
scheduler for a ``gpu`` — uses CUDA, and with ``device: cuda`` fails at once without it;
:mod:`dabench.device`), copies stdout/stderr into the job's log file (progress bars still reach
the terminal), and turns a dabench error into one line naming the culprit.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from pathlib import Path


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self):
        for s in self.streams:
            s.flush()

    def isatty(self):
        return self.streams[0].isatty()

    def fileno(self):
        return self.streams[0].fileno()


def set_threads(threads: int) -> None:
    """Cap the job's compute threads at its Snakemake ``threads``. Through the environment, read
    when torch is first imported, so jobs that never need torch (tables, LDS, most scores) do
    not pay ~2 s to import it."""
    from dabench.warm import THREAD_VARS

    threads = str(max(1, int(threads)))
    for var in THREAD_VARS:
        os.environ[var] = threads
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))


def wants_gpu(smk) -> bool:
    """The rule asked the scheduler for a GPU (its ``gpu`` resource)."""
    resources = getattr(smk, "resources", None)
    try:
        return int(getattr(resources, "gpu", 0) or 0) > 0
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def job(smk):
    set_threads(getattr(smk, "threads", 1) or 1)
    from dabench import warm

    status = warm.delegate()     # a fork of the warm server ran this job (dabench.warm)
    if status is not None:
        raise SystemExit(status)
    config = getattr(smk, "config", None) or {}
    log_path = Path(smk.log[0]) if len(getattr(smk, "log", [])) else None
    log = None
    old = sys.stdout, sys.stderr
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "w", buffering=1)
        sys.stdout, sys.stderr = _Tee(old[0], log), _Tee(old[1], log)
    tic = time.perf_counter()
    try:
        from dabench import device

        gpu = wants_gpu(smk)
        if gpu:
            device.select(config.get("device", "auto"), True, smk.rule, config.get("memory"))
        else:
            device.set_memory(config.get("memory"))
            device.use_cpu()
        yield smk
        print(f"[dabench] {smk.rule} finished in {time.perf_counter() - tic:.1f}s"
              f"{warm.note()}", flush=True)
    except Exception as exc:
        from dabench.config import ConfigError
        from dabench.data import DataError
        from dabench.device import DeviceError
        from dabench.io import CorruptFileError

        if isinstance(exc, (ConfigError, DataError, CorruptFileError, DeviceError,
                            FileNotFoundError)):
            print(f"\n[dabench] error in rule {smk.rule}: {exc}\n", file=sys.stderr, flush=True)
        else:
            traceback.print_exc()
        raise SystemExit(1) from None
    finally:
        sys.stdout, sys.stderr = old
        if log is not None:
            log.close()

"""Warm starts: on one machine, jobs fork from an interpreter that has already imported torch.

Every Snakemake ``script:`` job is a fresh Python process, and most of a small job's time is
imports: torch takes ~2 s, diffusers' UNets another ~6 s (peft, transformers and torch._dynamo
come with them). The ci run has ~240 jobs; paid once each, the imports alone took longer than the
whole budget of the run. A *warm server* pays them once per run:

* The Snakefile's ``onstart`` (main process, local execution only: never under SLURM or another
  executor, whose jobs must run inside their own allocation) calls :func:`start`. It starts
  ``python -m dabench.warm SOCKET`` — single-threaded, thread variables at 1, so that forking it
  is safe — which imports :data:`PRELOAD` and accepts connections on a Unix socket in a private
  (0700) temporary folder. The socket's path goes to the jobs in ``$DABENCH_WARM``.
* A job's :func:`dabench.runtime.job` calls :func:`delegate` first. With a server up, it sends
  its script path, arguments, working directory, environment and its stdin/stdout/stderr (the
  file descriptors themselves) and waits. The server forks; the child takes over the job's
  descriptors, folder and environment and runs the same script file (its Snakemake preamble
  included) as ``__main__``; its exit status becomes the job's. Without a server, or when the
  connection fails, the job simply runs in its own process (a *cold* start).
* The child is the job: the same code, inputs, seeds and thread count (torch's and the BLAS
  pools', set from the job's ``threads``), so its outputs are the same bytes as a cold run's (a
  test compares them). A job that Snakemake cancels is cancelled: the waiting process forwards
  SIGTERM/SIGINT to the child, and the child ends itself when the waiting process is gone.
* The server stops with the Snakemake process that started it (``onsuccess``/``onerror``, or
  on noticing its parent gone).

What differs: Snakemake's ``benchmark:`` files measure the waiting process, not the child, so
their memory columns are meaningless for warm jobs (wall time is right). Measurements of memory
(``make smoke``, the paper-smoke test) run cold: ``DABENCH_WARM=0`` turns warm starts off for a
run.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What the server imports before it forks: what the heavy jobs import first.
PRELOAD = (
    "numpy", "scipy.stats", "scipy.optimize", "pandas", "sklearn.cluster", "sklearn.linear_model",
    "matplotlib.pyplot", "yaml", "torch", "diffusers", "diffusers.models.unets.unet_2d",
    "diffusers.models.unets.unet_2d_condition", "diffusers.models.autoencoders",
    "diffusers.schedulers", "peft", "transformers.models.clip", "snakemake.script",
    "dabench.training", "dabench.sampling", "dabench.features", "dabench.gradients",
    "dabench.lds", "dabench.methods", "dabench.shapley", "dabench.embedding",
    "dabench.counterfactual", "dabench.tables", "dabench.figures",
)
ENV = "DABENCH_WARM"          # the socket's path; "0" turns warm starts off
CHILD = "DABENCH_WARM_CHILD"  # set in a forked job: it must not delegate again
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # read at import
_HEADER = struct.Struct("!Q")
_STATUS = struct.Struct("!i")


# --------------------------------------------------------------------------- the job's side

def delegate() -> int | None:
    """Run this script job in a fork of the warm server: its exit status, or None to run it here
    (no server, warm starts off, or this process already is the fork)."""
    address = os.environ.get(ENV, "")
    if address in ("", "0") or os.environ.get(CHILD) or not os.path.exists(address):
        return None
    if not hasattr(sys.modules.get("__main__"), "snakemake"):
        return None       # not a Snakemake script job (its preamble defines ``snakemake``)
    script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not os.path.isfile(script):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address)
        request = pickle.dumps({"script": script, "argv": list(sys.argv), "cwd": os.getcwd(),
                                "env": {**os.environ, CHILD: "1"}})
        socket.send_fds(conn, [_HEADER.pack(len(request))], [0, 1, 2])
        conn.sendall(request)
        pid = _STATUS.unpack(_recv_exactly(conn, _STATUS.size))[0]
    except OSError:
        conn.close()
        return None       # nothing has run yet: a cold start is safe
    _forward_signals(pid)
    try:
        return _STATUS.unpack(_recv_exactly(conn, _STATUS.size))[0]
    except OSError:
        print("[dabench] the warm server lost this job (its fork ended without a status)",
              file=sys.stderr, flush=True)
        return 1
    finally:
        conn.close()


def _forward_signals(pid: int) -> None:
    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def note() -> str:
    """For a job's last log line: that it ran warm, and its peak memory (which its benchmark
    file cannot see). The peak counts what the server had imported, a cold job's may be less."""
    if not os.environ.get(CHILD):
        return ""
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return f" (warm start, peak RSS {peak_mb:.0f} MB)"


# --------------------------------------------------------------------------- the server

def serve(address: str, preload=PRELOAD) -> None:
    """Accept jobs on the Unix socket ``address`` until the process that started us is gone."""
    parent = os.getppid()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    server.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # Jobs that come while the server imports are forked between two imports: the first
        # (light) jobs do not wait for diffusers; what is not loaded yet their fork imports.
        server.setblocking(False)
        for name in preload:
            _accept(server)
            try:
                __import__(name)
            except Exception as exc:  # a missing optional package: its jobs import it themselves
                print(f"[dabench.warm] not preloaded: {name} ({exc})", flush=True)
            if name == "matplotlib.pyplot":
                sys.modules["matplotlib"].use("Agg")
        server.setblocking(True)
        server.settimeout(1.0)
        while os.getppid() == parent:
            _accept(server)
    finally:
        server.close()


def _accept(server: socket.socket) -> None:
    """Fork a job for each waiting connection (or wait for one, up to the socket's timeout)."""
    _reap()
    while True:
        try:
            conn, _ = server.accept()
        except (socket.timeout, BlockingIOError):
            return
        if os.fork() == 0:
            server.close()
            _child(conn)           # never returns
        conn.close()
        if server.gettimeout() != 0.0:
            return


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(conn: socket.socket) -> None:
    status = 1
    try:
        conn.settimeout(None)
        header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        request = pickle.loads(_recv_exactly(conn, _HEADER.unpack(header)[0]))
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = request["argv"]
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        conn.sendall(_STATUS.pack(os.getpid()))
        _end_with(conn)
        status = _run(request["script"])
    except BaseException:  # noqa: BLE001 — whatever happened, the job gets a status
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            conn.sendall(_STATUS.pack(status))
        finally:
            os._exit(status)


def _end_with(conn: socket.socket) -> None:
    """End this fork when the job's own process is gone (cancelled, killed): it sends nothing
    more, so a read returns only at its end."""
    import threading

    def watch():
        try:
            conn.recv(1)
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def _run(script: str) -> int:
    import runpy

    _blas_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def _blas_threads(threads: int) -> None:
    """The job's thread count in the BLAS pools the server loaded with one thread (torch's own
    comes from :func:`dabench.runtime.set_threads`, which the job calls)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass


# --------------------------------------------------------------------------- the workflow's side

_server: subprocess.Popen | None = None
_folder: str | None = None


def start(wait: float = 10.0) -> str | None:
    """Start the warm server for this Snakemake process (its ``onstart``) and point the jobs at
    it: the socket's path, or None when ``$DABENCH_WARM`` is ``0``."""
    global _server, _folder
    if os.environ.get(ENV) == "0":
        return None
    if _server is not None and _server.poll() is None:
        return os.environ[ENV]
    _folder = tempfile.mkdtemp(prefix="dabench-warm-")    # 0700: only this user can connect
    address = os.path.join(_folder, "socket")
    env = {**os.environ, **{var: "1" for var in THREAD_VARS}}
    env.pop(ENV, None)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    _server = subprocess.Popen([sys.executable, "-m", "dabench.warm", address], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait
    while not os.path.exists(address) and time.monotonic() < deadline:
        if _server.poll() is not None:
            return None
        time.sleep(0.02)
    if not os.path.exists(address):
        stop()
        return None
    os.environ[ENV] = address
    return address


def stop() -> None:
    """Stop the server (``onsuccess``/``onerror``); jobs that come after run cold."""
    global _server, _folder
    if os.environ.get(ENV, "0") != "0":
        os.environ.pop(ENV, None)
    if _server is not None:
        _server.terminate()
        try:
            _server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _server.kill()
        _server = None
    if _folder is not None:
        import shutil

        shutil.rmtree(_folder, ignore_errors=True)
        _folder = None


if __name__ == "__main__":
    serve(sys.argv[1])

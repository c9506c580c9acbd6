"""Where a job's models run, and what is reproducible there.

The config key ``device`` says how GPU rules (training, generation, features, model outputs, the
ReTrac and Shapley stages, CLIP) treat the machine they land on:

- ``cuda``: they must find a CUDA GPU and fail at once, with the reason, when they do not — a
  paper-scale job that silently ran on the CPU of a GPU node would take days;
- ``auto``: a GPU when the job has one, else the CPU (the CPU configs: ci, default);
- ``cpu``: the CPU on purpose, and no rule asks the scheduler for a GPU.

:func:`select` is called once per job (:func:`dabench.runtime.job`) with the setting and whether
the rule asked for a GPU; every stage then takes :func:`current` (``load_model`` puts the
weights there, ``train`` hands it to accelerate). Outside a workflow job — tests, notebooks —
:func:`current` is the GPU when there is one, else the CPU.

:func:`deterministic` sets what torch offers for reproducible CUDA results (cuDNN deterministic
algorithms, no autotuning, deterministic scatter/index kernels, a fixed cuBLAS workspace); the
README says what is and is not bit-identical on a GPU.
"""

from __future__ import annotations

import os

SETTINGS = ("cuda", "auto", "cpu")
# cuBLAS reads this when it initialises: set before the first CUDA call of the process.
CUBLAS_WORKSPACE = ":4096:8"

_selected: str | None = None       # "cuda" / "cpu" once a job selected, else None


class DeviceError(RuntimeError):
    """A GPU rule found no usable GPU although the config asks for one."""


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def select(setting: str, wants_gpu: bool, rule: str = "this job",
           memory_cfg: dict | None = None) -> str:
    """Decide this job's device (``"cuda"`` or ``"cpu"``) and remember it for :func:`current`.

    ``setting``: the config key ``device``; ``wants_gpu``: the rule asked the scheduler for a GPU
    (its ``gpu`` resource). Raises :class:`DeviceError` for ``cuda`` without a GPU."""
    global _selected
    set_memory(memory_cfg)
    if setting not in SETTINGS:
        raise DeviceError(f"config key device: {setting!r} is not one of {', '.join(SETTINGS)}")
    if not wants_gpu or setting == "cpu":
        _selected = "cpu"
        return _selected
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    if _cuda_available():
        _selected = "cuda"
        deterministic()
        return _selected
    if setting == "cuda":
        import torch

        raise DeviceError(
            f"rule {rule} is a GPU rule and the config says device: cuda, but this job sees no "
            f"CUDA device (torch {torch.__version__}, built with CUDA {torch.version.cuda}; "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}). Submit "
            f"it to a GPU partition (profiles/slurm), install a CUDA build of torch "
            f"(make setup GPU=1), or set device: auto / cpu to run on the CPU on purpose.")
    print(f"[dabench] {rule}: no GPU found, running on the CPU (device: auto)", flush=True)
    _selected = "cpu"
    return _selected


def use_cpu() -> None:
    """This job runs on the CPU (a rule that asked for no GPU)."""
    global _selected
    _selected = "cpu"


def current():
    """The torch device this job's models run on."""
    import torch

    if _selected is not None:
        return torch.device(_selected)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def deterministic() -> None:
    """Reproducible CUDA kernels where torch has them (warn, not fail, where it has none)."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def describe(device=None) -> dict:
    """What a sidecar records about where a result was computed."""
    import torch

    device = torch.device(device or current())
    out = {"device": device.type, "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(gpu=props.name, gpu_memory_mb=props.total_memory // 2**20,
                   sm_count=props.multi_processor_count, cuda=torch.version.cuda)
    return out


def set_memory(memory_cfg: dict | None) -> None:
    """The config's ``memory`` section (``cpu_mb``, ``gpu_mb``): working memory of this job."""
    global _memory
    _memory = {**DEFAULT_MEMORY, **{k: v for k, v in (memory_cfg or {}).items() if v}}


def memory_budget(device=None) -> int:
    """Bytes a job may spend on a batch — per-example gradients, forward passes — on ``device``
    (default: the job's): the config's ``memory.cpu_mb`` on the CPU (the rules declare their
    ``mem_mb`` from the same number), ``memory.gpu_mb`` on a GPU, at most 80% of what is free."""
    import torch

    device = torch.device(device or current())
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(min(_memory["gpu_mb"] * 2**20, 0.8 * free))
    return int(_memory["cpu_mb"] * 2**20)


# Defaults of the config section ``memory`` (the schema repeats them).
DEFAULT_MEMORY = {"cpu_mb": 2048, "gpu_mb": 16384}
_memory = dict(DEFAULT_MEMORY)

"""Base of the methods that run the diffusion model inside their scoring job.

K-FAC / EK-FAC influence fit a curvature, attribution by unlearning takes an optimiser step, DAS
weighs examples by their denoising error: all of them need the full model θ_D and the images,
not only gradient features. A subclass of :class:`ModelMethod` declares ``uses_model``, so its
scoring job is a GPU job (rule ``compute_model_scores``) sized by :meth:`model_work`, and reads
the model, the training set and the query set (:meth:`inputs`). The helpers here load them and
give every method the same fixed timesteps and noises as the gradient features of
:mod:`dabench.features` (K uniform timesteps, the split's ``feature-noise`` seeds), so a
method's gradient of x_i is the exact, unprojected gradient that TRAK's feature projects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dabench import layout
from dabench.methods.base import AttributionMethod

MODEL_METHOD_DEFAULTS = {"n_timesteps": 10, "n_noises": 1, "seed": None}


@dataclass
class Split:
    """The images a model method reads: ``images`` (N, C, H, W) as the UNet sees them (a latent
    model's latents), ``cond`` the prompts' hidden states (None: unconditional), ``name`` the
    split (which keys its noises)."""

    name: str
    images: np.ndarray
    cond: object | None

    def __len__(self) -> int:
        return len(self.images)


class ModelMethod(AttributionMethod):
    uses_model = True
    defaults = dict(MODEL_METHOD_DEFAULTS)
    abbreviations = {"n_timesteps": "K"}

    def __init__(self, **params):
        super().__init__(**params)
        for key in ("n_timesteps", "n_noises"):
            value = self.params[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")

    def bind(self, config):
        # The run's seed keys the noises (the features' own), so the same config gives the
        # same scores.
        if self.params["seed"] is None:
            self.params["seed"] = int(config["seed"])

    @property
    def n_timesteps(self) -> int:
        return self.params["n_timesteps"]

    # Parameters every table row shows; the others appear only when they differ from the default.
    shown: tuple[str, ...] = ()

    @property
    def variant(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.params.items())
                         if k in self.shown or (k not in ("seed", "lambdas", "n_timesteps")
                                                and v != self.defaults.get(k)))

    def inputs(self, query_set):
        return {"model": layout.FULL_MODEL, "train_images": layout.TRAIN_DATA,
                "query_images": layout.query_file(query_set)}

    # -- helpers ---------------------------------------------------------------------------------

    def model(self, inputs):
        """(unet, scheduler, meta) of the full model, loaded once per process."""
        import os

        from dabench.features import shared_model
        from dabench.io import checked_path
        from dabench.model import build_scheduler

        path = str(checked_path(inputs["model"]))
        unet, meta = shared_model(path, os.stat(path).st_mtime_ns)
        return unet, build_scheduler(meta["model_config"]), meta

    @staticmethod
    def split(inputs, which: str, query_set: str | None = None) -> Split:
        """The training set (``which="train"``) or the query set of ``inputs``."""
        from dabench.data import conditioning
        from dabench.io import load_npz

        arrays = load_npz(inputs["train_images" if which == "train" else "query_images"])
        name = "train" if which == "train" else query_set
        return Split(name, arrays[layout.split_key(name)], conditioning(arrays))

    def timesteps(self, scheduler) -> np.ndarray:
        """The K uniform timesteps, each repeated for its noises (the features' items)."""
        from dabench.features import feature_timesteps

        grid = feature_timesteps(self.params["n_timesteps"], "uniform",
                                 scheduler.config.num_train_timesteps)
        return np.repeat(grid, self.params["n_noises"])

    def noises(self, split: Split, idx: np.ndarray):
        """(B, K·n, C, H, W) fixed noises of examples ``idx``: the gradient features' own."""
        from dabench.features import example_noises
        from dabench.seeds import derive_seed

        per = self.params["n_timesteps"] * self.params["n_noises"]
        return example_noises(derive_seed(self.params["seed"], "feature-noise", split.name), idx,
                              per, tuple(split.images.shape[1:]))

    def gradient_batches(self, unet, scheduler, split: Split, function: str = "loss",
                         normalize: bool = False, progress: str | None = None):
        """Yield (example indices, gradient blocks) of (1/J)Σ_j ∇F over the J = K·n items of
        every example, in batches planned for the job's memory budget. Blocks: one (B, p_i)
        tensor per trainable parameter (:func:`dabench.gradients.trainable` order)."""
        import torch

        from dabench import device as D
        from dabench.gradients import example_gradients, n_params, plan_gradients
        from dabench.profile import module_profile

        device = next(unet.parameters()).device
        t = torch.as_tensor(self.timesteps(scheduler), device=device)
        plan = plan_gradients(n_params(unet), module_profile(unet)["activation_bytes"], len(t),
                              normalize, D.memory_budget(device), n_examples=max(len(split), 1),
                              device=device.type)
        bar = progress_bar(len(split), progress)
        for start in range(0, len(split), plan.batch):
            idx = np.arange(start, min(len(split), start + plan.batch))
            x0 = torch.as_tensor(split.images[idx], device=device)
            c = None if split.cond is None else split.cond[idx].to(device)
            yield idx, example_gradients(unet, scheduler, x0, t, self.noises(split, idx).to(device),
                                         function, normalize=normalize, plan=plan, cond=c)
            bar.update(len(idx))
        bar.close()

    def losses(self, unet, scheduler, split: Split):
        """(N, K·n) float64: the denoising MSE ‖ε − ε_θ(x_t, t)‖² ⁄ d of every example at each
        of its fixed items (no gradients), in forward batches that fill the job's memory."""
        import torch

        from dabench.model import output_batch_size, per_example_loss

        device = next(unet.parameters()).device
        t_all = torch.as_tensor(self.timesteps(scheduler), device=device)
        out = np.empty((len(split), len(t_all)))
        batch = max(1, output_batch_size(unet) // len(t_all))        # examples: K·n items each
        with torch.no_grad():
            for start in range(0, len(split), batch):
                idx = np.arange(start, min(len(split), start + batch))
                x0 = torch.as_tensor(split.images[idx], device=device)
                noise = self.noises(split, idx).to(device)
                b, j = noise.shape[:2]
                xs = x0.unsqueeze(1).expand(b, j, *x0.shape[1:]).reshape(b * j, *x0.shape[1:])
                ts = t_all.repeat(b)
                eps = noise.reshape(b * j, *noise.shape[2:])
                c = None if split.cond is None else split.cond[idx].to(device).repeat_interleave(j, 0)
                loss = per_example_loss(unet, scheduler, xs, ts, eps, c)
                out[idx] = loss.reshape(b, j).double().cpu().numpy()
        return out

    def model_work(self, n_train, n_queries, sizes, config):
        items = self.params["n_timesteps"] * self.params["n_noises"]
        return [("gradients", n_train + sum(n_queries), items)]


def progress_bar(total: int, desc: str | None, unit: str = "ex"):
    """A job's progress bar (none without ``desc``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc or "", unit=unit, mininterval=2.0, leave=False,
                disable=desc is None)

"""The interface every attribution method implements, and the registry it joins by being defined.

A method is a subclass of :class:`AttributionMethod` with a ``name`` (its registry key and the
``method:`` of a config entry), a display ``label``, a ``family`` (table grouping and figure
colour), ``defaults`` (its parameters), :meth:`inputs` (the run artefacts it reads, as paths
relative to the run folder, from :mod:`dabench.layout`) and :meth:`score`. Defining the class
registers it: a module under ``dabench/methods/`` is imported with the package, so adding a
method is one new file plus naming it in a config.

What the workflow needs to know about a method is declared here, never guessed from its
parameters:

- ``tunes_lambda``: it picks λ from its ``lambdas`` by LDS on the tune subsets (the λ table reads
  its score sidecars);
- ``has_self_influence`` / :meth:`self_inputs` / :meth:`self_influence`: it defines τ(x_i, x_i);
- ``uses_checkpoints``: it sums over training checkpoints (``checkpoints`` parameter);
- :attr:`n_models` and ``single``: how many retrained models it uses and, for an ensemble, the
  single-model method it averages (the retraining table's rows and reference rows);
- ``query_sets``: the query sets it attributes (None: all);
- ``uses_model`` / :meth:`model_work`: it runs the diffusion model inside its scoring job
  (curvature, gradients, an unlearning step): the job goes to a GPU, sized by the work declared;
- ``family``, ``family_label``, ``colour``: a new family declares its label and colour once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Family:
    label: str
    colour: str


# Every row family of the tables and figures, in legend order. ``reference`` (the LDS ceiling,
# the random control) and ``shapley`` (group Shapley values) are rows that are not methods.
FAMILIES: dict[str, Family] = {
    "reference": Family("reference", "#4d4d4d"),
    "similarity": Family("similarity-based", "#8c8c8c"),
    "gradient": Family("gradient (no kernel)", "#1f77b4"),
    "trak": Family("TRAK family (kernel)", "#d62728"),
    "influence": Family("normalised influence", "#ff7f0e"),
    "tracin": Family("checkpoint-based (TracIn)", "#2ca02c"),
    "retraining": Family("retraining-based", "#9467bd"),
    "shapley": Family("group Shapley", "#8c564b"),
}
FALLBACK_COLOUR = "#17becf"

# name -> class of every registered method, filled by AttributionMethod.__init_subclass__.
REGISTRY: dict[str, type[AttributionMethod]] = {}


def family_style(family: str) -> Family:
    """Label and colour of a row family (an undeclared one: its name, the fallback colour)."""
    return FAMILIES.get(family, Family(family, FALLBACK_COLOUR))


class AttributionMethod(ABC):
    name: str = ""
    label: str = ""
    family: str = ""
    # A family not in FAMILIES may declare its legend label and colour here.
    family_label: str | None = None
    colour: str | None = None
    defaults: dict = {}
    # Prefixes of parameter values in the ids of swept methods (``d-trak-K100``).
    abbreviations: dict = {}
    # The query sets the method defines scores for (None: every one). Journey-TRAK needs a
    # sampling trajectory, so it attributes generated queries only.
    query_sets: tuple[str, ...] | None = None
    tunes_lambda: bool = False
    has_self_influence: bool = False
    uses_checkpoints: bool = False
    # It loads the full model in its scoring job (a GPU job at paper scale): model_work sizes it.
    uses_model: bool = False
    # An ensemble's single-model method (its reference row in the retraining table).
    single: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__ or not cls.name:
            return                      # a base class of a kind of method, not a method
        other = REGISTRY.get(cls.name)
        if other is not None and (other.__module__, other.__qualname__) != (cls.__module__,
                                                                            cls.__qualname__):
            raise TypeError(f"method name {cls.name!r} of {cls.__module__}.{cls.__qualname__} is "
                            f"already registered by {other.__module__}.{other.__qualname__}")
        if cls.family and cls.family not in FAMILIES and (cls.family_label or cls.colour):
            FAMILIES[cls.family] = Family(cls.family_label or cls.family,
                                          cls.colour or FALLBACK_COLOUR)
        REGISTRY[cls.name] = cls

    def __init__(self, **params):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise KeyError(f"method {self.name!r} has no parameter {', '.join(map(repr, unknown))}"
                           f" (parameters: {', '.join(sorted(self.defaults)) or 'none'})")
        self.params = {**self.defaults, **params}

    @property
    def variant(self) -> str:
        """A short description of the parameters that distinguish rows of one method in tables."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))

    @property
    def n_timesteps(self) -> int | None:
        """Timesteps K of its gradient features (the tables' "K="; None: no such parameter)."""
        return None

    @property
    def n_models(self) -> int | None:
        """Retrained models the method reads (None: it needs only the full model)."""
        return self.params.get("n_models")

    def bind(self, config: dict) -> None:
        """Fill the parameters that come from the run's config (checkpoints, embedder, …) and
        check them against it; raise ValueError naming what is wrong."""

    def covers(self, query_set: str) -> bool:
        return self.query_sets is None or query_set in self.query_sets

    @abstractmethod
    def inputs(self, query_set: str) -> dict[str, str]:
        """name -> path (relative to the run folder) of each artefact :meth:`score` reads."""

    @abstractmethod
    def score(self, inputs: dict[str, Path], query_set: str) -> np.ndarray:
        """Attribution scores, (Q, N) float32: queries × training examples, positive = the
        training example helps (lowers the query's loss)."""

    def self_inputs(self) -> dict[str, str]:
        """As :meth:`inputs`, for :meth:`self_influence` (methods with ``has_self_influence``)."""
        raise ValueError(f"{self.name} defines no self-influence")

    def self_influence(self, inputs: dict[str, Path]) -> np.ndarray:
        """τ(x_i, x_i) of every training example, (N,) float32."""
        raise ValueError(f"{self.name} defines no self-influence")

    def cost(self, n_train: int, n_queries: int, sizes, config: dict) -> tuple[float, float]:
        """(peak bytes, CPU FLOPs) of scoring ``n_queries`` queries against ``n_train`` training
        examples — what :mod:`dabench.resources` declares for the job. ``sizes``: the run's
        :class:`dabench.resources.Sizes` (``p``, ``image_bytes``). The default: the scores and
        a few copies of them, and the images."""
        return 3 * 8 * n_queries * n_train + 2 * (n_train + n_queries) * sizes.image_bytes \
            + (64 << 20), 4.0 * n_queries * n_train

    def model_work(self, n_train: int, n_queries: list[int], sizes, config: dict) -> list[tuple]:
        """What a ``uses_model`` method's scoring job runs on the model, for ``n_queries`` of each
        of its query sets, as building blocks :mod:`dabench.resources` sizes:
        ``("gradients", examples, items per example)``, ``("forward", samples)``,
        ``("host", bytes)`` (held beside the model)."""
        return []

    def extra_metadata(self) -> dict:
        """Anything :meth:`score` chose (e.g. λ) that belongs in the scores' sidecar."""
        return {}

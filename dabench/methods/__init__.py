"""Attribution methods and their registry.

Implementations (one module per method family):

- ``pixel``: raw-pixel similarity, dot or cosine (:mod:`dabench.methods.pixel`).
- ``gradient``, ``trak``, ``d-trak``, ``relative-if``, ``renormalized-if``: gradient-feature
  methods (:mod:`dabench.methods.kernel`).
- ``journey-trak``: TRAK along the sampling trajectory (:mod:`dabench.methods.kernel`).
- ``tracincp``, ``gas``, ``diffusion-tracin``, ``diffusion-retrac``: sums over training
  checkpoints (:mod:`dabench.methods.tracin`).
- ``embedding``: embedding similarity (:mod:`dabench.methods.embedding`).
- ``trak-ensemble``, ``d-trak-ensemble``, ``empirical-influence``, ``datamodel``: from models
  retrained on random subsets (:mod:`dabench.methods.retraining`).
- beyond the seed papers, methods that run the model in their scoring job
  (:mod:`dabench.methods.model_methods`): ``kfac``, ``ekfac`` (:mod:`dabench.methods.kfac`),
  ``das``, ``das0`` (:mod:`dabench.methods.das`), ``unlearning``
  (:mod:`dabench.methods.unlearning`), ``datainf`` (:mod:`dabench.methods.datainf`) and the
  ``loss`` self-influence reference (:mod:`dabench.methods.loss`).

Adding a method: write a subclass of :class:`AttributionMethod` in a new module of this package;
it registers itself when the package imports the module (every module here is imported), and
naming it in a config's ``methods`` puts it in every table and figure.
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil

from dabench.methods.base import REGISTRY, AttributionMethod

# Import every module of the package: defining a method class registers it.
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")


def method_class(name: str) -> type[AttributionMethod]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r} (registered: {', '.join(sorted(REGISTRY))})") from None


def build(entry: dict) -> AttributionMethod:
    """An instance from a config entry ``{"method": name, **params}``."""
    params = {k: v for k, v in entry.items() if k != "method"}
    return method_class(entry["method"])(**params)


def expand(methods: dict) -> dict:
    """Expand sweeps: a list given for a parameter whose default is a single value runs the method
    once per value (several lists: every combination). ``{"d-trak": {"method": "d-trak",
    "n_timesteps": [10, 100]}}`` gives ids ``d-trak-K10`` and ``d-trak-K100``."""
    out = {}
    for method_id, entry in methods.items():
        cls = method_class(entry.get("method", ""))
        swept = [k for k, v in entry.items()
                 if k != "method" and isinstance(v, list) and not isinstance(cls.defaults.get(k), list)]
        if not swept:
            out[method_id] = entry
            continue
        for values in itertools.product(*(entry[k] for k in swept)):
            suffix = "-".join(f"{cls.abbreviations.get(k, '')}{v}" for k, v in zip(swept, values))
            new_id = f"{method_id}-{suffix}"
            if new_id in out or new_id in methods:
                raise ValueError(f"method id {new_id} (from sweeping {method_id}) is used twice")
            out[new_id] = {**entry, **dict(zip(swept, values))}
    return out


def validate_method_config(entry: dict, config: dict | None = None) -> dict:
    """Check a config entry (unknown method or parameter, bad value) and fill its defaults; with
    the run's ``config``, also the parameters the method takes from it (:meth:`bind`: the
    checkpoint methods' ``checkpoints``, the embedding method's ``embedder``, …)."""
    method = build(entry)
    if config is not None:
        method.bind(config)
        query_sets = config["lds"]["query_sets"]
        # A method with no query sets at all defines self-influence only (the loss reference).
        if method.query_sets != () and not any(method.covers(qs) for qs in query_sets):
            raise ValueError(f"attributes only {', '.join(method.query_sets)} queries, which are "
                             f"not in lds.query_sets {query_sets}")
    return {"method": entry["method"], **method.params}


__all__ = ["AttributionMethod", "REGISTRY", "build", "compute_scores", "expand", "method_class",
           "validate_method_config"]


def compute_scores(method_id: str, entry: dict, query_set: str, inputs: dict,
                   scores_path, method: AttributionMethod | None = None) -> "np.ndarray":
    """Workflow stage: scores (Q, N) of one method on one query set, with a JSON sidecar of every
    parameter and the input paths (relative to the run folder) they came from. Pass the same
    ``method`` instance for every query set of a job: what it prepared for the training set (a
    kernel's eigendecomposition) is reused."""
    import time

    import numpy as np

    from dabench.io import save_npy

    method = method or build(entry)
    tic = time.perf_counter()
    scores = np.asarray(method.score(inputs, query_set), dtype=np.float32)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"method {method_id} produced non-finite scores on {query_set}")
    save_npy(scores_path, scores)
    _write_sidecar(scores_path, method_id, method, query_set, scores, tic, inputs)
    return scores


def _write_sidecar(scores_path, method_id, method, query_set, scores, tic, inputs) -> None:
    import os
    import time

    from dabench import layout
    from dabench.io import save_json

    rel = layout.scores(method_id, query_set) if query_set != "self" else layout.self_influence(method_id)
    run_dir = layout.run_dir_of(scores_path, rel)
    save_json(os.path.splitext(scores_path)[0] + ".json", {
        "method_id": method_id, "method": method.name, "label": method.label,
        "variant": method.variant, "params": method.params, "query_set": query_set,
        "shape": list(scores.shape), "seconds": time.perf_counter() - tic,
        "n_timesteps": method.n_timesteps, **method.extra_metadata(),
        "inputs": {k: os.path.relpath(v, run_dir) for k, v in inputs.items()},
    })


def compute_self_influence(method_id: str, entry: dict, inputs: dict, out_path) -> "np.ndarray":
    """Workflow stage: self-influence (N,) of a method that defines it, with a JSON sidecar."""
    import time

    import numpy as np

    from dabench.io import save_npy

    method = build(entry)
    tic = time.perf_counter()
    values = np.asarray(method.self_influence(inputs), dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"method {method_id} produced non-finite self-influence")
    save_npy(out_path, values)
    _write_sidecar(out_path, method_id, method, "self", values, tic, inputs)
    return values

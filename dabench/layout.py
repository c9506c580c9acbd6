"""Where each artefact of a run lives, relative to ``results/<name>/`` (docs/computation.md §9, a
contract).

The rules (via ``rules/common.smk``) and the methods ask this module for paths, so a path is
spelled in one place.
"""

from __future__ import annotations

from pathlib import Path

# The checkout: config.schema.yaml, the profile cache (.cache/), scripts/.
REPO_ROOT = Path(__file__).resolve().parent.parent

QUERY_SETS = ("validation", "generation")
SPLITS = ("train",) + QUERY_SETS

TRAIN_DATA = "data/train.npz"
VALIDATION_DATA = "data/validation.npz"
DATASET_INFO = "data/dataset.json"
FULL_MODEL = "models/full/model.safetensors"
FULL_MODEL_META = "models/full/model.json"
# Indices of D and of the validation queries in the source dataset, one per line.
TRAIN_INDEX = "subsets/train.txt"
VALIDATION_INDEX = "subsets/validation.txt"
FULL_MODEL_CHECKPOINTS = "models/full/checkpoints"
TRAINING_LOG = "models/full/training_log.npz"
GENERATION = "generation/samples.npz"
# The sampling trajectories of the generation set, (S+1, n, C, H, W) float32, memory-mapped.
TRAJECTORY = "generation/trajectory.npy"
# A latent model's base built by the workflow (a diffusers pipeline folder: vae/, text_encoder/,
# tokenizer/, unet/); at paper scale latent.base names one instead.
BASE = "base"
# The Diffusion-ReTrac outlier experiment is a run of its own inside this folder, same layout.
OUTLIER_RUN = "outliers"
LDS_TABLE = "tables/lds.csv"


def query_file(query_set: str) -> str:
    """The .npz holding ``images`` (Q, C, H, W) of a query set."""
    if query_set == "validation":
        return VALIDATION_DATA
    if query_set == "generation":
        return GENERATION
    raise ValueError(f"unknown query set {query_set!r} (known: {', '.join(QUERY_SETS)})")


def split_file(split: str) -> str:
    """The .npz holding the images of a split (the training set or a query set)."""
    return TRAIN_DATA if split == "train" else query_file(split)


def split_key(split: str) -> str:
    """The array name of the images inside :func:`split_file`."""
    return "train_images" if split == "train" else "images"


def subset_index_dir(family: str) -> str:
    """Plain-text index files of a family's LDS subsets (``subset_NNNN.txt``)."""
    return f"subsets/{family}"


def lds_subsets(family: str) -> str:
    return f"lds/{family}/subsets.npy"


def lds_outputs(family: str, query_set: str, per_seed: bool = False) -> str:
    suffix = "_outputs_per_seed.npy" if per_seed else "_outputs.npy"
    return f"lds/{family}/{query_set}{suffix}"


def lds_chunk(family: str, chunk: int | str) -> str:
    return f"lds/{family}/retrains/chunk{chunk}.npz"


def checkpoint_name(step: int) -> str:
    """The model name of a checkpoint of the full model in feature paths: ``step000500``."""
    return f"step{int(step):06d}"


def checkpoint(step: int) -> str:
    """A checkpoint of the full model (written by train_full_model into its checkpoint folder)."""
    return f"{FULL_MODEL_CHECKPOINTS}/step_{int(step):06d}.safetensors"


# The family of retrains behind the retraining-based methods and the ensembles.
DATAMODEL = "datamodel"


def member_name(j: int) -> str:
    """The model name of the datamodel family's model j (an ensemble member): ``dm0003``."""
    return f"dm{int(j):04d}"


def member_index(model: str) -> int | None:
    return int(model[2:]) if model.startswith("dm") and model[2:].isdigit() else None


def retrain_dir(family: str, chunk: int) -> str:
    """The models of one job of retrains (``lds.save_models``)."""
    return f"models/lds/{family}/chunk{chunk}"


def retrain_weights(j: int, seed: int = 0) -> str:
    """The file name of subset j's retrain (seed r) inside :func:`retrain_dir`."""
    return f"subset{int(j):04d}_seed{int(seed)}.safetensors"


def model_file(model: str, member_chunk: int | None = None) -> str:
    """The weights behind a model name: ``full`` (the final model), ``stepNNNNNN`` (a checkpoint)
    or ``dmNNNN`` (model j of the datamodel family, saved by the retrain job ``member_chunk``)."""
    if model == "full":
        return FULL_MODEL
    if model.startswith("step") and model[4:].isdigit():
        return checkpoint(int(model[4:]))
    j = member_index(model)
    if j is not None and member_chunk is not None:
        return f"{retrain_dir(DATAMODEL, member_chunk)}/{retrain_weights(j)}"
    raise ValueError(f"unknown model name {model!r} (full, stepNNNNNN or dmNNNN)")


def resolve_weights(path, model: str) -> str:
    """The weights file of model ``model`` given the rule's input: the file itself, or for a
    datamodel-family model the folder of the retrain job that saved it."""
    j = member_index(model)
    return str(path) if j is None else f"{path}/{retrain_weights(j)}"


def embeddings(kind: str, split: str) -> str:
    """Image embeddings (N, d) float32 of a split by the run's embedder (``classifier``/``clip``)."""
    return f"embeddings/{kind}/{split}.npy"


EMBEDDER_MODEL = "models/embedder/classifier.safetensors"


def features(model: str, feature_id: str, split: str) -> str:
    """Features of ``split`` (train, validation, generation) under model ``model`` (``full`` or a
    checkpoint ``stepNNNNNN``)."""
    return f"features/{model}/{feature_id}/{split}.npy"


def feature_norms(model: str, feature_id: str, split: str) -> str:
    """Exact gradient norms (before projection) of the rows of :func:`features`."""
    return f"features/{model}/{feature_id}/{split}.norms.npy"


def self_influence(method_id: str) -> str:
    """Self-influence of every training example, (N,) float32, for methods that define one."""
    return f"scores/{method_id}/self.npy"


def scores(method_id: str, query_set: str) -> str:
    return f"scores/{method_id}/{query_set}.npy"


def lds_result(method_id: str, query_set: str, family: str = "test") -> str:
    return f"evaluation/lds/{family}/{method_id}/{query_set}.json"


def artefact_kind(relative: str) -> tuple[str, str] | None:
    """What a run artefact is, from its path relative to the run folder — the inverse of the
    functions above for what cost accounting counts: ``("features", model)`` for projected
    features (not their norms), ``("retrains", family)`` for a retrain family's outputs,
    ``("embeddings", kind)``; None for anything else (data, models, subsets)."""
    parts = relative.split("/")
    if parts[0] == "features" and len(parts) == 4 and relative.endswith(".npy") \
            and not relative.endswith(".norms.npy"):
        return "features", parts[1]
    if parts[0] == "lds" and len(parts) == 3 and parts[2].endswith("_outputs.npy"):
        return "retrains", parts[1]
    if parts[0] == "embeddings" and len(parts) == 3:
        return "embeddings", parts[1]
    return None


def table(name: str, ext: str = "csv") -> str:
    """A table of the run: ``tables/<name>.csv`` (tidy data) or ``.tex`` (booktabs)."""
    return f"tables/{name}.{ext}"


def figure(name: str, ext: str = "pdf") -> str:
    """A figure of the run: ``figures/<name>.pdf`` (vector) or ``.png`` (preview)."""
    return f"figures/{name}.{ext}"


def scores_sidecar(method_id: str, query_set: str) -> str:
    """The JSON beside :func:`scores`: parameters, inputs, seconds, what the method chose."""
    return f"scores/{method_id}/{query_set}.json"


def self_influence_sidecar(method_id: str) -> str:
    return f"scores/{method_id}/self.json"


def feature_sidecar(model: str, feature_id: str, split: str) -> str:
    """The JSON beside :func:`features`: timing, projection, gradient plan."""
    return f"features/{model}/{feature_id}/{split}.json"


def feature_shard(model: str, feature_id: str, shard: int | str, suffix: str = "npy") -> str:
    """One of the training set's feature shards (``features.train_shards`` > 1): its rows
    (``npy``), their norms (``norms.npy``) or its sidecar (``json``)."""
    return f"features/{model}/{feature_id}/shards/train.{shard}.{suffix}"


def benchmark(name: str) -> str:
    """Snakemake's benchmark record of a job (wall time, memory): ``benchmarks/<name>.tsv``."""
    return f"benchmarks/{name}.tsv"


def counterfactual_result(method_id: str, query: int | str) -> str:
    q = query if isinstance(query, str) else f"{int(query):04d}"
    return f"counterfactual/{method_id}/query{q}.npz"


# The counterfactual at a sampling step (D-TRAK Appendix E): per-step Journey-TRAK scores and one
# result per (method, query, timestep).
JOURNEY_STEP_SCORES = "counterfactual/journey/step_scores.npz"


def journey_result(method_id: str, query: int | str, timestep: int | str) -> str:
    q = query if isinstance(query, str) else f"{int(query):04d}"
    t = timestep if isinstance(timestep, str) else f"{int(timestep):04d}"
    return f"counterfactual/journey/{method_id}/query{q}_t{t}.npz"


def run_dir_of(path, relative: str):
    """The run folder ``results/<name>`` of ``path``, which is ``relative`` inside it."""
    path, relative = Path(path), Path(relative)
    if path.parts[-len(relative.parts):] != relative.parts:
        raise ValueError(f"{path} does not end in {relative}")
    return path.parents[len(relative.parts) - 1]

# Group Shapley (docs/computation.md §7): coalition models are made three ways, each a folder.
SHAPLEY_WAYS = ("retrain", "finetune", "sparse")
# The group baseline that ranks groups by their own training images' quality score (no model).
TRAINING_SCORE = "training-score"
SHAPLEY_DESIGN = "shapley/design.npz"
SHAPLEY_GROUPS = "shapley/groups.json"
SHAPLEY_REFERENCE = "shapley/reference.npz"
SHAPLEY_REFERENCE_VALUES = "shapley/reference.json"   # F of the full model's samples
SHAPLEY_PRUNED = "models/shapley/pruned.safetensors"


def shapley_chunk(family: str, way: str, chunk: int) -> str:
    """Submodels of one job: ``family`` kernel (KernelSHAP) or heldout (group LDS)."""
    return f"shapley/models/{family}/{way}/chunk{chunk}.npz"


def shapley_attribution(key: str) -> str:
    """The file holding attribution ``key``: ``shapley-<way>`` or ``<method id>.<mean|max>``."""
    if key.startswith("shapley-"):
        return f"shapley/values/{key[len('shapley-'):]}.json"
    return f"shapley/baselines/{key.rsplit('.', 1)[0]}.json"


def shapley_counterfactual(key: str, part: int | str = 0) -> str:
    """One job's retrains of group counterfactual ``key`` (part ``part`` of its seeds)."""
    return f"shapley/counterfactual/{key}.part{part}.npz"

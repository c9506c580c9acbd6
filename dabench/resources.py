"""What every job of the workflow needs — memory, time, disk, a GPU — derived from the config.

One function, :func:`estimate`, turns (rule, config, wildcards) into a :class:`Need`: the work the
job does (training samples, forward passes, per-example gradient items, CPU linear algebra), its
peak host and GPU memory and what it writes. :func:`declare` turns that into the Snakemake
resources the rule asks the scheduler for (``mem_mb``, ``runtime``, ``disk_mb``, ``gpu``,
``threads``), with a margin and more memory on each retry (an OOM-killed job comes back with
1.5× its memory). ``make plan`` (:mod:`dabench.plan`) prints the same numbers per rule.

Work is counted in FLOPs of the config's own UNet at its own resolution (exact, from
:func:`dabench.profile.unet_profile`) and turned into seconds with the device rates below:
per-thread CPU rates measured on the development machines (2-core x86, torch 2.13: training
steps 112 GFLOP/s and per-example gradients 89 GFLOP/s on the 35.7M UNet on one thread, 35-64
GFLOP/s with ~20 ms per step on the small ones) and an assumed sustained GPU rate
(:data:`GPU_FLOPS`, conservative for an A100/H100 on these small-batch UNet workloads — no GPU
has run this project yet; ``scripts/gpu_check.sh`` measures it).

Why one module of ~570 lines: the rates, the per-rule estimators (:data:`ESTIMATORS`, one short
function per rule kind) and the declaration are one cost model that is read and calibrated
together; every number a rule declares can be traced inside this file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dabench.architecture import timestep_grid

MB = 2**20

# Device rates (FLOP/s) and overheads (s). CPU: per thread, conservative against the
# measurements above; GPU: one GPU.
CPU_FLOPS = 50e9
GPU_FLOPS = 10e12
OVERHEAD = {"cpu": {"step": 0.025, "call": 0.006, "param_step": 3e-8},
            "gpu": {"step": 0.010, "call": 0.003, "param_step": 2e-10}}
# How much slower than a training step's FLOPs each kind of work runs.
EFFICIENCY = {"train": 1.0, "forward": 1.0, "gradient_loop": 0.75, "gradient_vmap": 0.3,
              "linalg": 0.5}
# Resident memory of a job's Python before its work: with torch + diffusers, and without.
BASE_TORCH = 650 * MB
BASE_PLAIN = 250 * MB
# Declared = margin × estimate (+ the floor); runtimes never below the floor.
MEMORY_MARGIN, MEMORY_FLOOR = 1.3, 512 * MB
TIME_MARGIN, TIME_FLOOR_MIN = 2.0, 10
RETRY_MEMORY = 1.5


@dataclass
class Need:
    """One job's work and footprint. ``work``: (kind, FLOPs, calls) with kind one of
    :data:`EFFICIENCY`; ``steps``: optimizer steps (their per-parameter cost is extra);
    ``gpu``: the rule runs its models on a GPU when it has one."""

    gpu: bool = False
    torch: bool = True
    work: list = field(default_factory=list)
    steps: int = 0
    params: int = 0
    host_bytes: float = 0.0           # on the host wherever the work runs (data, model copy)
    work_bytes: float = 0.0           # batches, models being trained: host on a CPU
    gpu_bytes: float = 0.0            # the same on a GPU, with the model
    disk_bytes: float = 0.0
    threads: int = 1

    def seconds(self, on: str) -> float:
        """Estimated seconds on ``on`` ("cpu" or "gpu")."""
        rate = GPU_FLOPS if on == "gpu" else CPU_FLOPS * self.threads
        over = OVERHEAD[on]
        total = self.steps * (over["step"] + self.params * over["param_step"])
        for kind, flops, calls in self.work:
            # Linear algebra (kernels, projections on the host) runs on the CPU either way.
            r = CPU_FLOPS * self.threads if kind == "linalg" else rate
            total += flops / (r * EFFICIENCY[kind]) + calls * over["call"]
        return total


# ------------------------------------------------------------------------------------------------
# Sizes of a run


CHANNELS = {"digits": 1, "fashion_mnist": 1, "mnist_subset": 1, "cifar10": 3, "cifar100": 3,
            "image_folder": 3}


@dataclass
class Sizes:
    """What a run's jobs are sized by: examples, queries, image shape, the UNet's profile."""

    n_train: int
    queries: dict
    channels: int
    resolution: int
    profile: dict
    # A text-to-image model: its LoRA adapter's parameters (the only ones trained and
    # differentiated; the base's are frozen); any latent model: the pixels kept beside its
    # latents. None / 0 for a pixel model.
    trainable: int | None = None
    pixel_bytes: int = 0

    @property
    def image_bytes(self) -> int:
        return 4 * self.channels * self.resolution ** 2 + self.pixel_bytes

    @property
    def p(self) -> int:
        """Parameters that train and are differentiated."""
        return self.profile["params"] if self.trainable is None else self.trainable

    @property
    def flops(self) -> float:
        return self.profile["forward_flops"]

    @property
    def activations(self) -> float:
        return self.profile["activation_bytes"]

    @property
    def model_bytes(self) -> int:
        """The model in memory: every parameter (a latent model: the frozen base and adapter)."""
        return 4 * (self.profile["params"] + (self.trainable or 0))

    @property
    def saved_bytes(self) -> int:
        """A saved model on disk (a latent model's: its adapter; the base is stored once)."""
        return 4 * self.p

    def split(self, name: str) -> int:
        return self.n_train if name == "train" else self.queries[name]


def sizes(config: dict, outliers: bool = False) -> Sizes:
    """Sizes of the run (``outliers``: of its outlier experiment, results/<name>/outliers/)."""
    from dabench.config import outlier_data_config
    from dabench.profile import config_profile

    data = outlier_data_config(config) if outliers else config["data"]
    extra = data.get("outliers") or {}
    n_train = data["n_train"] + extra.get("n", 0)
    queries = {"validation": data["n_validation"] + (extra.get("n_validation") or 0),
               "generation": config["generation"]["n_samples"]}
    channels = CHANNELS[data["dataset"]]
    resolution = data["resolution"]
    if config["model"]["family"] == "latent" and not outliers:
        from dabench.latent import latent_unet_kwargs
        from dabench.profile import unet_profile

        kwargs, context = latent_unet_kwargs(config["latent"], resolution)
        profile = unet_profile({**kwargs, "_context_length": context})
        return Sizes(n_train, queries, kwargs["in_channels"], kwargs["sample_size"], profile,
                     trainable=config["latent"]["lora"]["rank"] * profile["lora_dims_per_rank"],
                     pixel_bytes=4 * channels * resolution ** 2)
    if config["model"]["family"] == "latent-ddpm" and not outliers:
        # The UNet of section model, trained whole on the autoencoder's latents.
        from dabench.latent import latent_shape

        lc, lres = latent_shape(config["latent"], "latent-ddpm", resolution)
        return Sizes(n_train, queries, lc, lres, config_profile(config["model"], lc, lres),
                     pixel_bytes=4 * channels * resolution ** 2)
    return Sizes(n_train, queries, channels, resolution,
                 config_profile(config["model"], channels, resolution))


# ------------------------------------------------------------------------------------------------
# Work of the building blocks


def _budget(config: dict, on: str) -> int:
    mem = config.get("memory") or {}
    return (mem.get("gpu_mb", 16384) if on == "gpu" else mem.get("cpu_mb", 2048)) * MB


def _train(need: Need, s: Sizes, steps: int, batch: int, micro: int | None = None) -> None:
    """``steps`` optimizer steps of ``batch`` examples, in passes of ``micro`` (the recipe's
    micro_batch_size: what is in memory at once)."""
    need.work.append(("train", 3 * s.flops * steps * batch, 0))
    need.steps += steps
    need.params = s.p
    # weights; gradients, two AdamW moments and the optimiser's temporaries of the trained ones;
    # activations.
    work = s.model_bytes + 5 * 4 * s.p + min(batch, micro or batch) * 0.6 * s.activations
    need.host_bytes = max(need.host_bytes, 2 * s.n_train * s.image_bytes + s.model_bytes)
    need.work_bytes = max(need.work_bytes, work)
    need.gpu_bytes = max(need.gpu_bytes, work)


def _forward(need: Need, config: dict, s: Sizes, samples: int, extra_bytes: float = 0) -> None:
    """``samples`` no-grad forward passes in batches that fill the working memory."""
    from dabench.architecture import FORWARD_FACTOR

    per = FORWARD_FACTOR * s.activations + 3 * s.image_bytes
    batch = {on: max(1, min(2048, samples, _budget(config, on) // per)) for on in ("cpu", "gpu")}
    need.work.append(("forward", s.flops * samples, math.ceil(samples / batch["cpu"])))
    need.host_bytes = max(need.host_bytes, s.model_bytes + extra_bytes)
    need.work_bytes = max(need.work_bytes, s.model_bytes + batch["cpu"] * per)
    need.gpu_bytes = max(need.gpu_bytes, s.model_bytes + batch["gpu"] * per)


def _gradients(need: Need, config: dict, s: Sizes, examples: int, items: int, normalize: bool,
               projection: tuple = ("sparse", 0), extra_bytes: float = 0) -> None:
    """Per-example gradients of ``examples`` × ``items`` as the featurizer plans them, projected
    by ``projection`` = (name, k)."""
    from dabench.gradients import plan_gradients

    plans = {on: plan_gradients(s.p, s.activations, items, normalize, _budget(config, on),
                                n_examples=max(examples, 1), device=on)
             for on in ("cpu", "gpu")}
    cpu, gpu = plans["cpu"], plans["gpu"]
    name, k = projection
    need.work.append((f"gradient_{cpu.mode}", 3 * s.flops * examples * items,
                      math.ceil(examples / cpu.batch) * math.ceil(items / cpu.item_chunk)))
    state = _projection_state(name, s.p, k)
    need.host_bytes = max(need.host_bytes, s.model_bytes + state + extra_bytes)
    need.work_bytes = max(need.work_bytes, s.model_bytes + cpu.peak_bytes
                          + _projection_batch(name, s.p, k, cpu.batch))
    need.gpu_bytes = max(need.gpu_bytes, s.model_bytes + gpu.peak_bytes + state
                         + _projection_batch(name, s.p, k, gpu.batch))


def _projection_state(name: str, p: int, k: int) -> float:
    """What a projector keeps: the count-sketch's buckets and signs, a cached dense matrix."""
    if name == "sparse":
        return 5 * p
    if name in ("gaussian", "rademacher"):
        return 4 * p * k if 4 * p * k <= 1 << 30 else 4 * 8192 * k
    return 0


def _projection_batch(name: str, p: int, k: int, batch: int) -> float:
    """Temporaries of projecting one batch: its features, and the flat copy fast_jl needs."""
    if name in ("none", "fast_jl"):
        return 4 * batch * (p + k)
    return 8 * batch * k


# ------------------------------------------------------------------------------------------------
# Per rule


def _featurize(config, s: Sizes, wc: dict, splits: list, shard: tuple | None = None) -> Need:
    from dabench.features import FeatureSpec

    spec = FeatureSpec.parse(wc["feature_id"])
    need = Need(gpu=True)
    k = s.p if spec.projection == "none" else spec.k
    proj = (spec.projection, k)
    for split in splits:
        n = s.split(split)
        if shard is not None:
            n = math.ceil(n / shard[1])
        if spec.journey:
            steps = config["generation"]["inference_steps"]
            traj = (steps + 1) * n * s.image_bytes
            points = steps * n * s.image_bytes
            _forward(need, config, s, n * steps, extra_bytes=traj + points)
            _gradients(need, config, s, n, steps, False, proj, traj + points)
        else:
            items = 1 if spec.replay else spec.n_timesteps * spec.n_noises
            _gradients(need, config, s, n, items, spec.normalize, proj)
        need.disk_bytes += 4 * n * (k + 1)
        # The projection: ~3 ns per coordinate and example for the count-sketch; a dense one is
        # a (B, p) x (p, k) product, its matrix regenerated block by block on the CPU.
        dense = spec.projection in ("gaussian", "rademacher")
        need.work.append(("linalg", 2 * n * s.p * k if dense else 6 * n * s.p, 0))
    data = (s.n_train + sum(s.queries.values())) * s.image_bytes * 2
    need.host_bytes += data
    return need


def _method(config: dict, method_id: str):
    from dabench.lds import scored_methods
    from dabench.methods import build

    return build(scored_methods(config)[method_id])


def _scores(config, s: Sizes, wc: dict, query_sets: list, self_influence: bool = False) -> Need:
    method = _method(config, wc["method_id"])
    need = Need(gpu=False, torch=False)
    if method.uses_model:
        _model_work(need, config, s, method, [s.split(q) for q in query_sets if q != "self"])
    for qs in query_sets:
        # Self-influence pairs each training example with itself: one row of "queries".
        host, flops = method.cost(s.n_train, s.split(qs) if qs != "self" else 1, s, config)
        if method.uses_model:       # its linear algebra runs on the host beside the model
            need.host_bytes = max(need.host_bytes, host + 8 * s.n_train + s.model_bytes)
        else:
            need.work_bytes = max(need.work_bytes, host + 8 * s.n_train)
        need.work.append(("linalg", flops, 0))
    need.disk_bytes = 4 * s.n_train * sum(s.split(q) if q != "self" else 1 for q in query_sets)
    big = max((f for _, f, _ in need.work), default=0) > 1e13
    need.threads = 8 if big else 1
    return need


def _model_work(need: Need, config, s: Sizes, method, n_queries: list) -> None:
    """The model work a ``uses_model`` method declares (:meth:`AttributionMethod.model_work`)."""
    need.gpu, need.torch = True, True
    for kind, *args in method.model_work(s.n_train, n_queries, s, config):
        if kind == "gradients":
            _gradients(need, config, s, args[0], args[1], False, ("none", s.p))
        elif kind == "forward":
            _forward(need, config, s, args[0])
        elif kind == "train":
            # Forward and backward passes of ``args[0]`` samples in batches of args[1] (a
            # curvature fit; activations as in _train), beside ``args[2]`` bytes of state.
            samples, batch, state = args
            need.work.append(("train", 3 * s.flops * samples, 0))
            peak = 3 * s.model_bytes + state + batch * 0.6 * s.activations
            need.work_bytes = max(need.work_bytes, peak)
            need.gpu_bytes = max(need.gpu_bytes, peak)
        elif kind == "host":
            need.host_bytes += args[0]
        else:
            raise ValueError(f"{method.name}: unknown kind of model work {kind!r}")
    need.host_bytes += 2 * (s.n_train + max(n_queries, default=0)) * s.image_bytes


def _retrains(config, s: Sizes, recipe: dict, n_models: int, outputs: bool) -> Need:
    need = Need(gpu=True)
    for _ in range(n_models):
        _train(need, s, recipe["steps"], recipe["batch_size"], recipe.get("micro_batch_size"))
    if outputs:
        out = config["lds"]["output"]
        grid = len(timestep_grid(config["model"]["num_train_timesteps"], out["timesteps"]))
        _forward(need, config, s, n_models * sum(s.split(q) for q in config["lds"]["query_sets"])
                 * grid * out["noises"])
    return need


def _generation(need: Need, config, s: Sizes, n: int, trajectory: bool = False) -> None:
    steps = config["generation"]["inference_steps"]
    # Classifier-free guidance (a text-to-image model) runs the UNet twice a step: with and
    # without the prompt.
    guided = config["model"]["family"] == "latent" and config["latent"]["guidance"] != 1
    _forward(need, config, s, (2 if guided else 1) * n * steps, extra_bytes=2 * n * s.image_bytes)
    if s.pixel_bytes:
        _autoencoder(need, s, n)          # the samples decoded
    if trajectory:
        need.disk_bytes += (steps + 1) * n * s.image_bytes


def _autoencoder(need: Need, s: Sizes, n: int) -> None:
    """``n`` images through a latent model's autoencoder in batches of 8
    (:func:`dabench.latent.encode_images` / ``decode_latents``): a pass is counted as two no-grad
    forward passes of the UNet, in time and in memory, and the autoencoder as big as the UNet."""
    from dabench.architecture import FORWARD_FACTOR

    need.gpu = True
    need.work.append(("forward", 2 * s.flops * n, n // 8 + 1))
    need.host_bytes = max(need.host_bytes, 2 * s.model_bytes)
    need.gpu_bytes = max(need.gpu_bytes,
                         2 * s.model_bytes + 8 * 2 * FORWARD_FACTOR * s.activations)


CLIP_FLOPS, CLIP_BYTES = 4.4e9, 700 * MB        # ViT-B/32 image tower at 224 px, its weights


def estimate(rule: str, config: dict, wildcards: dict | None = None) -> Need:
    """The :class:`Need` of one job of ``rule`` (its wildcards as a dict): the estimator of the
    rule's kind (:data:`ESTIMATORS`; an outlier rule is its plain kind on the outlier data), or
    for a local rule (tables, figures, LDS) seconds in the main process."""
    wc = dict(wildcards or {})
    outliers = rule.endswith("_outliers") or rule in (
        "prepare_outlier_dataset", "train_outlier_model", "compute_outlier_scores",
        "compute_outlier_self_influence")
    s = sizes(config, outliers)
    base = rule.replace("_outliers", "").replace("_outlier", "")
    for kinds, estimator in ESTIMATORS:
        if base in kinds:
            return estimator(_Job(base, config, s, wc, outliers))
    return Need(gpu=False, torch=False, work_bytes=200 * MB)


@dataclass
class _Job:
    """What an estimator knows of one job: its rule kind, the config, the data sizes, the
    wildcards and whether it runs on the outlier experiment's data."""
    base: str
    config: dict
    s: Sizes
    wc: dict
    outliers: bool

    @property
    def query_sets(self) -> list:
        return ["validation"] if self.outliers else list(self.config["lds"]["query_sets"])


def _prepare(job: _Job) -> Need:
    s = job.s
    need = Need(gpu=False)
    # The source split decoded as float32 (CIFAR: 60 000 images) and its conversion.
    need.work_bytes = 4 * (s.n_train + sum(s.queries.values())) * s.image_bytes \
        + _source_bytes(job.config, s)
    need.disk_bytes = 2 * (s.n_train + s.queries["validation"]) * s.image_bytes
    if s.pixel_bytes:
        # A latent model's examples pass through the base's autoencoder (and text encoder).
        _autoencoder(need, s, s.n_train + s.queries["validation"])
    return need


def _build_base(job: _Job) -> Need:
    """The embedded scale's tiny base: the autoencoder's steps (counted as two UNet steps each,
    at four times the area) and the conditional UNet's (a latent DDPM's base has none), all
    parameters trained."""
    pre = job.config["latent"]["pretrain"]
    s = job.s
    whole = Sizes(pre["n"], s.queries, s.channels, s.resolution, s.profile,
                  pixel_bytes=s.pixel_bytes)
    need = Need(gpu=True)
    unet_steps = pre["train"]["steps"] if job.config["model"]["family"] == "latent" else 0
    steps = unet_steps + 8 * pre["autoencoder"]["steps"]
    _train(need, whole, steps, max(pre["train"]["batch_size"], pre["autoencoder"]["batch_size"]))
    need.work_bytes += _source_bytes({**job.config, "data": {**job.config["data"],
                                                            "dataset": pre["dataset"]}}, s)
    need.disk_bytes = 4 * whole.model_bytes
    return need


def _train_full(job: _Job) -> Need:
    from dabench import config as C

    recipe = C.training_recipe(job.config, "train")
    need = _retrains(job.config, job.s, recipe, 1, False)
    need.disk_bytes = (len(recipe["checkpoint_steps"]) + 4) * job.s.saved_bytes
    return need


def _generate(job: _Job) -> Need:
    need = Need(gpu=True)
    _generation(need, job.config, job.s, job.s.queries["generation"], trajectory=True)
    return need


def _lds_retrains(job: _Job) -> Need:
    from dabench import config as C

    config = job.config
    fam = config["lds"][job.wc.get("family", "test")]
    total = fam["n_subsets"] * fam["n_seeds"]
    per_job = config["lds"]["retrains_per_job"]
    chunk = int(job.wc.get("chunk", 0))
    n = max(1, min(per_job, total - chunk * per_job))
    need = _retrains(config, job.s, C.training_recipe(config, "lds"), n, True)
    need.disk_bytes = job.s.saved_bytes * (n * config["lds"]["save_models"] + 1)
    return need


def _features(job: _Job) -> Need:
    from dabench.layout import member_index

    base = job.base
    if base in ("featurize_replay", "featurize_train_shard"):
        splits = ["train"]
    elif base == "featurize_journey":
        splits = ["generation"]
    elif base == "featurize_queries":
        splits = job.query_sets
    else:
        splits = ["train"] + job.query_sets
    shard = None
    if base == "featurize_train_shard":
        shard = (int(job.wc.get("shard", 0)), job.config["features"]["train_shards"])
    need = _featurize(job.config, job.s, job.wc, splits, shard)
    if member_index(job.wc.get("model", "")) is not None:
        need.host_bytes += job.s.model_bytes
    return need


def _merge_shards(job: _Job) -> Need:
    from dabench.features import FeatureSpec

    s = job.s
    spec = FeatureSpec.parse(job.wc["feature_id"])
    k = s.p if spec.projection == "none" else spec.k
    shards = job.config["features"]["train_shards"]
    need = Need(gpu=False, torch=False, work_bytes=8 * k * 1024 + 8 * s.n_train)
    need.work.append(("linalg", 0, shards))
    need.disk_bytes = 4 * s.n_train * (k + 1)
    return need


def _score_job(job: _Job) -> Need:
    if job.base in ("compute_self_influence", "compute_model_self_influence"):
        sets = ["self"]
    elif job.base == "compute_generation_scores":
        sets = ["generation"]
    else:
        sets = job.query_sets
    return _scores(job.config, job.s, job.wc, sets)


def _retrac_norms(job: _Job) -> Need:
    from dabench import config as C

    config, s = job.config, job.s
    r = config["retrac"]
    method = _method(config, C.retrac_methods(config)[0])
    steps = len(method.checkpoints)
    T = config["model"]["num_train_timesteps"]
    grid = len(timestep_grid(T, r["timestep_grid"]))
    n_union = min(s.n_train, r["manipulation"]["n_queries"] * min(r["manipulation"]["n_examples"],
                                                                   s.n_train // 2))
    need = Need(gpu=True)
    curve = T if r.get("curve_timesteps") is None else min(T, r["curve_timesteps"])
    items = steps * (min(r["t_max_examples"], s.n_train) * grid + n_union) + 3 * curve
    k = method.params["k"] if method.params["projection"] != "none" else s.p
    _gradients(need, config, s, items, 1, False, (method.params["projection"], k))
    q = s.split(r["query_set"])
    need.host_bytes += 2 * n_union * 8 * k + 4 * q * s.n_train * 8 + 2 * q * k * 8 \
        + 2 * s.n_train * s.image_bytes
    return need


def _train_embedder(job: _Job) -> Need:
    s, emb = job.s, job.config["embedder"]
    need = Need(gpu=False)
    need.work.append(("train", 3 * 64 * emb["steps"] * emb["width"] ** 2 * 9 * 4
                      * s.resolution ** 2, emb["steps"]))
    need.work_bytes = 4 * (s.n_train + s.queries["validation"]) * s.image_bytes \
        + 64 * 4 * emb["width"] * s.resolution ** 2 * 12
    return need


def _embed(job: _Job) -> Need:
    config, s = job.config, job.s
    n = s.n_train + sum(s.split(q) for q in config["lds"]["query_sets"])
    need = _image_model(config, s, n, config["embedder"]["kind"] == "clip")
    need.disk_bytes = n * 4 * 512
    return need


def _training_score(job: _Job) -> Need:
    """The quality score of every training image: the trained classifier, or CLIP under the
    aesthetic predictor's head."""
    need = _image_model(job.config, job.s, job.s.n_train, bool(job.config["shapley"]["aesthetic"]))
    need.disk_bytes = 1 * MB
    return need


def _image_model(config: dict, s: Sizes, n: int, clip: bool) -> Need:
    """``n`` images through CLIP (on a GPU when there is one) or through the trained classifier."""
    if clip:
        need = Need(gpu=True)
        need.work.append(("forward", CLIP_FLOPS * n, math.ceil(n / 256)))
        need.host_bytes = CLIP_BYTES + 2 * n * s.image_bytes
        need.work_bytes = CLIP_BYTES + 256 * 3 * 224 ** 2 * 4 * 20
        need.gpu_bytes = need.work_bytes
    else:
        need = Need(gpu=False)
        need.work.append(("forward", n * 64 * config["embedder"]["width"] ** 2 * 9 * 4
                          * s.resolution ** 2, math.ceil(n / 256)))
        need.work_bytes = 2 * n * s.image_bytes + 256 * 4 * config["embedder"]["width"] \
            * s.resolution ** 2 * 12
    return need


def _counterfactual(job: _Job) -> Need:
    from dabench import config as C

    need = _retrains(job.config, job.s, C.training_recipe(job.config, "train"), 1, False)
    _generation(need, job.config, job.s, 1)
    need.disk_bytes = job.s.saved_bytes * 4
    return need


def _journey(job: _Job) -> Need:
    """The counterfactual at a sampling step: a retrain + one resumed sampling
    (journey_step_retrain), resumed samplings only (journey_shared_regenerate), or the per-step
    Journey-TRAK scores — clean estimates along Q trajectories, Q × R gradients per timestep,
    one kernel solve (journey_step_scores)."""
    from dabench import config as C

    config, s = job.config, job.s
    cfg = config["journey_counterfactual"]
    n_t, n_q = len(cfg["timesteps"]), config["counterfactual"]["n_queries"]
    if job.base == "journey_step_retrain":
        need = _retrains(config, s, C.training_recipe(config, "train"), 1, False)
        _generation(need, config, s, 1)
        need.disk_bytes = s.saved_bytes
        return need
    need = Need(gpu=True)
    if job.base == "journey_shared_regenerate":
        _generation(need, config, s, n_t)
        return need
    _generation(need, config, s, n_q)                     # the clean estimates x̂₀ of each step
    params = config["methods"][cfg["method"]]
    _gradients(need, config, s, n_q * n_t, cfg["n_noises"], False,
               (params["projection"], params["k"]))
    k = s.p if params["projection"] == "none" else params["k"]
    m = min(s.n_train, k)
    need.host_bytes += 4 * s.n_train * k + 2 * 8 * m * m + 8 * n_t * n_q * s.n_train
    need.work.append(("linalg", 2.0 * s.n_train * k * m + 10.0 * m ** 3, 0))
    need.disk_bytes = 4 * n_t * n_q * s.n_train
    return need


def _shapley(base: str, config: dict, s: Sizes, wc: dict) -> Need:
    from dabench.shapley import recipes

    cfg = config["shapley"]
    rec = recipes(config)
    n_samples = cfg["n_samples"]
    need = Need(gpu=True)
    if base == "shapley_reference":
        _generation(need, config, s, 2 * n_samples)
    elif base == "shapley_prune":
        need = _retrains(config, s, rec["recovery"], 1, False)
    elif base == "shapley_submodels":
        way, family = wc.get("way", "retrain"), wc.get("sfamily", "kernel")
        from dabench.shapley import n_submodels, per_job as per_job_of

        total = n_submodels(cfg, family, way)
        per_job = per_job_of(cfg, way)
        n = max(1, min(per_job, total - int(wc.get("chunk", 0)) * per_job))
        need = _retrains(config, s, rec[way], n, False)
        _generation(need, config, s, n * n_samples)
    else:
        from dabench.shapley import counterfactual_parts

        parts = counterfactual_parts(cfg)
        seeds = len(parts[min(int(wc.get("cf_part", 0)), len(parts) - 1)])
        need = _retrains(config, s, rec["retrain"], seeds, False)
        _generation(need, config, s, seeds * n_samples)
    need.host_bytes += 3 * n_samples * s.image_bytes + 200 * MB     # samples, property model
    need.disk_bytes += s.saved_bytes
    return need


# Rule kinds -> the estimator of their jobs (rules not listed are local: seconds, no torch).
ESTIMATORS = (
    (("prepare_dataset", "prepare_outlier_dataset", "prepare"), _prepare),
    (("build_latent_base",), _build_base),
    (("train_full_model", "train_model"), _train_full),
    (("generate_samples",), _generate),
    (("train_lds_models",), _lds_retrains),
    (("featurize", "featurize_replay", "featurize_journey", "featurize_train_shard",
      "featurize_queries"), _features),
    (("merge_feature_shards",), _merge_shards),
    (("compute_scores", "compute_model_scores", "compute_generation_scores",
      "compute_self_influence", "compute_model_self_influence"), _score_job),
    (("retrac_norm_analyses",), _retrac_norms),
    (("train_embedder",), _train_embedder),
    (("embed",), _embed),
    (("shapley_training_score",), _training_score),
    (("counterfactual_retrain",), _counterfactual),
    (("journey_step_scores", "journey_step_retrain", "journey_shared_regenerate"), _journey),
    (("shapley_reference", "shapley_prune", "shapley_submodels", "shapley_counterfactual"),
     lambda job: _shapley(job.base, job.config, job.s, job.wc)),
)


# ------------------------------------------------------------------------------------------------
# What a rule declares


def runs_on(config: dict, need: Need) -> str:
    """Where the job's models are sized to run: "gpu" for a GPU rule with ``device: cuda``;
    "cpu" otherwise — ``auto`` may find no GPU, so it is sized (memory, time) for the CPU."""
    return "gpu" if need.gpu and config.get("device", "cuda") == "cuda" else "cpu"


def host_bytes(config: dict, need: Need) -> float:
    """Peak host memory: the base, what always lives on the host, and the work when it runs on
    the CPU (``device: cpu``, and ``auto``, which may find no GPU)."""
    base = BASE_TORCH if need.torch else BASE_PLAIN
    on_gpu = need.gpu and config.get("device", "cuda") == "cuda"
    return base + need.host_bytes + (0 if on_gpu else need.work_bytes)


def _source_bytes(config: dict, s: Sizes) -> float:
    """The decoded source dataset prepare_dataset draws from (float32)."""
    full = {"digits": 1797, "fashion_mnist": 70000, "mnist_subset": 5000, "cifar10": 60000,
            "cifar100": 60000}
    data = config["data"]
    native = {"digits": 8 * 8, "fashion_mnist": 28 * 28, "mnist_subset": 28 * 28,
              "cifar10": 3 * 32 * 32, "cifar100": 3 * 32 * 32}
    name = data["dataset"]
    if name in full:
        return 4 * full[name] * native[name] * 2
    # image_folder: only the drawn images are decoded (at most ~256 px).
    return 4 * 2 * (s.n_train + sum(s.queries.values())) * 3 * 256 ** 2


def declare(rule: str, config: dict, wildcards: dict | None = None, attempt: int = 1) -> dict:
    """Snakemake resources of one job: ``mem_mb``, ``runtime`` (minutes), ``disk_mb``, ``gpu``."""
    need = estimate(rule, config, wildcards)
    need.gpu = is_gpu_rule(rule, config)
    on = runs_on(config, need)
    mem = MEMORY_MARGIN * host_bytes(config, need) + MEMORY_FLOOR
    minutes = TIME_MARGIN * need.seconds("cpu" if on == "cpu" else "gpu") / 60 + 2
    return {"mem_mb": int(math.ceil(mem / MB * RETRY_MEMORY ** (attempt - 1))),
            "runtime": int(math.ceil(max(TIME_FLOOR_MIN, minutes) * attempt)),
            "disk_mb": int(math.ceil(need.disk_bytes / MB)) + 100,
            "gpu": int(on == "gpu")}


# The rules whose models run on a GPU when there is one (embed: when the embedder is CLIP).
GPU_RULES = {"build_latent_base", "train_full_model", "generate_samples", "train_lds_models", "featurize",
             "featurize_replay", "featurize_journey", "featurize_train_shard",
             "retrac_norm_analyses", "compute_model_scores", "compute_model_self_influence",
             "compute_model_self_influence_outliers", "train_outlier_model", "featurize_outliers",
             "featurize_replay_outliers", "counterfactual_retrain", "journey_step_scores",
             "journey_step_retrain", "journey_shared_regenerate", "shapley_reference",
             "shapley_prune", "shapley_submodels", "shapley_counterfactual"}


def is_gpu_rule(rule: str, config: dict) -> bool:
    if rule == "embed":
        return config["embedder"]["kind"] == "clip"
    if rule == "shapley_training_score":
        return bool(config["shapley"]["aesthetic"])
    if rule == "prepare_dataset":         # a latent model's: the base encodes the examples
        return config["model"]["family"] in ("latent", "latent-ddpm")
    return rule in GPU_RULES


def rule_resources(rule: str, config: dict) -> dict:
    """The ``resources:`` of a rule: ``gpu`` (1 for a GPU rule unless ``device: cpu``) and
    ``mem_mb`` / ``runtime`` / ``disk_mb`` as Snakemake callables of (wildcards, attempt)."""

    def field_of(name):
        return lambda wildcards, attempt: declare(rule, config, dict(wildcards), attempt)[name]

    gpu = int(is_gpu_rule(rule, config) and config.get("device", "cuda") != "cpu")
    return {"gpu": gpu, **{name: field_of(name) for name in ("mem_mb", "runtime", "disk_mb")}}


def rule_threads(rule: str, config: dict):
    """``threads:`` of a rule as a callable of the wildcards (more for big linear algebra)."""
    return lambda wildcards: estimate(rule, config, dict(wildcards)).threads

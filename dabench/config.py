"""Configuration: validation against ``config.schema.yaml``, defaults, and the cross-checks of
method entries against the method registry (so it sits above :mod:`dabench.methods`; seeds are
:mod:`dabench.seeds`).

The schema is the parameter documentation: every key has a ``description`` and a ``default``.
:func:`validate` fills defaults in place and raises :class:`ConfigError` naming the offending key
(``lds.test.n_subsets``), the value and what was expected.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

from dabench.layout import REPO_ROOT, SHAPLEY_WAYS, TRAINING_SCORE

SCHEMA_PATH = REPO_ROOT / "config.schema.yaml"

RECIPE_KEYS = (
    "steps", "batch_size", "lr", "weight_decay", "warmup_steps", "grad_clip",
    "checkpoint_steps", "resume_every", "mixed_precision", "micro_batch_size", "augment",
)


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type, or an inconsistent value."""


# The embedded default config: its method list is the schema's default for ``methods`` (the list
# is written once, where a user reads it).
DEFAULT_CONFIG_PATH = REPO_ROOT / "config.yaml"


@functools.lru_cache(maxsize=1)
def _parsed_schema() -> dict:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    default = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["methods"]
    schema["properties"]["methods"]["default"] = default
    return schema


def load_schema() -> dict:
    """The config schema (a fresh copy: callers may fill it in). Parsed once per process — the
    resource estimates of every job ask for it, and YAML parsing is slow."""
    return copy.deepcopy(_parsed_schema())


def _fill_defaults(node: dict, schema: dict) -> None:
    """Insert schema defaults for missing keys, recursing into objects that have ``properties``."""
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict) and sub.get("properties"):
            _fill_defaults(node[key], sub)


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _describe(error) -> str:
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = _key_path(error)
        prefix = "" if where == "<top level>" else where + "."
        return (f"unknown config key {', '.join(prefix + e for e in extra)!s}; "
                f"allowed here: {', '.join(allowed)}")
    return f"config key {_key_path(error)}: {error.message}"


def validate(config: dict, check_methods: bool = True) -> dict:
    """Validate ``config`` in place against the schema, filling defaults; return it.

    Raises ConfigError with every problem found, each naming its key.
    """
    import jsonschema

    if not isinstance(config, dict):
        raise ConfigError(f"a config must be a mapping, got {type(config).__name__}")
    schema = load_schema()
    _fill_defaults(config, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_describe(e) for e in errors))
    _check_consistency(config)
    if check_methods:
        from dabench.methods import expand, validate_method_config

        methods = {}
        for method_id, entry in config["methods"].items():
            try:
                for new_id, new_entry in expand({method_id: entry}).items():
                    if new_id in methods:
                        raise ValueError(f"method id {new_id} is used twice")
                    methods[new_id] = validate_method_config(new_entry, config)
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"config key methods.{method_id}: {exc.args[0]}") from None
        config["methods"] = methods
        _check_retrac(config)
        counterfactual_methods(config)
        journey_counterfactual_plan(config)
        shapley_plan(config)
        proponent_methods(config)
    # Key order carries no meaning; making it canonical keeps Snakemake's params comparison from
    # rerunning jobs when a config file lists the same keys in another order.
    _sort_keys(config)
    return config


def _sort_keys(node):
    if isinstance(node, dict):
        items = sorted(node.items())
        node.clear()
        node.update((k, _sort_keys(v)) for k, v in items)
    elif isinstance(node, list):
        node[:] = [_sort_keys(v) for v in node]
    return node


def _check_consistency(config: dict) -> None:
    problems = []
    model = config["model"]
    if model["beta_end"] <= model["beta_start"]:
        problems.append("model.beta_end must be larger than model.beta_start")
    if is_latent(config):
        pre = config["latent"]["pretrain"]
        # A text-to-image model's UNet is the base's; a latent DDPM's is section model's.
        parts = ("unet", "autoencoder") if is_text_to_image(config) else ("autoencoder",)
        if is_text_to_image(config):
            model = pre["unet"]
        for part in parts:
            for ch in pre[part]["block_out_channels"]:
                if ch % pre[part]["norm_num_groups"]:
                    problems.append(f"latent.pretrain.{part}.norm_num_groups="
                                    f"{pre[part]['norm_num_groups']} does not divide "
                                    f"block_out_channels entry {ch}")
    n_levels = len(model["block_out_channels"])
    prefix = "latent.pretrain.unet" if is_text_to_image(config) else "model"
    for key in ("down_block_types", "up_block_types"):
        if len(model[key]) != n_levels:
            problems.append(f"{prefix}.{key} has {len(model[key])} entries but "
                            f"{prefix}.block_out_channels has {n_levels}")
    if not is_text_to_image(config):
        for ch in model["block_out_channels"]:
            if ch % model["norm_num_groups"]:
                problems.append(f"model.norm_num_groups={model['norm_num_groups']} does not "
                                f"divide block_out_channels entry {ch}")
    for section in ("train", "lds"):
        recipe = training_recipe(config, section)
        prefix = "train" if section == "train" else "lds.train"
        bad = [s for s in recipe["checkpoint_steps"] if s > recipe["steps"]]
        if bad:
            problems.append(f"{prefix}.checkpoint_steps {bad} exceed {prefix}.steps="
                            f"{recipe['steps']}")
    if config["lds"]["test"]["n_subsets"] < 3:
        problems.append("lds.test.n_subsets must be >= 3 for a rank correlation")
    subset_size = int(config["lds"]["alpha"] * train_set_size(config))
    if subset_size < 1:
        problems.append(f"lds.alpha={config['lds']['alpha']} x data.n_train="
                        f"{config['data']['n_train']} leaves empty subsets")
    if is_latent(config) and config["retrac"]["enabled"]:
        problems.append("retrac.enabled: the ReTrac analyses run on pixel models only so far "
                        f"(model.family {config['model']['family']}); set retrac.enabled: false")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _first_method(config: dict, name: str, key: str) -> str | None:
    chosen = config["retrac"][key]
    if chosen is not None:
        entry = config["methods"].get(chosen)
        if entry is None or entry["method"] != name:
            raise ConfigError(f"config key retrac.{key}: {chosen!r} is not a {name} method under "
                              f"methods (ids: {', '.join(sorted(config['methods']))})")
        return chosen
    ids = sorted(m for m, e in config["methods"].items() if e["method"] == name)
    return ids[0] if ids else None


def retrac_methods(config: dict) -> tuple[str, str] | None:
    """(Diffusion-TracIn id, Diffusion-ReTrac id) the ReTrac analyses use, or None when they
    do not run (retrac.enabled false, or the config benchmarks no such methods)."""
    if not config["retrac"]["enabled"]:
        return None
    pair = (_first_method(config, "diffusion-tracin", "tracin"),
            _first_method(config, "diffusion-retrac", "retrac"))
    return pair if None not in pair else None


def checkpoint_method_ids(config: dict) -> list[str]:
    """Ids of the methods that sum over training checkpoints (``uses_checkpoints``)."""
    from dabench.methods import method_class

    return sorted(m for m, e in config["methods"].items()
                  if method_class(e["method"]).uses_checkpoints)


def outlier_data_config(config: dict) -> dict | None:
    """The data section of the outlier experiment (data + retrac.outliers.data), validated; None
    when no separate experiment runs — the analyses are off, retrac.outliers.enabled is false, or
    the run's own data has outliers (then the run itself is the outlier experiment)."""
    import jsonschema

    if (retrac_methods(config) is None or not config["retrac"]["outliers"]["enabled"]
            or config["data"].get("outliers")):
        return None
    base = {k: v for k, v in config["data"].items() if k != "outliers"}
    data = deep_update(copy.deepcopy(base), copy.deepcopy(config["retrac"]["outliers"]["data"]))
    schema = load_schema()["properties"]["data"]
    _fill_defaults(data, schema)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(
            _describe(e).replace("config key ", "config key retrac.outliers.data.", 1)
            .replace("config key retrac.outliers.data.<top level>", "config key retrac.outliers.data")
            for e in errors))
    if not data.get("outliers"):
        raise ConfigError("config key retrac.outliers.data.outliers: the outlier experiment needs "
                          "an outlier set (dataset, classes, n)")
    return _sort_keys(data)


def counterfactual_methods(config: dict) -> list[str] | None:
    """Method ids of the counterfactual evaluation (checked against ``methods``), or None when
    it does not run."""
    cf = config["counterfactual"]
    if not cf["enabled"]:
        return None
    if "generation" not in config["lds"]["query_sets"]:
        raise ConfigError("config key counterfactual.enabled: the counterfactual evaluation "
                          "regenerates generated queries; add generation to lds.query_sets or "
                          "set counterfactual.enabled: false")
    unknown = [m for m in cf["methods"] if m not in config["methods"]]
    if unknown:
        raise ConfigError(f"config key counterfactual.methods: {', '.join(map(repr, unknown))} "
                          f"not among the method ids ({', '.join(sorted(config['methods']))})")
    if cf["n_queries"] > config["generation"]["n_samples"]:
        raise ConfigError(f"config key counterfactual.n_queries: {cf['n_queries']} exceeds "
                          f"generation.n_samples={config['generation']['n_samples']}")
    return list(cf["methods"])


def journey_counterfactual_plan(config: dict) -> dict | None:
    """The counterfactual at a sampling step (D-TRAK Appendix E), checked: ``timesteps``
    (descending), ``shared`` (the counterfactual's method ids, whose retrained models it reuses;
    the random control is added by the workflow), ``journey`` (the journey-trak method id whose
    training features and λ the per-step scores use) and ``n_noises``; None when it does not
    run — it is part of the counterfactual evaluation (it reuses its queries and retrained
    models), so it is off whenever ``counterfactual.enabled`` is."""
    cfg = config["journey_counterfactual"]
    if not cfg["enabled"] or not config["counterfactual"]["enabled"]:
        return None
    journey = cfg["method"]
    entry = config["methods"].get(journey)
    if entry is None or entry["method"] != "journey-trak":
        ids = sorted(m for m, e in config["methods"].items() if e["method"] == "journey-trak")
        raise ConfigError(f"config key journey_counterfactual.method: {journey!r} is not a "
                          f"journey-trak method under methods (journey-trak ids: "
                          f"{', '.join(ids) or 'none'})")
    t_max = config["model"]["num_train_timesteps"]
    bad = [t for t in cfg["timesteps"] if not 0 <= t < t_max]
    if bad:
        raise ConfigError(f"config key journey_counterfactual.timesteps: {bad} outside "
                          f"[0, {t_max})")
    return {"timesteps": sorted(set(cfg["timesteps"]), reverse=True),
            "shared": list(config["counterfactual"]["methods"]), "journey": journey,
            "n_noises": cfg["n_noises"]}


def proponent_methods(config: dict) -> list[str]:
    """Method ids of the proponents grid (checked against ``methods`` and the query set); the
    default is a TRAK and a D-TRAK method scored on that query set (the square function and the
    fewest timesteps preferred), or none when the config has no such query set."""
    from dabench.methods import build

    cfg = config["figures"]["proponents"]
    qs = cfg["query_set"]
    if qs not in config["lds"]["query_sets"] and cfg["methods"] is None:
        return []                   # the default grid needs queries this config does not have
    if qs not in config["lds"]["query_sets"]:
        raise ConfigError(f"config key figures.proponents.query_set: {qs!r} is not one of "
                          f"lds.query_sets {config['lds']['query_sets']}")
    scored = [m for m, e in config["methods"].items() if build(e).covers(qs)]
    if cfg["methods"] is None:      # D-TRAK's own choice first: the square function, fewest K
        picks = [min((m for m in scored if config["methods"][m]["method"] == name),
                     key=lambda m: ("square" not in m and name == "d-trak", len(m), m),
                     default=None) for name in ("trak", "d-trak")]
        return [m for m in picks if m is not None]
    unknown = [m for m in cfg["methods"] if m not in scored]
    if unknown:
        raise ConfigError(f"config key figures.proponents.methods: {', '.join(map(repr, unknown))} "
                          f"not among the methods scored on {qs} ({', '.join(sorted(scored))})")
    return list(cfg["methods"])


def run_name(paths) -> str:
    """The run name (results/<name>/) of one or more config files merged in order."""
    name = None
    for path in paths:
        data = yaml.safe_load(Path(path).read_text()) or {}
        name = data.get("name", name)
    return name or load_schema()["properties"]["name"]["default"]


def shapley_plan(config: dict) -> dict | None:
    """The group-Shapley branch (checked against ``methods``): ``baselines`` (method ids) and
    ``counterfactual`` (attribution keys), or None when it does not run."""
    cfg = config["shapley"]
    if not cfg["enabled"]:
        return None
    from dabench.methods import build

    if "generation" not in config["lds"]["query_sets"]:
        raise ConfigError("config key shapley.enabled: the baselines are aggregated from scores "
                          "of the generated samples; add generation to lds.query_sets")
    scored = sorted(m for m, e in config["methods"].items() if build(e).covers("generation"))
    baselines = scored if cfg["baselines"] is None else list(cfg["baselines"])
    unknown = [m for m in baselines if m not in scored]
    if unknown:
        raise ConfigError(f"config key shapley.baselines: {', '.join(map(repr, unknown))} not "
                          f"among the methods scored on the generation set ({', '.join(scored)})")
    keys = [f"shapley-{w}" for w in SHAPLEY_WAYS]
    keys += [f"{m}.{how}" for m in baselines for how in ("mean", "max")]
    if cfg.get("training_score"):
        if TRAINING_SCORE in baselines:
            raise ConfigError(f"config key shapley.baselines: a method named {TRAINING_SCORE!r} "
                              f"clashes with shapley.training_score's attribution; rename it")
        keys += [f"{TRAINING_SCORE}.{how}" for how in ("mean", "max")]
    bad = [k for k in cfg["counterfactual"]["methods"] if k not in keys]
    if bad:
        raise ConfigError(f"config key shapley.counterfactual.methods: {', '.join(map(repr, bad))} "
                          f"is not an attribution of this run: shapley-<retrain|finetune|sparse> "
                          f"or <baseline id>.<mean|max>")
    return {"baselines": baselines, "counterfactual": list(cfg["counterfactual"]["methods"]),
            "training_score": bool(cfg.get("training_score"))}


def is_latent(config: dict) -> bool:
    """A model on an autoencoder's latents: text-to-image (LoRA) or a latent DDPM."""
    return config["model"]["family"] in ("latent", "latent-ddpm")


def is_text_to_image(config: dict) -> bool:
    """A LoRA fine-tune of a text-conditioned base (prompts, a text encoder, guidance)."""
    return config["model"]["family"] == "latent"


def base_folder(config: dict, run_dir: str | Path) -> str | None:
    """The latent model's base: ``latent.base``, or ``<run>/base`` (built by the workflow from
    ``latent.pretrain``); None for a pixel model."""
    if not is_latent(config):
        return None
    from dabench.layout import BASE

    return config["latent"]["base"] or f"{run_dir}/{BASE}"


def model_section(config: dict, run_dir: str | Path) -> dict:
    """What every stage that builds, trains or samples the model reads: the ``model`` section,
    and for a latent model also its base folder (its autoencoder decodes the samples) and latent
    scale; a text-to-image model's also its LoRA shape (the base is fixed; only the adapter
    trains) and guidance scale."""
    model = dict(config["model"])
    if is_latent(config):
        model["base"] = base_folder(config, run_dir)
        if config["latent"]["scaling_factor"] is not None:
            model["scaling_factor"] = config["latent"]["scaling_factor"]
    if is_text_to_image(config):
        model.update(lora=dict(config["latent"]["lora"]), guidance=config["latent"]["guidance"])
    return model


def encoding_params(config: dict, run_dir: str | Path) -> dict | None:
    """How prepare_dataset encodes a latent model's examples: the ``latent`` section with its
    ``base`` folder (and ``conditional: false`` for a latent DDPM: no prompts); None for a pixel
    model."""
    if not is_latent(config):
        return None
    params = {**config["latent"], "base": base_folder(config, run_dir),
              "hflip": bool(config["train"]["augment"]["hflip"])}
    if not is_text_to_image(config):
        params["conditional"] = False
    return params


def pretrain_recipe(config: dict) -> dict:
    """The tiny base UNet's training recipe: section ``train`` with ``latent.pretrain.train``'s
    steps, batch size and learning rate, no checkpoints and no augmentation (the base stands in
    for a pre-trained model; train.augment is the attributed fine-tuning's recipe)."""
    recipe = training_recipe(config, "train")
    recipe.update(config["latent"]["pretrain"]["train"], checkpoint_steps=[],
                  augment={"hflip": False})
    recipe["warmup_steps"] = min(recipe["warmup_steps"], recipe["steps"])
    return recipe


def companion_config(config: dict) -> dict | None:
    """The companion run's config (``companion``: a config file run in the same workflow, or a
    list of them), validated; None when there is none. A list chains: the first companion gets
    the rest as its own companions, so every run of the chain is one module of the one before.
    Every run of the chain has its own name, and a companion file names no companion itself."""
    paths = config.get("companion")
    if not paths:
        return None
    paths = [paths] if isinstance(paths, str) else list(paths)
    path, rest = paths[0], paths[1:]
    full = Path(path) if Path(path).is_absolute() else REPO_ROOT / path
    if not full.is_file():
        raise ConfigError(f"config key companion: {path!r} is not a config file")
    try:
        companion = load(full)
    except ConfigError as err:
        raise ConfigError(f"config key companion ({path}): {err}") from None
    if companion.get("companion"):
        raise ConfigError(f"config key companion: {path} has a companion of its own "
                          f"({companion['companion']!r}); list every companion in the main "
                          f"config instead")
    if companion["name"] == config["name"]:
        raise ConfigError(f"config key companion: {path} has this run's name "
                          f"{config['name']!r}; its results would overwrite this run's")
    if rest:
        companion["companion"] = rest
    return companion


def companion_chain(config: dict) -> list[dict]:
    """Every companion run's config, in chain order (see :func:`companion_config`); the names of
    all runs must differ (each has its results/<name>/)."""
    chain, current = [], companion_config(config)
    names = [config["name"]]
    while current is not None:
        if current["name"] in names:
            raise ConfigError(f"config key companion: two runs of this workflow are named "
                              f"{current['name']!r}; their results would overwrite each other")
        names.append(current["name"])
        chain.append(current)
        current = companion_config(current)
    return chain


def _check_retrac(config: dict) -> None:
    pair = retrac_methods(config)
    if pair is not None:
        outlier_data_config(config)


def train_set_size(config: dict) -> int:
    """N, the size of the training set D: data.n_train plus the outliers, if any."""
    outliers = config["data"].get("outliers") or {}
    return config["data"]["n_train"] + outliers.get("n", 0)


def missing_paths(config: dict, run_dir: str | Path | None = None) -> list[str]:
    """Local inputs of a validated config that are not there: the data sources (unless the run in
    ``run_dir`` has already prepared them) and a CLIP embedder folder, each naming its config key.
    The workflow checks them when it is planned, not in the first job after a cluster queue."""
    from dabench import data as D
    from dabench.layout import OUTLIER_RUN, TRAIN_DATA

    run = Path(run_dir) if run_dir is not None else None
    sections = [(config["data"], "data", run)]
    outlier = outlier_data_config(config)
    if outlier is not None:
        sections.append((outlier, "retrac.outliers.data", run / OUTLIER_RUN if run else None))
    problems = []
    for data_cfg, key, folder in sections:
        if folder is not None and (folder / TRAIN_DATA).exists():
            continue                    # prepared already: the source is not read again
        problem = D.source_problem(data_cfg, key)
        if problem:
            problems.append(problem)
    base = config["latent"]["base"]
    if is_latent(config) and base:
        from dabench.latent import base_parts, missing_base_parts

        missing = missing_base_parts(base, base_parts(config["model"]["family"]))
        if missing:
            problems.append(f"latent.base: {base!r} is not a diffusers pipeline folder "
                            f"(missing {', '.join(missing)})")
    aesthetic = config["shapley"]["aesthetic"] if config["shapley"]["enabled"] else None
    if aesthetic:
        if not (Path(aesthetic["clip"]) / "config.json").exists():
            problems.append(f"shapley.aesthetic.clip: {aesthetic['clip']!r} is not a saved "
                            "CLIPModel folder (a folder with config.json and the weights)")
        if not Path(aesthetic["head"]).is_file():
            problems.append(f"shapley.aesthetic.head: {aesthetic['head']!r} is not a file (the "
                            "aesthetic predictor's weights)")
    embedder = config["embedder"]
    if embedder["kind"] == "clip":
        path = embedder.get("path")
        if not path or not (Path(path) / "config.json").exists():
            problems.append(f"embedder.path: {path!r} is not a saved CLIPModel folder "
                            "(a folder with config.json and the weights)")
    return problems


def training_recipe(config: dict, section: str = "train") -> dict:
    """The training recipe for the full model (``train``) or the LDS retrains (``lds``)."""
    recipe = dict(config["train"])
    if section == "lds":
        recipe.update({k: v for k, v in config["lds"].get("train", {}).items() if v is not None})
    elif section != "train":
        raise ValueError(f"unknown recipe section {section!r}")
    return {k: recipe[k] for k in RECIPE_KEYS}


def load(path: str | Path, overrides: dict | None = None) -> dict:
    """Read a YAML config file, apply ``overrides`` (nested dict), validate, return it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    config = yaml.safe_load(path.read_text()) or {}
    if overrides:
        deep_update(config, overrides)
    return validate(config)


def deep_update(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base

import copy

import pytest
import yaml

from dabench import config, seeds
from dabench.config import ConfigError


def _walk(schema, path=""):
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}{key}", sub
        yield from _walk(sub, f"{path}{key}.")


def test_every_schema_key_documents_itself_and_has_a_default():
    schema = config.load_schema()
    for key, sub in _walk(schema):
        assert sub.get("description"), f"{key} has no description"
        # lds.train.* inherit from train.*; data.outliers.* are the fields of an optional block
        if not key.startswith(("lds.train.", "data.outliers.")):
            assert "default" in sub, f"{key} has no default"


def test_defaults_are_filled_and_match_the_embedded_default(repo):
    filled = config.validate({})
    shipped = config.load(repo / "config.yaml")
    assert filled["lds"]["test"] == shipped["lds"]["test"]
    assert filled["model"] == shipped["model"]
    assert filled["methods"].keys() == shipped["methods"].keys()


@pytest.mark.parametrize("path", ["config.yaml", "configs/ci.yaml", "configs/paper/cifar2.yaml",
                                  "configs/paper/cifar10.yaml", "configs/paper/celeba.yaml",
                                  "configs/paper/cifar20.yaml", "configs/paper/outliers.yaml",
                                  "configs/ci-latent.yaml", "configs/default-latent.yaml",
                                  "configs/paper/artbench2.yaml", "configs/paper/artbench5.yaml",
                                  "configs/paper/artbench_postimpressionism.yaml"])
def test_shipped_configs_validate(repo, path):
    config.load(repo / path)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown config key lds\.tset"):
        config.validate({"lds": {"tset": {"n_subsets": 3}}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"train\.steps: 'many' is not of type 'integer'"):
        config.validate({"train": {"steps": "many"}})


def test_inconsistent_values_are_named():
    with pytest.raises(ConfigError, match=r"train\.checkpoint_steps \[5000\] exceed train\.steps"):
        config.validate({"train": {"checkpoint_steps": [5000]}})
    with pytest.raises(ConfigError, match="norm_num_groups"):
        config.validate({"model": {"norm_num_groups": 5}})


def test_method_errors_name_the_method_id():
    with pytest.raises(ConfigError, match=r"methods\.mine: unknown method 'pixle'"):
        config.validate({"methods": {"mine": {"method": "pixle"}}})
    with pytest.raises(ConfigError, match=r"methods\.mine: .*no parameter 'simlarity'"):
        config.validate({"methods": {"mine": {"method": "pixel", "simlarity": "dot"}}})


@pytest.mark.parametrize("params, message", [
    ({"n_timesteps": 0}, r"methods\.mine: n_timesteps must be a positive integer, got 0"),
    ({"n_timesteps": [10, -1]}, r"methods\.mine: n_timesteps must be a positive integer, got -1"),
    ({"n_noises": 0}, r"methods\.mine: n_noises must be a positive integer"),
    ({"k": 0}, r"methods\.mine: k must be a positive integer"),
    ({"projection": "sparce"}, r"methods\.mine: unknown projection 'sparce'"),
])
def test_bad_feature_parameters_are_named(params, message):
    with pytest.raises(ConfigError, match=message):
        config.validate({"methods": {"mine": {"method": "d-trak", **params}}})


def test_lds_recipe_inherits_from_train():
    c = config.validate({"train": {"lr": 0.002, "steps": 2000}, "lds": {"train": {"steps": 7}}})
    recipe = config.training_recipe(c, "lds")
    assert recipe["steps"] == 7 and recipe["lr"] == 0.002
    assert config.training_recipe(c, "train")["steps"] == 2000


def test_derived_seeds_are_stable_and_distinct():
    assert seeds.derive_seed(0, "a", 1) == seeds.derive_seed(0, "a", 1)
    assert seeds.derive_seed(0, "a", 1) != seeds.derive_seed(0, "a", 2)
    assert seeds.derive_seed(0, "a") != seeds.derive_seed(1, "a")
    # Pinned values: seeds must not change between versions or machines (SHA-256 of the keys).
    assert seeds.derive_seed(0, "lds-subsets") == 3670358192672337790
    assert seeds.derive_seed(123, "x") == 5382638283548071120
    assert 0 <= seeds.derive_seed(123, "x") < 2**63


def test_config_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")


def test_key_order_does_not_matter():
    a = config.validate({"lds": {"test": {"n_subsets": 5, "n_seeds": 2}}, "seed": 1})
    b = config.validate({"seed": 1, "lds": {"test": {"n_seeds": 2, "n_subsets": 5}}})
    assert repr(a) == repr(b)   # Snakemake compares params by their text


def test_example_grid_methods_are_checked_and_default_to_trak_and_d_trak(repo):
    assert config.proponent_methods(config.validate({})) == ["trak-K10", "d-trak-square-K10"]
    # The default run shows the newer methods beside them.
    assert config.proponent_methods(config.load(repo / "config.yaml")) == [
        "trak-K10", "d-trak-square-K10", "ekfac-K100", "das-K100", "unlearning"]
    # Journey-TRAK attributes generated samples only: it cannot be shown for validation queries.
    with pytest.raises(ConfigError, match=r"figures\.proponents\.methods: 'journey-trak-K10' not "
                                          r"among the methods scored on validation"):
        config.validate({"figures": {"proponents": {"methods": ["journey-trak-K10"],
                                                    "query_set": "validation"}}})
    assert config.proponent_methods(config.validate(
        {"figures": {"proponents": {"methods": []}}})) == []


def test_run_name_follows_the_last_config_that_names_one(repo, tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("shapley: {enabled: false}\n")
    assert config.run_name([repo / "configs/ci.yaml"]) == "ci"
    assert config.run_name([repo / "configs/ci.yaml", overlay]) == "ci"
    assert config.run_name([overlay]) == "default"


def test_the_readme_quotes_the_current_config_error():
    """README 'Configuration' prints the error of a misspelt key; it must be what validation says."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    quoted = re.search(r"```\n(invalid config:\n  unknown config key lds\.tset;.*?)\n```", readme, re.S)
    assert quoted, "README no longer quotes the lds.tset error"
    with pytest.raises(ConfigError) as err:
        config.validate({"lds": {"tset": 1}})
    assert str(err.value) == quoted.group(1)


def test_the_default_method_list_is_written_once(repo):
    """config.yaml holds the default methods; the schema file does not repeat them."""
    import yaml

    raw = yaml.safe_load((repo / "config.schema.yaml").read_text())
    assert "default" not in raw["properties"]["methods"]
    assert config.validate({})["methods"] == config.load(repo / "config.yaml")["methods"]


def test_missing_local_inputs_are_named_before_any_job(repo, tmp_path):
    cfg = config.load(repo / "configs/paper/celeba.yaml")
    problems = config.missing_paths(cfg, tmp_path / "run")
    assert any(p.startswith("data.path: image folder 'data/celeba'") for p in problems), problems
    assert any(p.startswith("embedder.path:") for p in problems), problems
    # Once the run has prepared its data, the source folder is not needed any more.
    (tmp_path / "run/data").mkdir(parents=True)
    (tmp_path / "run/data/train.npz").write_bytes(b"")
    assert not any(p.startswith("data.") for p in config.missing_paths(cfg, tmp_path / "run"))
    cifar = config.load(repo / "configs/paper/cifar10.yaml", {"data": {"path": str(tmp_path)}})
    # The outlier experiment's data inherits data.path: both keys are named.
    assert config.missing_paths(cifar) == [
        f"{key}.path: {tmp_path} has no data_batch_1 (expected the CIFAR python version)"
        for key in ("data", "retrac.outliers.data")]
    assert config.missing_paths(config.load(repo / "configs/ci.yaml")) == []
    # The ArtBench Shapley experiment: its base, its aesthetic predictor (CLIP + head), its CLIP.
    art = config.missing_paths(config.load(repo / "configs/paper/artbench_postimpressionism.yaml"))
    for key in ("data.path", "latent.base", "shapley.aesthetic.clip", "shapley.aesthetic.head",
                "embedder.path"):
        assert any(p.startswith(f"{key}:") for p in art), (key, art)


def test_the_workflow_stops_on_missing_inputs_before_any_job(repo, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"),
                           "--directory", str(tmp_path), "--configfile",
                           str(repo / "configs/paper/celeba.yaml"), "--cores", "1"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "data.path: image folder 'data/celeba' does not exist" in proc.stderr
    assert not (tmp_path / "results").exists() and "prepare_dataset" not in proc.stderr.split(
        "missing inputs")[-1]


def test_training_score_baseline_keys_and_a_clashing_method_name(cfg):
    from dabench.config import ConfigError, shapley_plan

    cfg = copy.deepcopy(cfg)
    cfg["shapley"]["counterfactual"]["methods"] = ["training-score.mean"]
    with pytest.raises(ConfigError, match="'training-score.mean' is not an attribution"):
        shapley_plan(cfg)
    cfg["shapley"]["training_score"] = True
    plan = shapley_plan(cfg)
    assert plan["training_score"] and plan["counterfactual"] == ["training-score.mean"]
    cfg["methods"]["training-score"] = dict(cfg["methods"]["pixel-cosine"])
    cfg["shapley"]["baselines"] = ["training-score"]
    with pytest.raises(ConfigError, match="clashes with shapley.training_score"):
        shapley_plan(cfg)


def test_checkpoint_selection_methods_and_their_errors(cfg):
    """The study turns each (method, earlier checkpoint) into a method whose features come from
    that checkpoint; what it cannot study is named by its config key."""
    from dabench import layout
    from dabench.checkpoint_selection import study_methods
    from dabench.lds import scored_methods
    from dabench.methods import build

    study = study_methods(cfg)
    assert sorted(study) == ["d-trak-square-ckpt30", "trak-ckpt30"]  # 60 is the final model
    method = build(study["trak-ckpt30"]["entry"])
    assert method.inputs("validation")["train_features"] == layout.features(
        "step000030", method.spec.id, "train")
    assert "checkpoint=30" in method.variant and set(study) <= set(scored_methods(cfg))
    bad = copy.deepcopy(cfg)
    bad["checkpoint_selection"]["methods"] = ["journey-trak"]
    with pytest.raises(ValueError, match="checkpoint_selection.methods: 'journey-trak'"):
        study_methods(bad)
    bad["checkpoint_selection"]["methods"] = ["no-such-method"]
    with pytest.raises(ValueError, match="'no-such-method' not among the method ids"):
        study_methods(bad)
    bad = copy.deepcopy(cfg)
    bad["checkpoint_selection"]["checkpoints"] = [45]
    with pytest.raises(ValueError, match=r"checkpoint_selection.checkpoints: \[45\] not in"):
        study_methods(bad)
    with pytest.raises(ValueError, match="checkpoint 45 is not in train.checkpoint_steps"):
        build({**cfg["methods"]["trak"], "checkpoint": 45}).bind(cfg)
    with pytest.raises(ValueError, match="cannot take its features from a checkpoint"):
        build({**cfg["methods"]["trak-ensemble-S2"], "checkpoint": 30})


def test_journey_counterfactual_keys_are_checked(cfg):
    from dabench.config import journey_counterfactual_plan

    plan = journey_counterfactual_plan(cfg)
    assert plan["timesteps"] == [400] and plan["journey"] == "journey-trak"
    bad = copy.deepcopy(cfg)
    bad["journey_counterfactual"]["method"] = "trak"
    with pytest.raises(ConfigError, match="journey_counterfactual.method: 'trak' is not a "
                                          "journey-trak method"):
        journey_counterfactual_plan(bad)
    bad = copy.deepcopy(cfg)
    bad["journey_counterfactual"]["timesteps"] = [1000]
    with pytest.raises(ConfigError, match=r"timesteps: \[1000\] outside \[0, 1000\)"):
        journey_counterfactual_plan(bad)
    off = copy.deepcopy(cfg)
    off["counterfactual"]["enabled"] = False          # part of the counterfactual evaluation
    assert journey_counterfactual_plan(off) is None

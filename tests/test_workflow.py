"""The Snakemake workflow end to end on the ci config, in a scratch folder (real files, real
Snakemake, real training), plus dry runs of the paper configs and the failure paths."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.workflow
REPO = Path(__file__).resolve().parent.parent


from conftest import snakemake  # noqa: E402  (the ci run itself is the session fixture ci_run)


def test_outputs_follow_the_results_contract(ci_run):
    from dabench import config, io

    cfg = config.load(REPO / "configs" / "ci.yaml")
    n, m_test = cfg["data"]["n_train"], cfg["lds"]["test"]["n_subsets"]
    size = int(cfg["lds"]["alpha"] * n)
    # subsets/: plain index files
    files = sorted((ci_run / "subsets" / "test").glob("subset_*.txt"))
    assert len(files) == m_test
    subsets = np.load(ci_run / "lds/test/subsets.npy")
    assert subsets.shape == (m_test, size) and subsets.dtype.kind == "i"
    first = [int(x) for x in files[0].read_text().split() if not x.startswith("#") and x.isdigit()]
    assert first == subsets[0].tolist()
    # lds/<family>/<query_set>_outputs.npy: float32, subsets × queries
    queries = {"validation": cfg["data"]["n_validation"], "generation": cfg["generation"]["n_samples"]}
    for family in ("tune", "test"):
        m = cfg["lds"][family]["n_subsets"]
        for qs, q in queries.items():
            out = np.load(ci_run / f"lds/{family}/{qs}_outputs.npy")
            assert out.dtype == np.float32 and out.shape == (m, q) and np.all(out > 0)
    per_seed = np.load(ci_run / "lds/test/validation_outputs_per_seed.npy")
    assert per_seed.shape[0] == 2 and not np.allclose(per_seed[0], per_seed[1])
    assert np.allclose(per_seed.mean(0), np.load(ci_run / "lds/test/validation_outputs.npy"))
    # models/: safetensors with a JSON sidecar; the checkpoints and the training log
    unet, meta = __import__("dabench.model", fromlist=["load_model"]).load_model(
        ci_run / "models/full/model.safetensors")
    assert meta["steps"] == cfg["train"]["steps"]
    ckpts = sorted((ci_run / "models/full/checkpoints").glob("*.safetensors"))
    assert [int(p.stem.split("_")[1]) for p in ckpts] == cfg["train"]["checkpoint_steps"]
    retrains = sorted((ci_run / "models/lds/test").glob("chunk*/*.safetensors"))
    assert len(retrains) == m_test * 2
    rmeta = json.loads(retrains[0].with_suffix(".json").read_text())
    assert {"subset", "seed", "members", "sha256"} <= set(rmeta)
    log = io.load_npz(ci_run / "models/full/training_log.npz")
    assert log["indices"].shape == (cfg["train"]["steps"], cfg["train"]["batch_size"])
    assert log["timesteps"].shape == log["noise_seeds"].shape and log["lr"].shape == (cfg["train"]["steps"],)
    # generation set, its trajectories apart (memory-mapped), the last state = the samples
    gen = io.load_npz(ci_run / "generation/samples.npz")
    assert "trajectory" not in gen
    traj = np.load(ci_run / "generation/trajectory.npy", mmap_mode="r")
    assert traj.shape == (cfg["generation"]["inference_steps"] + 1, *gen["images"].shape)
    assert np.array_equal(traj[-1], gen["images"])
    # scores/<method-id>/<query_set>.npy with a sidecar naming its inputs
    for method_id in cfg["methods"]:
        for qs, q in queries.items():
            if method_id == "loss":                                    # self-influence only
                assert not (ci_run / f"scores/{method_id}/{qs}.npy").exists()
                continue
            if method_id == "journey-trak" and qs == "validation":     # generated queries only
                assert not (ci_run / f"scores/{method_id}/{qs}.npy").exists()
                continue
            s = np.load(ci_run / f"scores/{method_id}/{qs}.npy")
            assert s.dtype == np.float32 and s.shape == (q, n)
            side = json.loads((ci_run / f"scores/{method_id}/{qs}.json").read_text())
            first_input = next(iter(side["inputs"].values()))
            assert not first_input.startswith("/") and (ci_run / first_input).exists()
    # tables and figures
    df = pd.read_csv(ci_run / "tables/lds.csv")
    assert {"method", "variant", "query_set", "n_timesteps", "lds", "ci_low", "ci_high",
            "n_queries", "n_subsets"} <= set(df.columns)
    assert set(df["method"]) == {"Raw pixel", "Retraining ceiling", "Gradient", "TRAK", "D-TRAK",
                                 "Relative IF", "Renormalized IF", "TracInCP", "GAS",
                                 "Diffusion-TracIn", "Diffusion-ReTrac",
                                 "Classifier-embedding similarity", "Journey-TRAK",
                                 "TRAK (ensemble)", "D-TRAK (ensemble)", "Empirical influence",
                                 "Datamodel", "K-FAC influence", "EK-FAC influence", "DAS",
                                 "DAS0", "Unlearning", "DataInf"}
    # Every method on both query sets but Journey-TRAK (generation only) and the loss reference
    # (self-influence only), plus the ceiling.
    assert len(df) == 2 * len(cfg["methods"]) - 1 and (df["n_subsets"] == m_test).all()
    assert df[df.method == "Journey-TRAK"]["query_set"].tolist() == ["generation"]
    assert set(df[df.method == "Empirical influence"]["variant"]) == {"M=2", "M=4"}
    dtrak = df[df["method"] == "D-TRAK"]
    functions = yaml.safe_load((REPO / "configs" / "ci.yaml").read_text())["methods"]["d-trak"]
    assert set(dtrak["variant"].str.split(",").str[0]) == set(functions["function"])
    assert (dtrak["n_timesteps"] == 3).all()
    assert ((df["ci_low"] <= df["lds"]) & (df["lds"] <= df["ci_high"])).all()
    assert "\\toprule" in (ci_run / "tables/lds.tex").read_text()
    for name in ("lds", "ablations"):
        for ext in ("pdf", "png"):
            assert (ci_run / f"figures/{name}.{ext}").stat().st_size > 1000
    # features/<model>/<feature-id>/<split>.npy with a sidecar describing them
    feats = np.load(ci_run / "features/full/square_K3u_e1_sparse256/train.npy")
    assert feats.dtype == np.float32 and feats.shape == (n, 256)
    side = json.loads((ci_run / "features/full/square_K3u_e1_sparse256/train.json").read_text())
    assert side["output_function"] == "square" and side["timesteps"] == [0, 333, 666]
    assert side["projection"] == "sparse" and side["k"] == 256 and side["model"] == "models/full/model.safetensors"
    # λ chosen on the tune subsets, recorded beside the scores
    trak = json.loads((ci_run / "scores/trak/validation.json").read_text())
    assert trak["lambda_relative"] in trak["params"]["lambdas"]
    assert set(trak["tune_lds_by_lambda"]) == {str(v) for v in trak["params"]["lambdas"]}
    assert trak["inputs"]["tune_subsets"] == "lds/tune/subsets.npy"
    abl = pd.read_csv(ci_run / "tables/ablations.csv")
    assert set(abl["axis"]) == {"n_timesteps", "k", "schedule", "projection"}
    assert (abl["query_set"] == "validation").all()
    assert set(abl[abl["axis"] == "projection"]["value"]) == {"sparse", "gaussian"}
    assert any((ci_run / "benchmarks").rglob("*.tsv"))


def test_retraining_methods_embeddings_and_the_counterfactual(ci_run):
    from dabench import config as C
    from dabench import io
    from dabench.counterfactual import choose_queries

    cfg = C.load(REPO / "configs/ci.yaml")
    n = cfg["data"]["n_train"]
    # The datamodel family: its own subsets (apart from tune/test), one retrain each, outputs.
    dm = np.load(ci_run / "lds/datamodel/subsets.npy")
    assert dm.shape == (cfg["lds"]["datamodel"]["n_subsets"], n // 2)
    lds_rows = {r.tobytes() for f in ("tune", "test") for r in np.load(ci_run / f"lds/{f}/subsets.npy")}
    assert not {r.tobytes() for r in dm} & lds_rows
    assert np.load(ci_run / "lds/datamodel/validation_outputs.npy").shape == (len(dm), cfg["data"]["n_validation"])
    # Ensemble members are the family's saved models, featurized like the full model.
    side = json.loads((ci_run / "features/dm0001/loss_K3u_e1_sparse256/train.json").read_text())
    assert side["model"] == "models/lds/datamodel/chunk0/subset0001_seed0.safetensors"
    ens = json.loads((ci_run / "scores/trak-ensemble-S2/validation.json").read_text())
    assert ens["n_models"] == 2 and "train_features_1" in ens["inputs"]
    # Journey-TRAK's query features follow the generated trajectories.
    jside = json.loads((ci_run / "features/full/loss_journey_e1_sparse256/generation.json").read_text())
    assert jside["timesteps"] == io.load_npz(ci_run / "generation/samples.npz")["trajectory_timesteps"][:-1].tolist()
    # The classifier embedder and its embeddings.
    emb = json.loads((ci_run / "embeddings/classifier/train.json").read_text())
    assert emb["kind"] == "classifier" and np.load(ci_run / "embeddings/classifier/train.npy").shape == (n, emb["dim"])
    # Counterfactual: every (method, query) retrained with its removal set, table and figures.
    n_queries = cfg["counterfactual"]["n_queries"]
    queries = choose_queries(cfg["generation"]["n_samples"], n_queries, cfg["seed"])
    per_query = pd.read_csv(ci_run / "tables/counterfactual_per_query.csv")
    assert sorted(set(per_query["query"])) == queries
    assert set(per_query["method_id"]) == {"random", "trak", "d-trak-square", "ekfac"}
    trak_scores = np.load(ci_run / "scores/trak/generation.npy")
    k = int(round(0.2 * n))
    for q in queries:
        res = io.load_npz(ci_run / f"counterfactual/trak/query{q:04d}.npz")
        assert sorted(res["removed"].tolist()) == sorted(np.argsort(-trak_scores[q], kind="stable")[:k].tolist())
        assert np.array_equal(res["original"], io.load_npz(ci_run / "generation/samples.npz")["images"][q])
        assert (ci_run / f"models/counterfactual/trak/query{q:04d}.safetensors").exists()
    summary = pd.read_csv(ci_run / "tables/counterfactual.csv")
    assert (summary["n_queries"] == n_queries).all() and (summary["k"] == k).all()
    assert (summary["median_l2"] > 0).all() and summary["median_cosine"].between(-1, 1).all()
    # D-TRAK Tables 7-8: the retraining-based methods against the number of models.
    ret = pd.read_csv(ci_run / "tables/retraining.csv")
    assert set(ret[~ret.reference]["n_models"]) == {1, 2, 4}
    assert set(ret[ret.reference]["method_id"]) == {"trak", "d-trak-square"}
    for name in ("counterfactual_box", "counterfactual_grid", "retraining"):
        for ext in ("pdf", "png"):
            assert (ci_run / f"figures/{name}.{ext}").stat().st_size > 1000


def test_group_shapley_branch(ci_run):
    """docs/computation.md §7 end to end on ci: groups, submodels three ways, efficiency of the
    Shapley values,
    baselines aggregated to groups, group LDS, runtime, counterfactual, figures."""
    from dabench import config as C
    from dabench import io

    cfg = C.load(REPO / "configs/ci.yaml")["shapley"]
    groups = json.loads((ci_run / "shapley/groups.json").read_text())
    n = groups["n_groups"]
    assert n == 10 and sum(groups["sizes"]) == C.load(REPO / "configs/ci.yaml")["data"]["n_train"]
    ref = json.loads((ci_run / "shapley/reference.json").read_text())
    values = pd.read_csv(ci_run / "tables/shapley_values.csv")
    for way in ("retrain", "finetune", "sparse"):
        side = json.loads((ci_run / f"shapley/values/{way}.json").read_text())[f"shapley-{way}"]
        assert side["n_submodels"] == cfg["submodels"][way]
        for prop, beta in side["values"].items():      # efficiency: Σβ = F(θ_D) − F(θ_∅)
            assert len(beta) == n
            assert sum(beta) == pytest.approx(ref["full"][prop] - ref["empty"][prop], abs=1e-6)
    # Baselines: per-example generation scores averaged over queries, then mean / max per group.
    design = io.load_npz(ci_run / "shapley/design.npz")
    per_example = np.load(ci_run / "scores/trak/generation.npy").mean(0)
    trak_max = values[(values.key == "trak.max") & (values.property == "inception")]
    expected = [per_example[design["groups"] == g].max() for g in range(n)]
    np.testing.assert_allclose(trak_max.sort_values("group")["value"], expected, rtol=1e-5)
    # The sparsified model keeps 70% of its prunable weights; every way has its runtime.
    pruned = json.loads((ci_run / "models/shapley/pruned.json").read_text())
    assert pruned["nonzero"] < pruned["parameters"] and pruned["ratio"] == 0.3
    runtime = pd.read_csv(ci_run / "tables/shapley_runtime.csv")
    assert {"Retraining", "FT", "Sparsified FT"} <= set(runtime["way"])
    assert (runtime["minutes"] > 0).all()
    lds = pd.read_csv(ci_run / "tables/shapley_lds.csv")
    keys = {f"shapley-{w}" for w in ("retrain", "finetune", "sparse")}
    keys |= {f"{m}.{h}" for m in cfg["baselines"] for h in ("mean", "max")}
    assert set(lds["key"]) == keys and len(lds) == len(keys) * 3 * len(cfg["lds"]["alphas"])
    assert lds["lds"].dropna().between(-100, 100).all() and (lds["n_subsets"] == 4).all()
    budget = pd.read_csv(ci_run / "tables/shapley_budget.csv")
    assert set(budget["way"]) == {"Retraining", "FT", "Sparsified FT"}
    # Counterfactual: the top 40% groups (4 of 10) by the Shapley values of the main property.
    cf = pd.read_csv(ci_run / "tables/shapley_counterfactual.csv")
    assert set(cf["key"]) == {"shapley-sparse", "pixel-cosine.max"} and (cf["n_seeds"] == 2).all()
    sparse = json.loads((ci_run / "shapley/values/sparse.json").read_text())["shapley-sparse"]
    top = np.argsort(-np.asarray(sparse["values"]["inception"]), kind="stable")[:4]
    res = io.load_npz(ci_run / "shapley/counterfactual/shapley-sparse.part0.npz")
    assert sorted(res["removed"].tolist()) == sorted(top.tolist())
    assert res["values"].shape == (2, 3) and res["images"].shape[0] == 8
    for name in ("shapley_budget", "shapley_counterfactual", "shapley_samples"):
        for ext in ("pdf", "png"):
            assert (ci_run / f"figures/{name}.{ext}").stat().st_size > 1000
    assert "Sparsified FT" in (ci_run / "tables/shapley_runtime.tex").read_text()


def test_retrac_outputs_and_the_outlier_run(ci_run):
    """Checkpoint features, replayed training gradients, self-influence, the ReTrac tables and
    figures, and the outlier experiment's own run folder with the same layout."""
    from dabench import config, io

    cfg = config.load(REPO / "configs" / "ci.yaml")
    n = cfg["data"]["n_train"]
    for step in cfg["train"]["checkpoint_steps"]:
        side = json.loads((ci_run / f"features/step{step:06d}/loss_replay_e1_none/train.json").read_text())
        assert side["timesteps"] == "replay" and side["model_step"] == step
        assert side["training_log"] == "models/full/training_log.npz"
        norms = np.load(ci_run / f"features/step{step:06d}/loss_replay_e1_none/train.norms.npy")
        assert norms.shape == (n,) and (norms > 0).all()
        assert (ci_run / f"features/step{step:06d}/loss_K3u_e1_none_unit/generation.npy").exists()
    for m in ("tracincp", "diffusion-tracin", "diffusion-retrac"):
        values = np.load(ci_run / f"scores/{m}/self.npy")
        assert values.shape == (n,) and np.isfinite(values).all()
    assert not (ci_run / "scores/gas/self.npy").exists()
    corr = pd.read_csv(ci_run / "tables/retrac_correlation.csv")
    assert list(corr["checkpoint"]) == cfg["train"]["checkpoint_steps"]
    assert corr["spearman"].between(-1, 1).all() and (corr["n"] == cfg["retrac"]["n_correlation"]).all()
    norms = pd.read_csv(ci_run / "tables/retrac_norms.csv")
    assert len(norms) == n * len(cfg["train"]["checkpoint_steps"])
    log = io.load_npz(ci_run / "models/full/training_log.npz")
    # The logged timestep of example 0 at the first checkpoint, straight from the training log.
    first = cfg["train"]["checkpoint_steps"][0]
    s, p = max((s, p) for s in range(first) for p in range(log["indices"].shape[1])
               if log["indices"][s, p] == 0)
    row = norms[(norms.checkpoint == first) & (norms.example == 0)].iloc[0]
    assert row["timestep"] == log["timesteps"][s, p] and row["trained_at_step"] == s
    manip = pd.read_csv(ci_run / "tables/retrac_manipulation.csv")
    assert set(manip["method"]) == {"Diffusion-TracIn", "Diffusion-ReTrac"}
    assert (manip["n_examples"] == n // 2).all()
    targeted = pd.read_csv(ci_run / "tables/retrac_targeted.csv")
    assert set(targeted["method_id"]) == set(cfg["methods"]) - {"loss"}     # loss: no scores
    assert targeted["distinct"].between(0, 1).all() and (targeted["n_queries"] == 4).all()
    assert (targeted["distinct"] <= targeted["max_possible"] + 1e-9).all()
    # The outlier experiment: its own data (origin marks the outliers), model, scores.
    out = ci_run / "outliers"
    data = io.load_npz(out / "data/train.npz")
    o = cfg["retrac"]["outliers"]["data"]
    assert len(data["origin"]) == o["n_train"] + o["outliers"]["n"]
    assert data["origin"].sum() == o["outliers"]["n"]
    assert io.load_npz(out / "data/validation.npz")["origin"].sum() == o["outliers"]["n_validation"]
    assert (out / "models/full/model.safetensors").exists()
    assert np.load(out / "scores/diffusion-retrac/self.npy").shape == (len(data["origin"]),)
    # The loss reference ranks by the outlier model's own loss (its self-influence file).
    assert np.load(out / "scores/loss/self.npy").shape == (len(data["origin"]),)
    det = pd.read_csv(ci_run / "tables/retrac_outliers.csv")
    assert set(det["top"]) == {2, 4, 6} and det["outlier_share"].between(0, 1).all()
    assert "Loss (reference)" in set(det["method"])
    tracing = pd.read_csv(ci_run / "tables/retrac_source_tracing.csv")
    assert set(tracing["origin"]) == {0, 1}
    for name in ("norms", "single_example", "correlation", "manipulation", "targeted",
                 "outliers", "source_tracing"):
        assert "\\toprule" in (ci_run / f"tables/retrac_{name}.tex").read_text()
        for ext in ("pdf", "png"):
            assert (ci_run / f"figures/retrac_{name}.{ext}").stat().st_size > 1000


def test_lds_recomputed_from_files_matches_the_table(ci_run):
    from dabench import metrics

    scores = np.load(ci_run / "scores/pixel-dot/validation.npy")
    per_query = metrics.lds_per_query(scores, np.load(ci_run / "lds/test/subsets.npy"),
                                      np.load(ci_run / "lds/test/validation_outputs.npy"))
    df = pd.read_csv(ci_run / "tables/lds.csv")
    row = df[(df.method_id == "pixel-dot") & (df.query_set == "validation")].iloc[0]
    assert row["lds"] == pytest.approx(100 * np.nanmean(per_query), abs=1e-3)


def test_checkpoint_selection_scores_each_checkpoint_with_its_own_features(ci_run):
    """D-TRAK's checkpoint study: one row per (method, query set, checkpoint); the final
    checkpoint's row is the method's own LDS row, an earlier one comes from scores computed on
    that checkpoint's features (so it differs)."""
    df = pd.read_csv(ci_run / "tables/checkpoint_selection.csv")
    lds = pd.read_csv(ci_run / "tables/lds.csv")
    assert set(df["method_id"]) == {"trak", "d-trak-square"}
    assert sorted(set(df["step"])) == [30, 60] and df["final"].tolist().count(True) == 4
    best = df.loc[df.groupby(["method_id", "query_set"])["lds"].idxmax()]
    assert best["best"].all() and df["best"].sum() >= 4
    for _, row in df[df["final"]].iterrows():
        ref = lds[(lds.method_id == row["method_id"]) & (lds.query_set == row["query_set"])]
        assert row["lds"] == pytest.approx(ref["lds"].iloc[0], abs=1e-3)
    side = json.loads((ci_run / "scores/trak-ckpt30/validation.json").read_text())
    assert side["params"]["checkpoint"] == 30
    assert side["inputs"]["train_features"].startswith("features/step000030/")
    early = np.load(ci_run / "scores/trak-ckpt30/validation.npy")
    assert not np.allclose(early, np.load(ci_run / "scores/trak/validation.npy"))
    assert (ci_run / "figures/checkpoint_selection.pdf").stat().st_size > 0


def test_journey_counterfactual_resumes_each_methods_counterfactual_model(ci_run):
    """D-TRAK Appendix E: the shared methods remove what the counterfactual removed (its model is
    reused), per-step Journey-TRAK removes the top-k of its own step's scores; every row of the
    table is a (method, timestep)."""
    from dabench import io

    df = pd.read_csv(ci_run / "tables/journey_counterfactual.csv")
    assert set(df["method_id"]) == {"random", "trak", "d-trak-square", "ekfac",
                                    "journey-trak-step"}
    assert set(df["timestep"]) == {400} and (df["n_queries"] == 1).all()
    query = int(pd.read_csv(ci_run / "tables/counterfactual_per_query.csv")["query"].iloc[0])
    for method in ("trak", "random"):
        cf = io.load_npz(ci_run / f"counterfactual/{method}/query{query:04d}.npz")
        jr = io.load_npz(ci_run / f"counterfactual/journey/{method}/query{query:04d}_t0400.npz")
        assert np.array_equal(cf["removed"], jr["removed"])
        assert np.array_equal(jr["original"], cf["original"])
    step = io.load_npz(ci_run / "counterfactual/journey/step_scores.npz")
    jt = io.load_npz(ci_run / f"counterfactual/journey/journey-trak-step/query{query:04d}_t0400.npz")
    row = step["scores"][0, list(step["queries"]).index(query)]
    assert set(jt["removed"]) == set(np.argsort(-row, kind="stable")[:int(jt["k"])])
    assert int(jt["step"]) == int(step["steps"][0])
    assert (ci_run / "figures/journey_counterfactual_grid.png").stat().st_size > 0


def test_a_completed_run_plans_nothing(ci_run):
    proc = snakemake(ci_run.parent.parent, "--dry-run")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.parametrize("configfile,retrain_jobs", [("configs/paper/cifar2.yaml", 224),
                                                     ("configs/paper/cifar10.yaml", 384),
                                                     ("configs/paper/celeba.yaml", 384),
                                                     ("configs/paper/cifar20.yaml", 192),
                                                     ("configs/paper/outliers.yaml", 24),
                                                     ("configs/paper/artbench2.yaml", 448),
                                                     ("configs/paper/artbench5.yaml", 384),
                                                     ("configs/paper/artbench_postimpressionism.yaml",
                                                      24),
                                                     ("configs/paper/celebahq.yaml", 24)])
def test_paper_configs_plan_without_data(tmp_path, configfile, retrain_jobs):
    from collections import Counter

    from dabench import config as C
    from dabench import plan as P
    from dabench import resources as R

    # The dry run (make plan's own) succeeds without the data or the base on disk.
    config = C.load(REPO / configfile)
    jobs = P.dry_run([REPO / configfile], directory=tmp_path)
    counts = Counter(job.rule for job in jobs)
    # (64 + 64) subsets × 3 seeds, 4 per job (1 for CIFAR-10 and CelebA, 2 for CIFAR-20: a job
    # within a day); cifar2 adds 512 datamodel retrains.
    assert counts["train_lds_models"] == retrain_jobs
    assert counts["train_full_model"] == 1
    # make plan: the same jobs, each GPU rule on a GPU with the memory and time it declares.
    table = P.plan(config, jobs).set_index("rule")
    assert table.loc["train_lds_models", "jobs"] == retrain_jobs
    assert table.loc["train_lds_models", "gpu"] and table.loc["TOTAL", "gpu_hours"] > 10
    # Batches of gradients and forward passes fill memory.gpu_mb (16 GB) plus the model; training
    # holds the recipe's batch (CelebA 64x64 at batch 128: ~26 GB; Stable Diffusion's micro-batch
    # of 8 at 256x256 beside its 3.4 GB of weights).
    model_gb = R.sizes(C.load(REPO / configfile)).model_bytes / 2**30
    assert 0 < table.loc["featurize", "gpu_mem_gb"] <= 16.5 + model_gb
    assert table.loc["train_full_model", "gpu_mem_gb"] <= 80
    assert table.loc["TOTAL", "gpu_mem_gb"] >= table.loc["train_full_model", "gpu_mem_gb"] > 0
    for job in jobs:
        if "mem_mb" in job.resources:
            declared = R.declare(job.rule, config, job.wildcards)
            assert int(job.resources["mem_mb"]) == declared["mem_mb"], job.rule
            assert int(job.resources["gpu"]) == int(R.is_gpu_rule(job.rule, config)), job.rule
    text = P.render(table.reset_index(), config, None)
    assert "TOTAL" in text and "train_lds_models" in text


def test_training_set_features_shard_into_parallel_jobs(tmp_path):
    """features.train_shards: 3 shard jobs and a merge per training-set feature set; the query
    splits stay in the featurize job."""
    config = yaml.safe_load((REPO / "configs/ci.yaml").read_text())
    config["features"] = {"train_shards": 3}
    (tmp_path / "shard.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--dry-run", configfile=tmp_path / "shard.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    assert int(counts["featurize_train_shard"]) == 3 * int(counts["merge_feature_shards"])
    assert int(counts["merge_feature_shards"]) == int(counts["featurize"])


def test_unknown_config_key_fails_before_any_job(tmp_path):
    proc = snakemake(tmp_path, "--config", "lds={'tset': 1}")
    assert proc.returncode != 0
    assert "unknown config key lds.tset" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


def test_missing_dataset_path_is_named(tmp_path):
    proc = snakemake(tmp_path, "results/paper-cifar2/data/train.npz",
                     configfile="configs/paper/cifar2.yaml")
    assert proc.returncode != 0
    assert "data.path: " in proc.stderr + proc.stdout and "data_batch_1" in proc.stderr + proc.stdout


def _planned(workdir, config: dict) -> dict:
    """Job counts of a dry run with ``config`` (written to a file) in a finished run folder."""
    import yaml

    path = workdir / "changed.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(workdir), "--configfile", str(path), "--cores", "2",
                           "--dry-run"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M)}
    counts.pop("total", None)
    return counts


@pytest.fixture
def ci_config():
    import yaml

    return yaml.safe_load((REPO / "configs/ci.yaml").read_text())


def test_changing_a_method_parameter_reruns_only_its_scores_tables_and_figures(ci_run, ci_config):
    ci_config["methods"]["trak"]["lambdas"] = [0.001, 0.1]
    plan = _planned(ci_run.parent.parent, ci_config)
    # TRAK's new scores change its removal sets, so its counterfactuals are redone (1 query),
    # its row is the reference of the TRAK ensembles in the retraining table, and it is a
    # group-Shapley baseline (its group scores and the Shapley tables; no counterfactual uses it).
    # It is in the proponents grid, the cost table reads every LDS row, and the report's table
    # pages follow the tables. The checkpoint study's TRAK (step 30) takes the same λ grid: its
    # scores, LDS, table and figure; the step counterfactual resumes TRAK's new counterfactual
    # model (no per-step Journey-TRAK job: its scores do not involve TRAK's λ).
    assert plan == {"compute_scores": 2, "evaluate_lds": 2, "make_lds_table": 1, "plot_lds": 1,
                    "make_retraining_table": 1, "shapley_baseline": 1, "shapley_tables": 1,
                    "make_ablation_tables": 1, "plot_ablations": 1, "retrac_targeted": 1,
                    "plot_retrac": 1, "counterfactual_retrain": 1, "counterfactual_tables": 1,
                    "plot_counterfactual": 1, "plot_proponents": 1, "cost_accounting": 1,
                    "make_checkpoint_table": 1, "plot_checkpoint_selection": 1,
                    "journey_shared_regenerate": 1, "journey_counterfactual_tables": 1,
                    "plot_journey_counterfactual": 1, "report_tables": 1, "all": 1}


def test_adding_a_method_runs_only_its_jobs(ci_run, ci_config):
    ci_config["methods"]["extra"] = {"method": "gradient", "similarity": "cosine",
                                     "n_timesteps": 3, "k": 256, "schedule": "cumulative"}
    plan = _planned(ci_run.parent.parent, ci_config)
    # New features (loss, cumulative timesteps), its scores and evaluation, the LDS table and figure.
    # (Targeted attribution covers every method, so its table and figure follow; the retraining
    # table does not read a gradient method's record.)
    assert plan == {"featurize": 1, "compute_scores": 1, "evaluate_lds": 1, "make_lds_table": 1,
                    "plot_lds": 1, "retrac_targeted": 1, "plot_retrac": 1, "cost_accounting": 1,
                    "report_tables": 1, "all": 1}


def test_changing_an_outlier_setting_reruns_only_the_outlier_table(ci_run, ci_config):
    ci_config["retrac"]["outliers"]["top"] = [1.0, 2.0]
    assert _planned(ci_run.parent.parent, ci_config) == {
        "retrac_outlier_tables": 1, "plot_retrac": 1, "report_tables": 1, "all": 1}


def test_changing_the_model_reruns_training_and_everything_after(ci_run, ci_config):
    ci_config["model"]["dropout"] = 0.1
    plan = _planned(ci_run.parent.parent, ci_config)
    assert "prepare_dataset" not in plan and "draw_lds_subsets" not in plan
    assert plan["train_full_model"] == 1 and plan["generate_samples"] == 1
    # Tune, test and the datamodel family (one job each).
    assert plan["train_lds_models"] == 3 and plan["make_lds_table"] == 1
    # 8 feature sets of the full model (loss, 3 D-TRAK functions, 4 ablation variants) + 2 per
    # checkpoint (K-timestep, unit) + 1 replayed, + 2 per ensemble member (loss, square), + TRAK's
    # and D-TRAK's at the checkpoint study's step 30, + DAS's unit features of the mean output;
    # Journey-TRAK's generated trajectories.
    assert plan["featurize"] == 19 and plan["featurize_replay"] == 2
    assert plan["featurize_journey"] == 1 and plan["compute_generation_scores"] == 1
    # Every score (the generation set is new; the checkpoint study's 2 included), every
    # counterfactual and its step counterfactual (the model is new).
    assert plan["compute_scores"] == 29 and plan["retrac_norm_analyses"] == 1
    # The methods that run the model (K-FAC, EK-FAC, DAS, DAS0, unlearning, DataInf), and the
    # loss reference's self-influence of both models (this run's and the outlier experiment's).
    assert plan["compute_model_scores"] == 6 and plan["compute_model_self_influence"] == 1
    assert plan["compute_model_self_influence_outliers"] == 1
    assert plan["counterfactual_retrain"] == 4 and plan["embed"] == 1
    assert plan["journey_step_retrain"] == 1 and plan["journey_shared_regenerate"] == 4
    assert "train_embedder" not in plan
    # The outlier experiment shares the model section, so its model is retrained too.
    assert plan["train_outlier_model"] == 1 and "prepare_outlier_dataset" not in plan


# Every figure the ci run makes (the default and paper configs make the same set).
FIGURES = ["lds", "ablations", "retraining", "cost", "proponents", "self_influence",
           "counterfactual_box", "counterfactual_grid", "retrac_norms", "retrac_single_example",
           "retrac_correlation", "retrac_manipulation", "retrac_targeted", "retrac_outliers",
           "retrac_source_tracing", "retrac_outlier_proponents", "retrac_outlier_self_influence",
           "shapley_budget", "shapley_counterfactual", "shapley_samples", "checkpoint_selection",
           "journey_counterfactual_box", "journey_counterfactual_grid"]


def test_every_figure_exists_and_the_report_shows_it(ci_run, tmp_path):
    from matplotlib.image import imread

    made = sorted(p.stem for p in (ci_run / "figures").glob("*.png"))
    assert made == sorted(FIGURES)
    for name in FIGURES:
        pdf, png = ci_run / "figures" / f"{name}.pdf", ci_run / "figures" / f"{name}.png"
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000, name
        pixels = imread(png)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100, name
        assert pixels[..., :3].std() > 0.05, f"{name}.png is (nearly) blank"
    html = tmp_path / "report.html"
    proc = snakemake(ci_run.parent.parent, "--report", str(html))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ERROR" not in proc.stderr, proc.stderr[-3000:]     # e.g. a caption's bad rst
    text = html.read_text()
    for name in FIGURES:
        assert f"{name}.png" in text, name
    for table in (ci_run / "tables").glob("*.csv"):
        assert f"{table.stem}.html" in text, table.name
    assert "D-TRAK paper Tables 2, 3 and 6" in text       # a caption


def test_cost_table_adds_up_and_covers_every_method(ci_run):
    from dabench.cost import PHASES, retrain_seconds

    cost = pd.read_csv(ci_run / "tables/cost.csv")
    lds = pd.read_csv(ci_run / "tables/lds.csv")
    assert set(cost["method_id"]) == set(lds.loc[lds["family"] != "reference", "method_id"])
    assert np.allclose(cost[list(PHASES)].sum(axis=1), cost["total_s"], atol=1e-3)  # 4 decimals
    row = cost.set_index("method_id")
    # A 2-model ensemble is charged its two retrains; pixel similarity no gradients at all.
    members = retrain_seconds(ci_run, "datamodel")
    assert row.loc["trak-ensemble-S2", "retrain_s"] == pytest.approx(members[0] + members[1],
                                                                     rel=1e-3)
    assert row.loc["pixel-cosine", "gradients_s"] == 0 and row.loc["trak", "gradients_s"] > 0
    assert row.loc["trak", "tuning_s"] > 0 and row.loc["pixel-cosine", "tuning_s"] == 0


def test_a_killed_retrain_job_resumes_with_the_same_result(ci_run, tmp_path):
    """Kill a retrain job mid-way (SIGKILL to Snakemake and its job), re-run: the finished
    retrains are kept, the rest are trained, and the outputs equal the uninterrupted run's."""
    import os
    import shutil
    import signal

    workdir = tmp_path / "kill"
    # Reuse everything up to the retrains from the finished run (same config, same code).
    shutil.copytree(ci_run.parent.parent / "results", workdir / "results")
    shutil.copytree(ci_run.parent.parent / ".snakemake", workdir / ".snakemake",
                    ignore=shutil.ignore_patterns("locks", "incomplete"))
    target = "results/ci/lds/test/retrains/chunk0.npz"
    reference = np.load(ci_run / "lds/test/retrains/chunk0.npz")
    (workdir / target).unlink()
    partial = workdir / "results/ci/partial/lds/test/chunk0"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(REPO / "configs/ci.yaml"),
           "--cores", "1", target]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 1800               # a guard against a hang, not a speed test
    while time.time() < deadline and len(list(partial.glob("subset*.npz"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(partial.glob("subset*.npz"))
    assert 2 <= len(finished) < 8, "the kill did not land mid-job"
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    # As after any hard kill: release Snakemake's lock, then run the same command again.
    subprocess.run(cmd + ["--unlock"], capture_output=True, check=True, timeout=600)
    rerun = subprocess.run(cmd + ["--rerun-incomplete"], capture_output=True, text=True, timeout=3600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    result = np.load(workdir / target)
    for key in reference.files:
        assert np.array_equal(result[key], reference[key]) or key == "seconds", key
    assert "done in" in rerun.stdout + rerun.stderr
    assert all(not p.exists() or p.stat().st_mtime_ns == t for p, t in stamps.items())


def test_corrupt_checkpoint_is_refused_and_nothing_else_is_lost(ci_run):
    model = ci_run / "models/full/model.safetensors"
    table = ci_run / "tables/lds.csv"
    chunk = ci_run / "lds/test/retrains/chunk0.npz"
    stamps = {p: p.stat().st_mtime_ns for p in (table, chunk)}
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    model.write_bytes(bytes(raw))
    proc = snakemake(ci_run.parent.parent, "results/ci/generation/samples.npz",
                     "--forcerun", "generate_samples")
    assert proc.returncode != 0
    assert "model.safetensors is corrupt or truncated" in proc.stderr + proc.stdout
    for p, stamp in stamps.items():
        assert p.stat().st_mtime_ns == stamp


def test_the_latent_companion_runs_every_stage_in_latent_space(ci_run):
    """The ci config's companion (configs/ci-latent.yaml), run in the same DAG: a tiny base built
    here, a LoRA adapter fine-tuned on two prompted classes, the LDS benchmark with its ceiling,
    features of the adapter only, guided generated queries, the latent counterfactual."""
    import torch

    from dabench import config as C
    from dabench import io
    from dabench.latent import LORA_TARGETS, load_base

    run = ci_run.parent / "ci-latent"
    cfg = C.load(REPO / "configs/ci-latent.yaml")
    base = load_base(run / "base")
    # The data: latents of the base's autoencoder, pixels beside them, one prompt per class.
    train = io.load_npz(run / "data/train.npz")
    assert train["train_images"].shape[1:] == (4, 4, 4) and train["pixels"].shape[1:] == (1, 8, 8)
    assert sorted(train["prompts"].tolist()) == ["a scanned eight", "a scanned five",
                                                 "a scanned three"]
    # The models are adapters on that base: their files hold the LoRA tensors only.
    tensors, meta = io.load_tensors(run / "models/full/model.safetensors")
    assert meta["model_family"] == "latent" and meta["base"].endswith("ci-latent/base")
    assert tensors and all("lora_" in k for k in tensors)
    lora_dims = sum(m.in_features + m.out_features for n, m in base["unet"].named_modules()
                    if isinstance(m, torch.nn.Linear) and n.endswith(LORA_TARGETS))
    p = cfg["latent"]["lora"]["rank"] * lora_dims
    assert sum(v.numel() for v in tensors.values()) == p
    for retrain in sorted((run / "models/lds/test").glob("chunk*/*.safetensors"))[:2]:
        assert io.load_tensors(retrain)[1]["model_family"] == "latent"
    # Features are gradients of the adapter's p parameters (exact for the checkpoint method).
    side = json.loads((run / "features/full/loss_K3u_e1_sparse128/train.json").read_text())
    assert side["p"] == p
    replay = np.load(run / "features/step000040/loss_replay_e1_none/train.npy")
    assert replay.shape == (len(train["labels"]), p)
    # Generated queries: guided by the training prompts in turn, decoded to pixels.
    gen = io.load_npz(run / "generation/samples.npz")
    assert gen["images"].shape[1:] == (4, 4, 4) and gen["pixels"].shape[1:] == (1, 8, 8)
    assert gen["prompt"].tolist() == [i % 3 for i in range(cfg["generation"]["n_samples"])]
    # The LDS table: every method on the query sets it covers, with intervals, and the ceiling.
    df = pd.read_csv(run / "tables/lds.csv")
    for qs in cfg["lds"]["query_sets"]:
        rows = df[df.query_set == qs]
        assert "ceiling" in set(rows.method_id)
        covered = {m for m in cfg["methods"] if m != "journey-trak" or qs == "generation"}
        assert covered <= set(rows.method_id)
        assert np.isfinite(rows[["lds", "ci_low", "ci_high"]].to_numpy()).all()
        assert (rows.ci_low <= rows.lds).all() and (rows.lds <= rows.ci_high).all()
    # The counterfactual: latents compared as latents, decoded for the figure.
    res = io.load_npz(sorted((run / "counterfactual/d-trak").glob("query*.npz"))[0])
    assert res["original"].shape == (4, 4, 4) and res["counterfactual_pixels"].shape == (1, 8, 8)
    per_query = pd.read_csv(run / "tables/counterfactual_per_query.csv")
    assert set(per_query.method_id) == {"random", "d-trak"} and (per_query.l2 > 0).all()
    for name in ("lds", "proponents", "counterfactual_grid", "shapley_samples",
                 "journey_counterfactual_grid"):
        assert (run / f"figures/{name}.png").stat().st_size > 1000
    # Flip augmentation on latents: the mirrored images' latents (not mirrored latents), the flips
    # in the training log, and the counterfactual resumed along the guided latent trajectory.
    from dabench.data import FLIPPED

    assert train[FLIPPED].shape == train["train_images"].shape
    assert not np.allclose(train[FLIPPED], train["train_images"][..., ::-1], atol=1e-3)
    log = io.load_npz(run / "models/full/training_log.npz")
    assert 0.3 < log["flips"].mean() < 0.7
    journey = pd.read_csv(run / "tables/journey_counterfactual.csv")
    assert set(journey.method_id) == {"random", "d-trak", "journey-trak-step"}
    assert journey.space.eq("latent").all() and (journey.median_l2 >= 0).all()
    # Group Shapley on the adapter: the three classes are the groups; sparsified FT prunes only
    # the adapter (its file: A and B with their masks, no base weight).
    groups = json.loads((run / "shapley/groups.json").read_text())
    assert groups["n_groups"] == 3
    pruned, info = io.load_tensors(run / "models/shapley/pruned.safetensors")
    assert {k for k in pruned if k.startswith("model.")} == set(tensors)
    masks = [v for k, v in pruned.items() if k.startswith("mask.")]
    assert masks and all("lora_" in k for k in pruned if k.startswith("mask."))
    kept = sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    assert abs(kept - (1 - cfg["shapley"]["prune"]["ratio"])) < 0.05
    assert info["parameters"] == p and info["nonzero"] < p
    # θ_∅ is the base: F of the base differs from F of the fine-tuned model.
    ref = json.loads((run / "shapley/reference.json").read_text())
    assert ref["full"] != ref["empty"]
    values = pd.read_csv(run / "tables/shapley_values.csv")
    assert len(values) and np.isfinite(values.select_dtypes("number").to_numpy()).all()


def test_the_latent_ddpm_companion_trains_a_whole_unet_on_vq_latents(ci_run):
    """The ci config's second companion (configs/ci-latent-ddpm.yaml, the CelebA-HQ experiment in
    miniature): a VQ autoencoder built here, an unconditional UNet trained whole on its latents,
    the LDS benchmark, and group Shapley with diversity (cluster
    entropy) as its property - sparsified FT pruning the whole UNet (its per-example
    counterfactual: tests/test_latent.py)."""
    from dabench import config as C
    from dabench import io
    from dabench.latent import decode_latents, load_autoencoder

    run = ci_run.parent / "ci-latent-ddpm"
    cfg = C.load(REPO / "configs/ci-latent-ddpm.yaml")
    assert sorted(p.name for p in (run / "base").iterdir() if not p.name.startswith(".")) == [
        "vqvae"]
    vae = load_autoencoder(run / "base")
    assert type(vae).__name__ == "VQModel"
    train = io.load_npz(run / "data/train.npz")
    assert train["train_images"].shape[1:] == (3, 4, 4) and train["pixels"].shape[1:] == (1, 8, 8)
    assert "contexts" not in train and sorted(set(train["labels"].tolist())) == [0, 1, 4, 7]
    # The full model: every parameter trained, its sidecar names the base that decodes it.
    tensors, meta = io.load_tensors(run / "models/full/model.safetensors")
    assert meta["model_family"] == "latent-ddpm" and meta["base"].endswith("ci-latent-ddpm/base")
    assert meta["unet_config"]["in_channels"] == 3 and meta["unet_config"]["sample_size"] == 4
    p = sum(v.numel() for k, v in tensors.items() if k.startswith("model."))
    side = json.loads((run / "features/full/square_K3u_e1_sparse128/train.json").read_text())
    assert side["p"] == p
    # Unconditional generated queries, decoded by the VQ decoder (which quantises first).
    gen = io.load_npz(run / "generation/samples.npz")
    assert gen["images"].shape[1:] == (3, 4, 4) and "prompt" not in gen
    assert np.allclose(gen["pixels"], decode_latents(vae, gen["images"]), atol=1e-5)
    df = pd.read_csv(run / "tables/lds.csv")
    for qs in cfg["lds"]["query_sets"]:
        rows = df[df.query_set == qs]
        assert {"ceiling", *cfg["methods"]} <= set(rows.method_id)
        assert np.isfinite(rows[["lds", "ci_low", "ci_high"]].to_numpy()).all()
    # Group Shapley: the four digits are the groups, the whole UNet is pruned at the ratio, θ_∅
    # is the untrained UNet; F is the entropy of the decoded samples' clusters.
    assert json.loads((run / "shapley/groups.json").read_text())["n_groups"] == 4
    pruned, info = io.load_tensors(run / "models/shapley/pruned.safetensors")
    assert info["parameters"] == p
    kept = info["nonzero"] / p
    assert 1 - cfg["shapley"]["prune"]["ratio"] - 0.05 < kept < 1
    ref = json.loads((run / "shapley/reference.json").read_text())
    assert ref["full"] != ref["empty"] and 0 < ref["full"]["entropy"] <= np.log(3) + 1e-9
    lds = pd.read_csv(run / "tables/shapley_lds.csv")
    assert set(lds.key) >= {"shapley-retrain", "shapley-finetune", "shapley-sparse"}
    assert set(lds.property) >= {"entropy"}
    assert (run / "figures/shapley_samples.png").stat().st_size > 1000

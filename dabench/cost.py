"""Cost accounting: the compute behind each method's scores against its LDS (the Pareto view the
D-TRAK paper describes in its Appendix A.4).

Every number is a measurement the jobs wrote: feature sidecars (``seconds.gradients``,
``seconds.projection`` of each split), score sidecars (``seconds`` of the scoring), the retrain
jobs' per-model ``seconds`` (``lds/<family>/retrains/chunk*.npz``) and Snakemake's benchmark
files (``benchmarks/*.tsv``: the embedder's training and embedding jobs). What every method
shares — training the full model, generating the query samples — is left out. The retrains that
choose λ on the tune subsets are reported apart (``tuning_s``): they are an evaluation protocol
cost, not part of the method.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dabench.layout import artefact_kind, member_index, scores_sidecar

PHASES = ("gradients_s", "projection_s", "scoring_s", "retrain_s", "embedder_s")


def retrain_seconds(run_dir, family: str) -> dict[int, float]:
    """subset row -> seconds of training (and evaluating) its retrains, summed over seeds."""
    out: dict[int, float] = {}
    for chunk in sorted((Path(run_dir) / "lds" / family / "retrains").glob("chunk*.npz")):
        with np.load(chunk) as z:
            for j, s in zip(z["subset"].tolist(), z["seconds"].tolist()):
                out[int(j)] = out.get(int(j), 0.0) + float(s)
    return out


def benchmark_seconds(path) -> float:
    """Wall seconds of one Snakemake benchmark file (its first measurement)."""
    lines = Path(path).read_text().splitlines()
    header, first = lines[0].split("\t"), lines[1].split("\t")
    return float(first[header.index("s")])


def method_cost(run_dir, method_id: str, query_sets, retrain_times: dict | None = None) -> dict:
    """Seconds per phase behind ``method_id``'s scores on ``query_sets`` (each shared input, such
    as the training features both query sets use, counted once). ``retrain_times`` (family ->
    :func:`retrain_seconds`, filled as needed) lets a table of many methods read each family's
    retrain records once."""
    run = Path(run_dir)
    times = {} if retrain_times is None else retrain_times

    def family_times(family):
        if family not in times:
            times[family] = retrain_seconds(run, family)
        return times[family]

    cost = dict.fromkeys(PHASES, 0.0)
    cost["tuning_s"] = 0.0
    features, retrains, embedders, tuned = set(), set(), set(), False
    found = False
    for qs in query_sets:
        sidecar = run / scores_sidecar(method_id, qs)
        if not sidecar.exists():
            continue
        found = True
        meta = json.loads(sidecar.read_text())
        cost["scoring_s"] += float(meta.get("seconds", 0.0))
        n_models = meta.get("params", {}).get("n_models")
        for rel in meta.get("inputs", {}).values():
            kind = artefact_kind(rel)
            if kind is None:
                continue
            what, name = kind
            if what == "features":
                features.add(rel)
            elif what == "retrains" and name == "tune":
                tuned = True
            elif what == "retrains":
                retrains.update((name, j) for j in range(int(n_models)))
            else:
                embedders.add(name)
    if not found:
        raise FileNotFoundError(f"no score sidecar of {method_id!r} under {run / 'scores'}")
    for rel in sorted(features):
        meta = json.loads((run / rel).with_suffix(".json").read_text())
        cost["gradients_s"] += float(meta["seconds"]["gradients"])
        cost["projection_s"] += float(meta["seconds"]["projection"])
        j = member_index(artefact_kind(rel)[1])
        if j is not None:
            retrains.add(("datamodel", j))
    for family, j in sorted(retrains):
        if j not in family_times(family):
            raise FileNotFoundError(f"{method_id}: no recorded retrain {j} of the {family} family "
                                    f"under {run / 'lds' / family / 'retrains'}")
        cost["retrain_s"] += family_times(family)[j]
    for kind in sorted(embedders):
        bench = run / "benchmarks"
        for name in ("train_embedder.tsv", f"embed_{kind}.tsv"):
            if (bench / name).exists():
                cost["embedder_s"] += benchmark_seconds(bench / name)
    if tuned:
        cost["tuning_s"] = float(sum(family_times("tune").values()))
    cost["total_s"] = float(sum(cost[p] for p in PHASES))
    return cost


def pareto_front(cost, lds) -> np.ndarray:
    """Indices of the methods no other method beats on both axes (less or equal compute and
    higher or equal LDS, one of them strictly), ordered by compute."""
    cost, lds = np.asarray(cost, float), np.asarray(lds, float)
    keep = []
    for i in range(len(cost)):
        dominated = np.any((cost <= cost[i]) & (lds >= lds[i])
                           & ((cost < cost[i]) | (lds > lds[i])))
        if not dominated and np.isfinite(lds[i]):
            keep.append(i)
    return np.array(sorted(keep, key=lambda i: (cost[i], -lds[i])), dtype=np.int64)


def cost_table(run_dir, lds_csv):
    """One row per method of the LDS table: its compute per phase and its LDS per query set."""
    import pandas as pd

    lds = pd.read_csv(lds_csv)
    lds = lds[(lds["family"] != "reference") & (lds["subset_family"] == "test")]
    rows, retrain_times = [], {}
    for method_id, sub in lds.groupby("method_id", sort=False):
        first = sub.iloc[0]
        row = {"method_id": method_id, "method": first["method"],
               "variant": first["variant"] if isinstance(first["variant"], str) else "",
               "n_timesteps": first["n_timesteps"], "family": first["family"],
               **method_cost(run_dir, method_id, list(sub["query_set"]), retrain_times)}
        for _, r in sub.iterrows():
            row[f"lds_{r['query_set']}"] = r["lds"]
        rows.append(row)
    df = pd.DataFrame(rows)
    from dabench.naming import row_names

    df.insert(1, "name", row_names(df))
    return df.sort_values("total_s", kind="stable").reset_index(drop=True)


def write_cost_table(run_dir, lds_csv, csv_path, tex_path) -> pd.DataFrame:
    """Workflow stage: tables/cost.csv + .tex; returns the table (for
    :func:`dabench.figures.plot_cost`)."""
    from dabench.tables import booktabs, write_table

    df = cost_table(run_dir, lds_csv)
    show = df.rename(columns={"name": "Method"})
    short = {"gradients_s": "grad.", "projection_s": "proj.", "scoring_s": "score",
             "retrain_s": "retrain", "embedder_s": "embedder", "total_s": "total"}
    cols = {"Method": "Method", **{p: f"{short[p]} (s)" for p in (*PHASES, "total_s")}}
    cols.update({c: f"LDS {c[4:7]}. (\\%)" for c in show.columns if c.startswith("lds_")})
    show = show[list(cols)].rename(columns=cols)
    latex = booktabs(show, "l" + "r" * (len(cols) - 1), precision=1, na_rep="--")
    write_table(df, csv_path, tex_path,
                "% Compute per method (seconds on this run's machine) against its LDS; the full "
                "model's training and the generated queries are shared by all methods and left "
                "out; lambda-tuning retrains: tuning_s in cost.csv\n" + latex)
    return df

"""The Diffusion-ReTrac analyses' tables (CSV + booktabs LaTeX), from the frames that
:mod:`dabench.retrac` computes: gradient norms against timesteps, Algorithm 1's correlation, the
timestep manipulation, targeted attribution (Table 1), outlier detection (Table 2) and image
source tracing (Figure 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dabench.io import atomic_path, load_json
from dabench.retrac import manipulation, norm_analyses, outlier_tables, targeted_table
from dabench.tables import RAW_FLOATS, simple_latex, write_csv


LATEX = {
    "correlation": ({"checkpoint": "Checkpoint", "t_max": "t_max", "spearman": "Spearman",
                     "spearman_p": "p", "slope": "Slope", "slope_p": "Slope p", "n": "n",
                     "spearman_t_norm_all": "Spearman(t, norm), all"},
                    "Algorithm 1: |t_i - t_max| vs the rank of x_i's gradient norm, per checkpoint"),
    "manipulation": ({"method": "Method", "query_set": "Queries", "n_examples": "Examples",
                      "mean_rank_before": "Rank before", "mean_rank_after": "Rank after",
                      "mean_rank_rise": "Mean rise", "share_rising": "Share rising"},
                     "Timestep manipulation: |score| rank of uninfluential examples recomputed "
                     "at t_max (rank 1 = most influential)"),
}


def _write(df: pd.DataFrame, csv_path, tex_path=None, latex: str | None = None) -> None:
    """CSV with 6 significant digits (p-values stay readable), LaTeX beside it when given."""
    write_csv(df, csv_path, RAW_FLOATS)
    if tex_path is not None:
        with atomic_path(tex_path) as tmp:
            Path(tmp).write_text(latex)


def _long_latex(df: pd.DataFrame, what: str) -> str:
    if what == "norms":
        summary = df.groupby("checkpoint").apply(
            lambda g: pd.Series({"n": len(g), "mean_norm": g["norm"].mean(),
                                 "spearman": g["timestep"].corr(g["norm"], method="spearman")}),
            include_groups=False).reset_index()
        return simple_latex(summary, {"checkpoint": "Checkpoint", "n": "Examples",
                                      "mean_norm": "Mean norm", "spearman": "Spearman(t, norm)"},
                            "Training-gradient norm vs logged training timestep, per checkpoint")
    peak = (df.loc[df.groupby(["checkpoint", "curve"])["norm"].idxmax()]
            .rename(columns={"timestep": "peak_timestep", "norm": "peak_norm"}))
    return simple_latex(peak, {"checkpoint": "Checkpoint", "curve": "Curve",
                               "peak_timestep": "Peak t", "peak_norm": "Peak norm",
                               "training_timestep": "Training t"},
                        "Gradient norm across timesteps: where it peaks")


def write_norm_analyses(checkpoints: dict, model_cfg: dict, train_path, training_log_path,
                        replay_norm_paths: dict, manipulation_methods: dict,
                        manipulation_inputs: dict, cfg: dict, seed: int, out: dict) -> dict:
    """Workflow stage: the norm / correlation / manipulation tables (CSV + LaTeX).

    ``out`` maps names (``norms``, ``single_example``, ``correlation``, ``correlation_points``,
    ``manipulation``, ``manipulation_points``) to CSV paths and ``<name>_tex`` to LaTeX paths."""
    tables = norm_analyses(checkpoints, model_cfg, train_path, training_log_path,
                           replay_norm_paths, cfg, seed)
    summary, points = manipulation(manipulation_methods, manipulation_inputs, checkpoints,
                                   model_cfg, train_path, training_log_path, cfg["query_set"],
                                   tables["t_max"], cfg["manipulation"], seed)
    tables.update(manipulation=summary, manipulation_points=points)
    for name in ("norms", "single_example"):
        _write(tables[name], out[name], out[f"{name}_tex"], _long_latex(tables[name], name))
    for name in ("correlation", "manipulation"):
        columns, caption = LATEX[name]
        _write(tables[name], out[name], out[f"{name}_tex"], simple_latex(tables[name], columns, caption))
    for name in ("correlation_points", "manipulation_points"):
        _write(tables[name], out[name])
    for _, r in tables["correlation"].iterrows():
        print(f"[dabench] checkpoint {r['checkpoint']}: t_max={r['t_max']}, Algorithm-1 Spearman "
              f"{r['spearman']:.3f} (p={r['spearman_p']:.2g}), slope {r['slope']:.3f} "
              f"(p={r['slope_p']:.2g})", flush=True)
    for _, r in summary.iterrows():
        print(f"[dabench] timestep manipulation {r['method']}: mean |score| rank "
              f"{r['mean_rank_before']:.1f} -> {r['mean_rank_after']:.1f}", flush=True)
    return tables


def write_targeted(entries: dict, score_paths: dict, ks: list[int], n_queries: int | None,
                   seed: int, csv_path, tex_path) -> pd.DataFrame:
    df = targeted_table(entries, score_paths, ks, n_queries, seed)
    wide = df.pivot_table(index=["method", "variant", "query_set"], columns="k", values="distinct",
                          sort=False).reset_index()
    wide.columns = [f"top{c}" if isinstance(c, (int, np.integer)) else c for c in wide.columns]
    cols = {"method": "Method", "variant": "Variant", "query_set": "Queries",
            **{c: c.replace("top", "Top ") for c in wide.columns if str(c).startswith("top")}}
    _write(df, csv_path, tex_path, simple_latex(
        wide, cols, "Targeted attribution: proportion of distinct examples among the top-k of all "
                    "queries (Diffusion-ReTrac Table 1)"))
    return df


def write_outlier_tables(entries: dict, self_paths: dict, score_paths: dict, train_path,
                         validation_path, info_path, multiples: list[float], ks: list[int],
                         out: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    detection, tracing = outlier_tables(entries, self_paths, score_paths, train_path,
                                        validation_path, load_json(info_path), multiples, ks)
    wide = detection.pivot_table(index="method", columns="top", values="outlier_share",
                                 sort=False).reset_index()
    wide.columns = [f"Top {c}" if not isinstance(c, str) else c for c in wide.columns]
    _write(detection, out["outliers"], out["outliers_tex"], simple_latex(
        wide, {c: ("Method" if c == "method" else c) for c in wide.columns},
        "Outlier detection: share of outliers among the top self-influence ranks "
        "(Diffusion-ReTrac Table 2)"))
    _write(tracing, out["source_tracing"], out["source_tracing_tex"], simple_latex(
        tracing, {"method": "Method", "query_source": "Query source", "k": "k",
                  "precision": "Precision", "random": "Random"},
        "Image source tracing: share of top-k proponents from the query's source "
        "(Diffusion-ReTrac Figure 4)"))
    return detection, tracing

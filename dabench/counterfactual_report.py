"""The counterfactual evaluation's tables and figures (D-TRAK §4.4, Figures 3-4), from the
retrain results :mod:`dabench.counterfactual` computes."""

from __future__ import annotations

import pandas as pd

from dabench.counterfactual import RANDOM, summarize
from dabench.embedding import load_embedder
from dabench.figures import (plot_counterfactual_box, plot_counterfactual_grid, plot_journey_box,
                             plot_journey_grid)
from dabench.io import load_npz, save_text
from dabench.methods import build
from dabench.naming import display_name
from dabench.tables import RAW_FLOATS, simple_latex, write_csv


def method_labels(entries: dict) -> dict:
    """method id -> {label, family} of the counterfactual's methods (config entries), plus the
    random control."""
    out = {}
    for m, entry in entries.items():
        method = build(entry)
        out[m] = {"label": display_name(method.label), "family": method.family}
    return {RANDOM: {"label": "Random", "family": "reference"}, **out}


def _summarize_and_write(summarize_fn, result_paths: dict, labels: dict, embedder_cfg: dict,
                         classifier_path, csv_path, per_query_path):
    """Load the results, summarise them with ``summarize_fn`` on the run's embedder, label the
    rows and write both CSVs; returns (summary, embedder kind)."""
    embedder = load_embedder(embedder_cfg, classifier_path)
    results = {m: [load_npz(p) for p in paths] for m, paths in result_paths.items()}
    per_query, summary = summarize_fn(results, embedder.embed)
    for df in (per_query, summary):
        df.insert(1, "method", df["method_id"].map(lambda m: labels[m]["label"]))
        df.insert(2, "family", df["method_id"].map(lambda m: labels[m]["family"]))
    summary["embedder"] = embedder.kind
    write_csv(per_query, per_query_path, RAW_FLOATS)
    write_csv(summary, csv_path, RAW_FLOATS)
    return summary, embedder.kind


def write_counterfactual_tables(result_paths: dict, labels: dict, embedder_cfg: dict,
                                classifier_path, csv_path, tex_path, per_query_path) -> None:
    """``result_paths``: method id -> result .npz paths; ``labels``: :func:`method_labels`.
    Writes the per-method medians (CSV + booktabs LaTeX) and the per-query distances."""
    summary, kind = _summarize_and_write(summarize, result_paths, labels, embedder_cfg,
                                         classifier_path, csv_path, per_query_path)
    space = summary["space"].iloc[0]
    scale = ("between the latent encodings (D-TRAK's latent models)" if space == "latent"
             else "on the [0, 1] scale")
    save_text(tex_path, simple_latex(
        summary, {"method": "Method", "k": "k", "n_queries": "queries",
                  "median_l2": f"median {space} L2 $\\uparrow$",
                  "median_cosine": f"median {kind} cosine $\\downarrow$"},
        "Counterfactual evaluation (D-TRAK Sec. 4.4): top-k influencers removed, retrained, "
        f"regenerated from the same noise; {space} L2 {scale}."))


def write_counterfactual_figures(per_query_csv, result_paths: dict, labels: dict, box_paths,
                                 grid_paths) -> None:
    """Box plots of the distances (D-TRAK Fig. 3) and the original-vs-counterfactual grid
    (Fig. 4)."""
    per_query = pd.read_csv(per_query_csv)
    plot_counterfactual_box(per_query, *box_paths)
    results = {labels[m]["label"]: [load_npz(p) for p in paths] for m, paths in result_paths.items()}
    plot_counterfactual_grid(results, *grid_paths)


def journey_labels(entries: dict) -> dict:
    """:func:`method_labels` plus the per-step Journey-TRAK rows."""
    from dabench.journey_counterfactual import JOURNEY_STEP

    return {**method_labels(entries),
            JOURNEY_STEP: {"label": "J-TRAK (per step)", "family": "trak"}}


def write_journey_tables(result_paths: dict, labels: dict, embedder_cfg: dict, classifier_path,
                         csv_path, tex_path, per_query_path) -> None:
    """The counterfactual at a sampling step (D-TRAK Figures 21 / 23): per (method, timestep)
    medians (CSV + LaTeX) and the distances of every (query, timestep)."""
    from dabench.journey_counterfactual import summarize_steps

    summary, kind = _summarize_and_write(summarize_steps, result_paths, labels, embedder_cfg,
                                         classifier_path, csv_path, per_query_path)
    space = summary["space"].iloc[0]
    save_text(tex_path, simple_latex(
        summary, {"timestep": "t", "method": "Method", "k": "k", "n_queries": "queries",
                  "median_l2": f"median {space} L2 $\\uparrow$",
                  "median_cosine": f"median {kind} cosine $\\downarrow$"},
        "Counterfactual evaluation at a sampling step (D-TRAK App. E): top-k influencers "
        "removed, retrained, the original trajectory resumed at the step of timestep t."))


def write_journey_figures(per_query_csv, result_paths: dict, labels: dict, box_paths,
                          grid_paths) -> None:
    """Box plots per timestep (D-TRAK Figs. 21 / 23) and the originals beside each method's
    regeneration from each step (Figs. 22 / 24)."""
    per_query = pd.read_csv(per_query_csv)
    plot_journey_box(per_query, *box_paths)
    results = {labels[m]["label"]: [load_npz(p) for p in paths] for m, paths in result_paths.items()}
    plot_journey_grid(results, *grid_paths)

"""Figures of the methods' LDS: the benchmark bars (D-TRAK Table 1 as a figure), the ablations,
the retraining-based methods against their number of models, and compute against LDS (the
Pareto view)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dabench.figures.style import (
    TWO_COLUMN, colour, family_legend, finish_panels, save, shade, style)
from dabench.methods.base import family_style
from dabench.naming import row_names


def plot_lds(df, pdf_path, png_path):
    """Horizontal bars of LDS (%) per method with bootstrap intervals, one panel per query set;
    the retraining ceiling drawn as a dashed line."""
    plt = style()
    query_sets = [q for q in ("validation", "generation") if q in set(df["query_set"])]
    methods = df[df["family"] != "reference"]
    names = list(dict.fromkeys(row_names(methods)))
    height = 1.0 + 0.22 * max(len(names), 1)
    fig, axes = plt.subplots(1, len(query_sets), figsize=(TWO_COLUMN, height), sharey=True,
                             squeeze=False)
    for ax, qs in zip(axes[0], query_sets):
        sub = methods[methods["query_set"] == qs]
        y = np.array([names.index(n) for n in row_names(sub)])
        err = np.vstack([sub["lds"] - sub["ci_low"], sub["ci_high"] - sub["lds"]])
        ax.barh(y, sub["lds"], xerr=err, color=[colour(f) for f in sub["family"]], height=0.7,
                error_kw={"elinewidth": 0.6, "capsize": 1.5})
        for missing in sorted(set(range(len(names))) - set(y.tolist())):
            ax.text(0.01, missing, " not defined for these queries", transform=ax.get_yaxis_transform(),
                    va="center", fontsize=5.5, color="#8c8c8c")
        ceiling = df[(df["family"] == "reference") & (df["query_set"] == qs)]
        for _, row in ceiling.iterrows():
            ax.axvline(row["lds"], color=colour("reference"), ls="--", lw=0.8)
            ax.annotate(f"retraining ceiling {row['lds']:.1f}", (row["lds"], 0.5),
                        xycoords=("data", "axes fraction"), xytext=(-3, 0),
                        textcoords="offset points", rotation=90, ha="right", va="center",
                        fontsize=6, color=colour("reference"))
        ax.axvline(0, color="black", lw=0.5)
        ax.set_title(f"{qs.capitalize()} queries")
        ax.set_xlabel("LDS (%)")
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(-0.6, len(names) + 0.2)
    axes[0][0].invert_yaxis()
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1))
    family_legend(fig, methods["family"])
    save(fig, pdf_path, png_path)
    plt.close(fig)


def write_lds_figure(csv_path, pdf_path, png_path) -> None:
    """Workflow stage: ``figures/lds.pdf`` / ``.png`` from ``tables/lds.csv``."""
    import pandas as pd

    plot_lds(pd.read_csv(csv_path), pdf_path, png_path)


AXIS_LABELS = {"n_timesteps": "timesteps K", "k": "projection dim. k",
               "schedule": "timestep schedule", "projection": "projection"}


def plot_ablations(df, lam, pdf_path, png_path):
    """D-TRAK Appendix-B style: LDS vs K, vs k, schedule, projection; tune LDS vs λ."""
    import pandas as pd

    plt = style()
    axes_order = [a for a in ("n_timesteps", "k", "schedule", "projection") if a in set(df["axis"])]
    fig = plt.figure(figsize=(TWO_COLUMN, 3.8 if len(lam) else 1.9))
    grid = fig.add_gridspec(2 if len(lam) else 1, max(len(axes_order), 1), hspace=0.7, wspace=0.45)
    axes = [fig.add_subplot(grid[0, i]) for i in range(len(axes_order))]
    base_colour = colour("trak")
    for ax, axis in zip(axes, axes_order):
        sub = df[df["axis"] == axis]
        err = [sub["lds"] - sub["ci_low"], sub["ci_high"] - sub["lds"]]
        numeric = pd.to_numeric(sub["value"], errors="coerce")
        if numeric.notna().all():
            ax.errorbar(numeric, sub["lds"], yerr=err, color=base_colour, marker="o", ms=3,
                        capsize=2, elinewidth=0.6)
            ax.set_xscale("log", base=2 if axis == "k" else 10)
            ax.set_xticks(numeric, [str(int(v)) for v in numeric], fontsize=6, rotation=45)
            ax.minorticks_off()
        else:
            ax.bar(range(len(sub)), sub["lds"], yerr=err, color=base_colour, width=0.6,
                   error_kw={"elinewidth": 0.6, "capsize": 2})
            ax.set_xticks(range(len(sub)), sub["value"])
        ax.set_xlabel(AXIS_LABELS[axis])
        ax.set_ylabel("LDS (%)" if ax is axes[0] else "")
    if len(lam) and len(df):
        # One curve per method at the ablation's query set; D-TRAK only with the base function.
        # (The ensembles share their single model's curves' shape; Tables 7-8 show them.)
        lam = lam[(lam["query_set"] == df["query_set"].iloc[0])
                  & ~lam["method"].str.contains("ensemble", regex=False)
                  & ((lam["method"] != "D-TRAK")
                     | (lam["variant"].str.split(",").str[0] == df["function"].iloc[0]))]
    if len(lam):
        ax = fig.add_subplot(grid[1, : max(len(axes_order) // 2, 1)])
        for (label, variant, k_steps), sub in lam.groupby(["method", "variant", "n_timesteps"]):
            fam = "trak" if label in ("TRAK", "D-TRAK") else "influence"
            style_kw = {"ls": {"D-TRAK": "-", "TRAK": "--", "Relative IF": "-."}.get(label, ":")}
            few = k_steps == lam["n_timesteps"].min()      # fewer timesteps: thinner, lighter
            ax.plot(sub["lambda_relative"], sub["tune_lds"], marker="o" if not few else ".",
                    ms=2.5, lw=0.6 if few else 1.1, alpha=0.55 if few else 1.0, color=colour(fam),
                    label=f"{label} ({variant}, K={int(k_steps)})", **style_kw)
        ax.set_xscale("log")
        ax.set_xlabel("λ / mean eigenvalue")
        ax.set_ylabel("LDS (%), tune subsets")
        ax.set_title("choosing λ", fontsize=7)
        ax.legend(fontsize=6, frameon=False, loc="center left", bbox_to_anchor=(1.05, 0.5))
    title = f"{df['method'].iloc[0]} ({df['function'].iloc[0]}), {df['query_set'].iloc[0]} queries" if len(df) else ""
    fig.suptitle(title, fontsize=8)
    save(fig, pdf_path, png_path)
    plt.close(fig)


def write_ablation_figure(csv_path, lambda_csv_path, pdf_path, png_path) -> None:
    """Workflow stage: ``figures/ablations.pdf`` / ``.png``."""
    import pandas as pd

    lam = pd.read_csv(lambda_csv_path) if Path(lambda_csv_path).stat().st_size > 1 else pd.DataFrame()
    plot_ablations(pd.read_csv(csv_path), lam, pdf_path, png_path)


def plot_retraining(df, pdf_path, png_path):
    """LDS against the number of retrained models (log₂ axis), one line per method and setting,
    one panel per query set; dashed: the single full-model method an ensemble averages."""
    plt = style()
    query_sets = [q for q in ("validation", "generation") if q in set(df["query_set"])]
    fig, axes = plt.subplots(1, len(query_sets), figsize=(TWO_COLUMN * 0.8, 2.1), squeeze=False,
                             sharey=True)
    lines = df[~df["reference"]]
    keys = list(dict.fromkeys(zip(lines["method"], lines["setting"])))
    fams = {key: lines[(lines["method"] == key[0]) & (lines["setting"] == key[1])]["family"].iloc[0]
            for key in keys}
    for ax, qs in zip(axes[0], query_sets):
        for i, key in enumerate(keys):
            fam = fams[key]
            same = [k for k in keys if fams[k] == fam]
            c = shade(fam, same.index(key), len(same))
            sub = lines[(lines["method"] == key[0]) & (lines["setting"] == key[1])
                        & (lines["query_set"] == qs)].sort_values("n_models")
            label = f"{key[0]} ({key[1]})" if key[1] else key[0]
            ax.errorbar(sub["n_models"], sub["lds"], yerr=[sub["lds"] - sub["ci_low"],
                        sub["ci_high"] - sub["lds"]], color=c, marker="o", ms=3, capsize=2,
                        elinewidth=0.6, label=label)
            ref = df[df["reference"] & (df["method"] == key[0].replace(" (ensemble)", ""))
                     & (df["setting"] == key[1]) & (df["query_set"] == qs)]
            for _, row in ref.iterrows():
                ax.axhline(row["lds"], color=c, ls="--", lw=0.8,
                           label=f"{row['method']} ({key[1]}), full model")
        ax.set_xscale("log", base=2)
        ticks = sorted(set(lines["n_models"].astype(int)))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(f"{qs.capitalize()} queries")
        ax.set_xlabel("retrained models (S or M)")
    finish_panels(plt, fig, axes[0], "LDS (%)", pdf_path, png_path)


def write_retraining_figure(csv_path, pdf_path, png_path) -> None:
    import pandas as pd

    df = pd.read_csv(csv_path)
    df["setting"] = df["setting"].fillna("")     # Empirical influence / Datamodel: no setting
    plot_retraining(df, pdf_path, png_path)


def plot_cost(df, pdf_path, png_path):
    """LDS against the compute behind each method (log axis), one panel per query set, colour =
    method family; the Pareto front (no method cheaper and better) joined and labelled."""
    from dabench.cost import pareto_front

    plt = style()
    query_sets = [q for q in ("validation", "generation") if f"lds_{q}" in df.columns]
    fig, axes = plt.subplots(1, len(query_sets), figsize=(TWO_COLUMN, 2.6), squeeze=False)
    families = list(dict.fromkeys(df["family"]))
    for ax, qs in zip(axes[0], query_sets):
        sub = df[np.isfinite(df[f"lds_{qs}"].astype(float))].reset_index(drop=True)
        x = np.maximum(sub["total_s"].to_numpy(float), 1e-3)
        y = sub[f"lds_{qs}"].to_numpy(float)
        for fam in families:
            sel = (sub["family"] == fam).to_numpy()
            if sel.any():
                ax.scatter(x[sel], y[sel], s=12, color=colour(fam), zorder=3,
                           label=family_style(fam).label,
                           edgecolor="white", linewidth=0.4)
        front = pareto_front(x, y)
        ax.step(x[front], y[front], where="post", color="black", lw=0.7, ls="--", zorder=2,
                label="Pareto front")
        ax.set_xscale("log")
        lo, hi = np.log10(x.min()), np.log10(x.max())
        last, span = None, max(np.ptp(y), 1e-9)
        for i in front:
            if last is not None and abs(y[i] - y[last]) < 0.08 * span:
                continue            # its label would sit on the one just written
            right = np.log10(x[i]) > (lo + hi) / 2
            ax.annotate(sub.loc[i, "name"], (x[i], y[i]), xytext=(-4 if right else 4, 3),
                        textcoords="offset points", fontsize=5.5, ha="right" if right else "left")
            last = i
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel("compute per method (s, log scale)")
        ax.set_title(f"{qs.capitalize()} queries")
    finish_panels(plt, fig, axes[0], "LDS (%)", pdf_path, png_path)


def plot_checkpoint_selection(df, pdf_path, png_path):
    """D-TRAK Figures 2 / 6–8: LDS against the training epoch of the checkpoint the features come
    from, one line per method and setting (solid D-TRAK, dashed TRAK; shades by K), one panel per
    query set; the final model's point is ringed."""
    plt = style()
    query_sets = [q for q in ("validation", "generation") if q in set(df["query_set"])]
    fig, axes = plt.subplots(1, max(len(query_sets), 1), figsize=(TWO_COLUMN * 0.8, 2.1),
                             squeeze=False, sharey=True)
    keys = list(dict.fromkeys(zip(df["method"], df["variant"], df["n_timesteps"])))
    for ax, qs in zip(axes[0], query_sets):
        for key in keys:
            same = [k for k in keys if k[0] == key[0]]
            sub = df[(df["method"] == key[0]) & (df["variant"] == key[1])
                     & (df["n_timesteps"] == key[2]) & (df["query_set"] == qs)].sort_values("step")
            if sub.empty:
                continue
            fam = sub["family"].iloc[0] if isinstance(sub["family"].iloc[0], str) else "trak"
            c = shade(fam, same.index(key), len(same)) if key[0] != "TRAK" else \
                shade("influence", same.index(key), len(same))
            ax.errorbar(sub["epoch"], sub["lds"], yerr=[sub["lds"] - sub["ci_low"],
                        sub["ci_high"] - sub["lds"]], color=c, marker="o", ms=3, capsize=2,
                        elinewidth=0.6, ls="--" if key[0] == "TRAK" else "-",
                        label=f"{key[0]} ({key[1]}, K={key[2]})")
            last = sub[sub["final"].astype(bool)]
            ax.scatter(last["epoch"], last["lds"], s=40, facecolors="none", edgecolors=c, lw=0.8)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(f"{qs.capitalize()} queries")
        ax.set_xlabel("checkpoint (training epoch)")
        ticks = sorted(set(df["epoch"]))
        ax.set_xticks(ticks, [f"{t:.0f}" for t in ticks])
    finish_panels(plt, fig, axes[0], "LDS (%)", pdf_path, png_path)


def write_checkpoint_figure(csv_path, pdf_path, png_path) -> None:
    """Workflow stage: ``figures/checkpoint_selection.pdf`` / ``.png``."""
    import pandas as pd

    plot_checkpoint_selection(pd.read_csv(csv_path), pdf_path, png_path)

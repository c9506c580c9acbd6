"""One figure style for every figure: fonts, one/two-column sizes, a colour per method family,
vector PDF plus PNG preview."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ONE_COLUMN = 3.3   # inches, a typical single-column width
TWO_COLUMN = 6.9

FAMILY_COLOURS = {
    "reference": "#4d4d4d",
    "similarity": "#8c8c8c",
    "gradient": "#1f77b4",
    "trak": "#d62728",
    "influence": "#ff7f0e",
    "tracin": "#2ca02c",
    "retraining": "#9467bd",
    "shapley": "#8c564b",
}


def style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8,
        "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7, "axes.linewidth": 0.6,
        "axes.spines.top": False, "axes.spines.right": False, "xtick.major.width": 0.6,
        "ytick.major.width": 0.6, "lines.linewidth": 1.2, "savefig.dpi": 200,
        "savefig.bbox": "tight", "pdf.fonttype": 42, "ps.fonttype": 42,
    })
    return plt


def colour(family: str) -> str:
    return FAMILY_COLOURS.get(family, "#17becf")


def save(fig, pdf_path, png_path) -> None:
    from dabench.io import atomic_path

    for path, fmt in ((pdf_path, "pdf"), (png_path, "png")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt)


def plot_lds(df, pdf_path, png_path):
    """Horizontal bars of LDS (%) per method with bootstrap intervals, one panel per query set;
    the retraining ceiling drawn as a dashed line."""
    plt = style()
    query_sets = [q for q in ("validation", "generation") if q in set(df["query_set"])]
    methods = df[df["family"] != "reference"]
    names = list(dict.fromkeys(methods["method"] + " (" + methods["variant"].astype(str) + ")"))
    height = 0.6 + 0.22 * max(len(names), 1)
    fig, axes = plt.subplots(1, len(query_sets), figsize=(TWO_COLUMN, height), sharey=True,
                             squeeze=False)
    for ax, qs in zip(axes[0], query_sets):
        sub = methods[methods["query_set"] == qs]
        label = sub["method"] + " (" + sub["variant"].astype(str) + ")"
        y = np.array([names.index(n) for n in label])
        err = np.vstack([sub["lds"] - sub["ci_low"], sub["ci_high"] - sub["lds"]])
        ax.barh(y, sub["lds"], xerr=err, color=[colour(f) for f in sub["family"]], height=0.7,
                error_kw={"elinewidth": 0.6, "capsize": 1.5})
        ceiling = df[(df["family"] == "reference") & (df["query_set"] == qs)]
        for _, row in ceiling.iterrows():
            ax.axvline(row["lds"], color=colour("reference"), ls="--", lw=0.8)
            ax.text(row["lds"], len(names) - 0.4, " retraining ceiling", fontsize=6,
                    va="bottom", ha="right", color=colour("reference"))
        ax.axvline(0, color="black", lw=0.5)
        ax.set_title(f"{qs.capitalize()} queries")
        ax.set_xlabel("LDS (%)")
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(-0.6, len(names) + 0.2)
    axes[0][0].invert_yaxis()
    save(fig, pdf_path, png_path)
    plt.close(fig)


def write_lds_figure(csv_path, pdf_path, png_path) -> None:
    """Workflow stage: ``figures/lds.pdf`` / ``.png`` from ``tables/lds.csv``."""
    import pandas as pd

    plot_lds(pd.read_csv(csv_path), pdf_path, png_path)

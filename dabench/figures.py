"""One figure style for every figure: fonts, one/two-column sizes, a colour per method family,
vector PDF plus PNG preview."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dabench.tables import row_names

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
    names = list(dict.fromkeys(row_names(methods)))
    height = 0.6 + 0.22 * max(len(names), 1)
    fig, axes = plt.subplots(1, len(query_sets), figsize=(TWO_COLUMN, height), sharey=True,
                             squeeze=False)
    for ax, qs in zip(axes[0], query_sets):
        sub = methods[methods["query_set"] == qs]
        y = np.array([names.index(n) for n in row_names(sub)])
        err = np.vstack([sub["lds"] - sub["ci_low"], sub["ci_high"] - sub["lds"]])
        ax.barh(y, sub["lds"], xerr=err, color=[colour(f) for f in sub["family"]], height=0.7,
                error_kw={"elinewidth": 0.6, "capsize": 1.5})
        ceiling = df[(df["family"] == "reference") & (df["query_set"] == qs)]
        for _, row in ceiling.iterrows():
            ax.axvline(row["lds"], color=colour("reference"), ls="--", lw=0.8,
                       label=f"retraining ceiling ({row['lds']:.1f})")
        if len(ceiling):
            ax.legend(loc="lower right", frameon=False, fontsize=6)
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
        lam = lam[(lam["query_set"] == df["query_set"].iloc[0])
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
                    label=f"{label} ({variant}, K={k_steps})", **style_kw)
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

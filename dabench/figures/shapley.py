"""Figures of group Shapley: group LDS against compute (sparsified-FT paper Figure 2), the
counterfactual change (Figure 3) and its samples (Figure 4)."""

from __future__ import annotations

import numpy as np

from dabench.figures.style import (
    ONE_COLUMN, TWO_COLUMN, blank, colour, finish_panels, image_grid, save, show_image, style)


WAY_COLOURS = {"Sparsified FT": "#8c564b", "FT": "#c49c94", "Retraining": "#4d4d4d"}


def plot_shapley_budget(df, prop: str, pdf_path, png_path):
    """Group LDS of Shapley values against compute budget (1 unit = retraining and evaluating one
    model), one line per way, one panel per α (sparsified-FT paper Figures 2 and 6)."""
    plt = style()
    sub = df[df["property"] == prop]
    alphas = sorted(set(sub["alpha"]))
    fig, axes = plt.subplots(1, len(alphas), figsize=(min(TWO_COLUMN, 2.3 * len(alphas) + 1.2),
                                                      2.0), squeeze=False, sharey=True)
    for ax, a in zip(axes[0], alphas):
        for way in [w for w in WAY_COLOURS if w in set(sub["way"])]:
            line = sub[(sub["way"] == way) & (sub["alpha"] == a)].sort_values("budget")
            ax.errorbar(line["budget"], line["lds"], yerr=[line["lds"] - line["ci_low"],
                        line["ci_high"] - line["lds"]], color=WAY_COLOURS[way], marker="o",
                        ms=2.5, elinewidth=0.5, capsize=1.5, alpha=0.9, label=way)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel("compute budget (retrained models)")
        ax.set_title(f"α = {a}")
    finish_panels(plt, fig, axes[0], "group LDS (%)", pdf_path, png_path)


def plot_shapley_counterfactual(df, pdf_path, png_path):
    """Relative change of F after removing each method's top groups, mean ± s.d. over retrain
    seeds (sparsified-FT paper Figure 3)."""
    plt = style()
    df = df.sort_values("change_pct")
    fig, ax = plt.subplots(figsize=(ONE_COLUMN, 0.35 * len(df) + 0.6))
    y = np.arange(len(df))
    ax.barh(y, df["change_pct"], xerr=df["change_sd"], color=[colour(f) for f in df["family"]],
            height=0.6, error_kw={"elinewidth": 0.6, "capsize": 2})
    ax.set_yticks(y, df["method"])
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("relative change in F (%)")
    fig.tight_layout()
    save(fig, pdf_path, png_path)
    plt.close(fig)


def plot_shapley_samples(rows: dict, pdf_path, png_path):
    """Samples from the same initial noises of the models retrained without each method's top
    groups (rows), beside the full-data retrain (sparsified-FT paper Figure 4)."""
    plt = style()
    labels = list(rows)
    cols = max(len(v) for v in rows.values())
    size = min(0.55, (TWO_COLUMN - 1.2) / cols)
    fig, axes = image_grid(plt, len(labels), cols, size, left=1.2)
    for i, label in enumerate(labels):
        for j in range(cols):
            if j < len(rows[label]):
                show_image(axes[i][j], rows[label][j])
            else:
                blank(axes[i][j])
        axes[i][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=6)
    save(fig, pdf_path, png_path)
    plt.close(fig)

"""Figures of the counterfactual evaluation: distance box plots (D-TRAK Figure 3) and the
original-vs-counterfactual grid (Figure 4)."""

from __future__ import annotations

import numpy as np

from dabench.figures.style import TWO_COLUMN, image_grid, save, shade, show_image, style


def _method_boxes(ax, per_query, methods: list, key: str) -> None:
    """One box of column ``key`` per method (in its family's shade), the queries as points."""
    data = [per_query.loc[per_query["method"] == m, key].to_numpy() for m in methods]
    box = ax.boxplot(data, patch_artist=True, widths=0.55, medianprops={"color": "black"},
                     flierprops={"markersize": 2})
    families = [per_query.loc[per_query["method"] == m, "family"].iloc[0] for m in methods]
    for j, (patch, fam) in enumerate(zip(box["boxes"], families)):
        patch.set_facecolor(shade(fam, families[:j].count(fam), families.count(fam)))
        patch.set_alpha(0.75)
    for i, d in enumerate(data):
        ax.scatter(np.full(len(d), i + 1) + np.linspace(-0.12, 0.12, len(d)), d, s=5,
                   color="black", zorder=3)


def plot_counterfactual_box(per_query, pdf_path, png_path):
    """Two panels: pixel (a latent model's: latent) L2 (higher = the removed examples mattered
    more) and embedding cosine
    (lower = more), one box per method, queries as points (D-TRAK Fig. 3)."""
    plt = style()
    methods = list(dict.fromkeys(per_query["method"]))
    fig, axes = plt.subplots(1, 2, figsize=(TWO_COLUMN * 0.75, 1.9))
    space = per_query["space"].iloc[0] if "space" in per_query else "pixel"
    for ax, (key, title) in zip(axes, (("l2", f"{space} L2 distance ↑"),
                                       ("cosine", "embedding cosine similarity ↓"))):
        _method_boxes(ax, per_query, methods, key)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=20, ha="right")
        ax.set_title(title)
    fig.tight_layout()
    save(fig, pdf_path, png_path)
    plt.close(fig)


def plot_counterfactual_grid(results: dict, pdf_path, png_path):
    """Rows = queries; columns = the original sample, then each method's counterfactual
    regeneration from the same noise (D-TRAK Fig. 4). ``results``: label -> result dicts."""
    plt = style()
    labels = list(results)
    queries = [int(r["query"]) for r in results[labels[0]]]
    cols = 1 + len(labels)
    size = min(0.75, (TWO_COLUMN - 0.3) / cols)
    fig, axes = image_grid(plt, len(queries), cols, size, left=0.3, top=0.2)

    for i, q in enumerate(queries):
        first = results[labels[0]][i]
        # A latent model's results carry the decoded images beside the latents.
        show_image(axes[i][0], first.get("original_pixels", first["original"]))
        axes[i][0].set_ylabel(f"#{q}", fontsize=6)
        for j, label in enumerate(labels):
            r = results[label][i]
            show_image(axes[i][j + 1], r.get("counterfactual_pixels", r["counterfactual"]))
    for j, title in enumerate(["original"] + labels):
        axes[0][j].set_title(title, fontsize=6, pad=2)
    save(fig, pdf_path, png_path)
    plt.close(fig)


def plot_journey_box(per_query, pdf_path, png_path):
    """The counterfactual at a sampling step (D-TRAK Figs. 21 / 23): rows = the two distances,
    columns = the timesteps; one box per method, queries as points."""
    plt = style()
    timesteps = sorted(set(per_query["timestep"]), reverse=True)
    methods = list(dict.fromkeys(per_query["method"]))
    space = per_query["space"].iloc[0] if "space" in per_query else "pixel"
    fig, axes = plt.subplots(2, len(timesteps), figsize=(TWO_COLUMN * 0.8, 3.4), squeeze=False,
                             sharey="row")
    for col, t in enumerate(timesteps):
        at = per_query[per_query["timestep"] == t]
        for row, (key, title) in enumerate((("l2", f"{space} L2 distance ↑"),
                                            ("cosine", "embedding cosine similarity ↓"))):
            ax = axes[row][col]
            _method_boxes(ax, at, methods, key)
            ax.set_xticks(range(1, len(methods) + 1), methods if row else [""] * len(methods),
                          rotation=25, ha="right")
            ax.set_title(f"t = {t}" if row == 0 else "", fontsize=7)
            if col == 0:
                ax.set_ylabel(title, fontsize=6.5)
    fig.tight_layout()
    save(fig, pdf_path, png_path)
    plt.close(fig)


def plot_journey_grid(results: dict, pdf_path, png_path):
    """Rows = queries; the original sample, then per timestep each method's final image when
    the trajectory is resumed at that step with its retrained model (D-TRAK Figs. 22 / 24).
    ``results``: label -> result dicts of every (query, timestep)."""
    plt = style()
    labels = list(results)
    first = results[labels[0]]
    queries = list(dict.fromkeys(int(r["query"]) for r in first))
    timesteps = sorted({int(r["timestep"]) for r in first}, reverse=True)
    cols = 1 + len(timesteps) * len(labels)
    size = min(0.75, (TWO_COLUMN - 0.3) / cols)
    fig, axes = image_grid(plt, len(queries), cols, size, left=0.3, top=0.32)

    def find(label, q, t):
        return next(r for r in results[label] if int(r["query"]) == q and int(r["timestep"]) == t)

    for i, q in enumerate(queries):
        ref = find(labels[0], q, timesteps[0])
        show_image(axes[i][0], ref.get("original_pixels", ref["original"]))
        axes[i][0].set_ylabel(f"#{q}", fontsize=6)
        for a, t in enumerate(timesteps):
            for b, label in enumerate(labels):
                r = find(label, q, t)
                show_image(axes[i][1 + a * len(labels) + b],
                           r.get("counterfactual_pixels", r["counterfactual"]))
    axes[0][0].set_title("original", fontsize=6, pad=2)
    for a, t in enumerate(timesteps):
        for b, label in enumerate(labels):
            axes[0][1 + a * len(labels) + b].set_title(f"{label}\nt = {t}", fontsize=5, pad=2)
    save(fig, pdf_path, png_path)
    plt.close(fig)

"""Example grids: each method's proponents and opponents of a few queries, and the training
examples of highest and lowest self-influence."""

from __future__ import annotations

from dabench.figures.style import TWO_COLUMN, blank, save, show_image, style


def _example_grid(plt, n_rows: int, k: int, lead: int, row_gaps: list[int]):
    """Axes for rows of ``lead`` leading images, then k proponents | k opponents, with thin blank
    columns between the groups and thin blank rows after the rows listed in ``row_gaps``."""
    widths = [1.0] * lead + ([0.35] if lead else []) + [1.0] * k + [0.35] + [1.0] * k
    heights, index = [], []
    for r in range(n_rows):
        index.append(len(heights))
        heights.append(1.0)
        if r in row_gaps:
            heights.append(0.3)
    cell = min(0.42, (TWO_COLUMN - 1.3) / sum(widths))
    fig = plt.figure(figsize=(cell * sum(widths) + 1.3, cell * sum(heights) + 0.35))
    grid = fig.add_gridspec(len(heights), len(widths), width_ratios=widths, height_ratios=heights,
                            wspace=0.06, hspace=0.06, left=1.3 / (cell * sum(widths) + 1.3),
                            right=0.99, top=1 - 0.3 / (cell * sum(heights) + 0.35), bottom=0.01)
    cols = {"lead": list(range(lead)),
            "pro": [lead + (1 if lead else 0) + j for j in range(k)],
            "opp": [lead + (1 if lead else 0) + k + 1 + j for j in range(k)]}
    return fig, grid, index, cols


def _group_titles(fig, grid, row: int, cols: dict, first: str, second: str) -> None:
    """Titles over the two groups of image columns, on invisible axes spanning each group."""
    for group, title in (("pro", first), ("opp", second)):
        ax = fig.add_subplot(grid[row, cols[group][0]:cols[group][-1] + 1], frameon=False)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.patch.set_alpha(0)
        ax.set_title(title, fontsize=7, loc="left", pad=2)


def plot_proponents(query_images, query_ids, train_images, rows: dict, pdf_path, png_path):
    """For each query (blocks of rows), each method's k most positive (proponents) and k most
    negative (opponents) training examples (D-TRAK Figs. 15-19; Diffusion-ReTrac Figs. 5, 7).
    ``rows``: method name -> per query (proponent indices, opponent indices)."""
    plt = style()
    names = list(rows)
    n_q, k = len(query_ids), len(rows[names[0]][0][0])
    fig, grid, index, cols = _example_grid(plt, n_q * len(names), k, 1,
                                           [b * len(names) - 1 for b in range(1, n_q)])
    for b, q in enumerate(query_ids):
        for m, name in enumerate(names):
            r = index[b * len(names) + m]
            ax = fig.add_subplot(grid[r, cols["lead"][0]])
            pos = ax.get_position()
            fig.text(pos.x0 - 0.01, (pos.y0 + pos.y1) / 2, name, ha="right", va="center",
                     fontsize=6)
            if m == 0:
                show_image(ax, query_images[b])
                if b == 0:
                    ax.set_title("query", fontsize=7, pad=2)
                ax.set_xlabel(f"#{int(q)}", fontsize=6, labelpad=1)
            else:
                blank(ax)
            pro, opp = rows[name][b]
            for group, idx in (("pro", pro), ("opp", opp)):
                for j, i in enumerate(idx):
                    show_image(fig.add_subplot(grid[r, cols[group][j]]), train_images[i])
    _group_titles(fig, grid, index[0], cols, "proponents (most positive) →",
                  "opponents (most negative) →")
    save(fig, pdf_path, png_path)
    plt.close(fig)


def plot_self_influence(train_images, rows: dict, pdf_path, png_path, outliers=None):
    """For each method (rows), the k training examples of highest and of lowest self-influence
    (D-TRAK Fig. 20; Diffusion-ReTrac Appendix C.1); outliers framed in red when given."""
    plt = style()
    names = list(rows)
    k = len(rows[names[0]][0])
    fig, grid, index, cols = _example_grid(plt, len(names), k, 0, [])
    for m, name in enumerate(names):
        top, bottom = rows[name]
        for group, idx in (("pro", top), ("opp", bottom)):
            for j, i in enumerate(idx):
                ax = fig.add_subplot(grid[index[m], cols[group][j]])
                frame = "#d62728" if outliers is not None and outliers[i] else None
                show_image(ax, train_images[i], frame)
                if group == "pro" and j == 0:
                    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=6,
                                  labelpad=4)
    _group_titles(fig, grid, index[0], cols, "highest self-influence →", "lowest self-influence →")
    save(fig, pdf_path, png_path)
    plt.close(fig)

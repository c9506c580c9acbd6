"""The figure style kit: fonts, one/two-column sizes, a colour per method family (from
:data:`dabench.methods.base.FAMILIES`), image cells and grids, vector PDF plus PNG preview."""

from __future__ import annotations

import numpy as np

from dabench.methods.base import FAMILIES, family_style

ONE_COLUMN = 3.3   # inches, a typical single-column width
TWO_COLUMN = 6.9


def family_legend(fig, families, **kwargs) -> None:
    """One legend of the method families shown (their colours are the same in every figure),
    centred under the panels."""
    from matplotlib.patches import Patch

    present = set(families)
    shown = [f for f in FAMILIES if f in present and f != "reference"]
    shown += sorted(present - set(FAMILIES) - {"reference"})     # undeclared families last
    handles = [Patch(color=colour(f), label=family_style(f).label) for f in shown]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), frameon=False,
               fontsize=6.5, bbox_to_anchor=(0.5, 0.0), **kwargs)


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
    return family_style(family).colour


def save(fig, pdf_path, png_path) -> None:
    from dabench.io import atomic_path

    for path, fmt in ((pdf_path, "pdf"), (png_path, "png")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt)


def show_image(ax, img, frame: str | None = None) -> None:
    """One image in [-1, 1] (C, H, W) on an axis without ticks; ``frame`` colours its border."""
    img = np.clip((np.asarray(img, dtype=np.float32) + 1) / 2, 0, 1)
    ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0),
              cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(1.5)


def blank(ax) -> None:
    ax.set_axis_off()


def image_grid(plt, rows: int, cols: int, cell: float, left: float = 0.0, top: float = 0.0):
    """A figure of rows × cols square image cells of ``cell`` inches, 5% gaps, with ``left`` /
    ``top`` inches kept free for row labels and column titles (no stretched gaps)."""
    gap = 0.05
    width = left + cell * (cols + gap * (cols - 1)) + 0.02
    height = top + cell * (rows + gap * (rows - 1)) + 0.02
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=left / width, right=1 - 0.01 / width, bottom=0.01 / height,
                        top=1 - top / height, wspace=gap, hspace=gap)
    return fig, axes


def shade(family: str, j: int, n: int) -> str:
    """The j-th of n shades of a family's colour (j = 0 the full colour), so methods of one family
    stay recognisably that family."""
    import matplotlib.colors as mc

    rgb = np.array(mc.to_rgb(colour(family)))
    if n <= 1:
        return mc.to_hex(rgb)
    # From a darker tone (j = 0) to a lighter one (j = n-1), the family colour in between.
    mix = -0.35 + 0.8 * j / (n - 1)
    out = rgb * (1 + mix) if mix < 0 else rgb + (1 - rgb) * mix
    return mc.to_hex(np.clip(out, 0, 1))


def finish_panels(plt, fig, axes, ylabel, pdf_path, png_path):
    """Shared end of the one-row panel figures: y label on the first panel, the legend beside
    the last, saved as PDF + PNG."""
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(frameon=False, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    save(fig, pdf_path, png_path)
    plt.close(fig)

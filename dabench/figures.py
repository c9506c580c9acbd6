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


FAMILY_LABELS = {
    "reference": "reference",
    "similarity": "similarity-based",
    "gradient": "gradient (no kernel)",
    "trak": "TRAK family (kernel)",
    "influence": "normalised influence",
    "tracin": "checkpoint-based (TracIn)",
    "retraining": "retraining-based",
    "shapley": "group Shapley",
}


def family_legend(fig, families, **kwargs) -> None:
    """One legend of the method families shown (their colours are the same in every figure),
    centred under the panels."""
    from matplotlib.patches import Patch

    shown = [f for f in FAMILY_COLOURS if f in set(families) and f != "reference"]
    handles = [Patch(color=colour(f), label=FAMILY_LABELS.get(f, f)) for f in shown]
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
    return FAMILY_COLOURS.get(family, "#17becf")


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


# ------------------------------------------------------------------------------------------------
# Diffusion-ReTrac analyses (Xie et al. Figures 1-4, Tables 1-2)


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


def _checkpoint_panels(plt, n, height=1.7):
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(TWO_COLUMN, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def plot_retrac_norms(df, pdf_path, png_path):
    """Figure 1: each training example's gradient norm against its logged training timestep,
    one panel per checkpoint."""
    plt = style()
    steps = sorted(df["checkpoint"].unique())
    fig, axes = _checkpoint_panels(plt, len(steps))
    for ax, step in zip(axes, steps):
        sub = df[df["checkpoint"] == step]
        ax.scatter(sub["timestep"], sub["norm"], s=3, alpha=0.6, lw=0, color=colour("tracin"))
        ax.set_title(f"checkpoint {step}")
        ax.set_xlabel("training timestep t")
        ax.set_xlim(0, None)
    axes[0].set_ylabel("‖∇ℓ(x_i, t_i)‖")
    fig.tight_layout()
    save(fig, pdf_path, png_path)
    plt.close(fig)


def plot_retrac_single_example(df, pdf_path, png_path):
    """Figure 3: one example's gradient norm across timesteps at three checkpoints (solid), the
    mean over the probe examples (dashed, defines t_max), its training timestep (dotted)."""
    plt = style()
    one = df[df["curve"] == "one example"]
    steps = sorted(one["checkpoint"].unique())
    fig, axes = plt.subplots(1, len(steps), figsize=(TWO_COLUMN, 1.8), squeeze=False)
    for ax, step in zip(axes[0], steps):
        sub = one[one["checkpoint"] == step]
        mean = df[(df["checkpoint"] == step) & (df["curve"] != "one example")]
        ax.plot(sub["timestep"], sub["norm"], color=colour("tracin"),
                label=f"example {int(sub['example'].iloc[0])}")
        ax.plot(mean["timestep"], mean["norm"], color=colour("reference"), ls="--", lw=0.8,
                label=mean["curve"].iloc[0] if len(mean) else None)
        if len(mean):
            t_max = mean["timestep"].iloc[int(np.argmax(mean["norm"].to_numpy()))]
            ax.axvline(t_max, color=colour("reference"), lw=0.6, alpha=0.5)
        ax.axvline(sub["training_timestep"].iloc[0], color=colour("trak"), ls=":", lw=0.9,
                   label="its training timestep")
        ax.set_title(f"checkpoint {step}")
        ax.set_xlabel("timestep t")
    _finish_panels(plt, fig, axes[0], "gradient norm", pdf_path, png_path)


def plot_retrac_correlation(points, summary, pdf_path, png_path):
    """Figure 2: |t_i − t_max| against the rank of x_i's norm (1 = largest), with the linear fit
    and Spearman ρ, per checkpoint."""
    plt = style()
    steps = sorted(points["checkpoint"].unique())
    fig, axes = _checkpoint_panels(plt, len(steps))
    for ax, step in zip(axes, steps):
        sub = points[points["checkpoint"] == step]
        r = summary[summary["checkpoint"] == step].iloc[0]
        ax.scatter(sub["distance"], sub["norm_rank"], s=5, color=colour("tracin"), lw=0)
        x = np.linspace(0, max(sub["distance"].max(), 1), 50)
        ax.plot(x, r["intercept"] + r["slope"] * x, color=colour("reference"), lw=0.8)
        ax.set_title(f"checkpoint {step}, t_max = {int(r['t_max'])}\n"
                     f"ρ = {r['spearman']:.2f}, slope {r['slope']:.2f} (p = {r['slope_p']:.0e})",
                     fontsize=7)
        ax.set_xlabel("|t_i − t_max|")
    axes[0].set_ylabel("rank of gradient norm")
    fig.tight_layout()
    save(fig, pdf_path, png_path)
    plt.close(fig)


def plot_retrac_manipulation(points, pdf_path, png_path):
    """Timestep manipulation: |score| rank of each uninfluential example before and after its
    training timestep is set to t_max (below the diagonal = it became more influential)."""
    plt = style()
    methods = list(dict.fromkeys(points["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(TWO_COLUMN * 0.7, 2.2), squeeze=False,
                             sharey=True)
    for j, (ax, m) in enumerate(zip(axes[0], methods)):
        sub = points[points["method"] == m]
        ax.scatter(sub["rank_before"], sub["rank_after"], s=5, alpha=0.7, lw=0,
                   color=shade("tracin", j, len(methods)))
        top = max(points["rank_before"].max(), points["rank_after"].max())
        ax.plot([1, top], [1, top], color=colour("reference"), lw=0.6, ls="--")
        rise = (sub["rank_before"] - sub["rank_after"]).mean()
        ax.set_title(f"{m}: mean rise {rise:.0f}")
        ax.set_xlabel("rank before (1 = most influential)")
    axes[0][0].set_ylabel("rank with t = t_max")
    fig.tight_layout()
    save(fig, pdf_path, png_path)
    plt.close(fig)


def _finish_panels(plt, fig, axes, ylabel, pdf_path, png_path):
    """Shared end of the one-row panel figures: y label on the first panel, the legend beside
    the last, saved as PDF + PNG."""
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(frameon=False, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    save(fig, pdf_path, png_path)
    plt.close(fig)


def _grouped_bars(ax, df, x_key, y_key, hue_key, families, baseline=None):
    xs = list(dict.fromkeys(df[x_key]))
    hues = list(dict.fromkeys(df[hue_key]))
    width = 0.8 / max(len(hues), 1)
    counts = {}
    for h in hues:
        counts[families[h]] = counts.get(families[h], 0) + 1
    seen = {}
    for j, h in enumerate(hues):
        fam = families[h]
        colour_h = shade(fam, seen.get(fam, 0), counts[fam])
        seen[fam] = seen.get(fam, 0) + 1
        sub = df[df[hue_key] == h].set_index(x_key).reindex(xs)
        ax.bar(np.arange(len(xs)) + (j - (len(hues) - 1) / 2) * width, sub[y_key], width,
               color=colour_h, label=h)
    if baseline is not None:
        ax.axhline(baseline, color=colour("reference"), ls="--", lw=0.8, label="random")
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])


def plot_retrac_targeted(df, pdf_path, png_path, lds=None):
    """Table 1 as a figure: distinct proportion among the top-k of all queries, per method (the
    checkpoint methods, and of every other family its method with the best LDS — or its first
    method when no LDS table is given)."""
    plt = style()
    keep = set(df.loc[df["family"] == "tracin", "method_id"])
    others = df[df["family"] != "tracin"]
    if lds is not None and len(lds):
        best = (lds[lds["method_id"].isin(set(others["method_id"]))]
                .groupby("method_id")["lds"].mean().rename("lds").reset_index()
                .merge(others[["method_id", "family"]].drop_duplicates(), on="method_id"))
        keep |= set(best.loc[best.groupby("family")["lds"].idxmax(), "method_id"])
    else:
        keep |= {sorted(ids)[0] for _, ids in others.groupby("family")["method_id"]}
    df = df[df["method_id"].isin(keep)].copy()
    k_steps = df["n_timesteps"].apply(lambda v: "" if v != v or v is None else f", K={int(v)}")
    df["name"] = df["method"] + np.where(df["family"] == "tracin", "",
                                         " (" + df["variant"] + k_steps + ")")
    families = dict(zip(df["name"], df["family"]))
    query_sets = list(dict.fromkeys(df["query_set"]))
    fig, axes = plt.subplots(1, len(query_sets), figsize=(TWO_COLUMN, 2.0), squeeze=False,
                             sharey=True)
    for ax, qs in zip(axes[0], query_sets):
        sub = df[df["query_set"] == qs]
        _grouped_bars(ax, sub, "k", "distinct", "name", families)
        # The largest share possible: N / (queries · k) distinct examples.
        bound = sub.groupby("k", sort=False)["max_possible"].first()
        for x, value in enumerate(bound):
            if value < 1:
                ax.plot([x - 0.45, x + 0.45], [value, value], color="black", lw=0.8, ls=":",
                        label="largest possible: N / (queries · k)" if x == len(bound) - 1
                        and ax is axes[0][-1] else None)
        ax.set_title(f"{qs.capitalize()} queries ({int(sub['n_queries'].iloc[0])})")
        ax.set_xlabel("top-k")
        ax.set_ylim(0, 1.05)
    _finish_panels(plt, fig, axes[0], "distinct proportion", pdf_path, png_path)


def plot_retrac_outliers(df, pdf_path, png_path):
    """Table 2 as a figure: outlier share among the top self-influence ranks."""
    plt = style()
    families = {m: "tracin" for m in df["method"]}
    fig, ax = plt.subplots(figsize=(ONE_COLUMN, 2.0))
    _grouped_bars(ax, df, "top", "outlier_share", "method", families, baseline=df["random"].iloc[0])
    ax.set_xlabel(f"top ranks by self-influence ({int(df['n_outliers'].iloc[0])} outliers "
                  f"of {int(df['n_train'].iloc[0])})")
    ax.set_ylabel("outlier share")
    ax.set_ylim(0, 1.05)
    ax.legend(frameon=False, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save(fig, pdf_path, png_path)
    plt.close(fig)


def plot_retrac_source_tracing(df, pdf_path, png_path):
    """Figure 4: precision of the top-k proponents coming from the query's own source."""
    plt = style()
    sources = list(dict.fromkeys(df["query_source"]))
    families = {m: "tracin" for m in df["method"]}
    fig, axes = plt.subplots(1, len(sources), figsize=(TWO_COLUMN * 0.8, 2.0), squeeze=False,
                             sharey=True)
    for ax, src in zip(axes[0], sources):
        sub = df[df["query_source"] == src]
        _grouped_bars(ax, sub, "k", "precision", "method", families, baseline=sub["random"].iloc[0])
        ax.set_title(f"queries: {src}", fontsize=7)
        ax.set_xlabel("top-k")
        ax.set_ylim(0, 1.05)
    _finish_panels(plt, fig, axes[0], "precision", pdf_path, png_path)


def write_retrac_figures(tables: dict, figures: dict) -> None:
    """Workflow stage: every ReTrac figure from its CSV. ``tables``/``figures``: name -> path(s)
    (figures[name] = (pdf, png)); names missing from ``tables`` are skipped."""
    import pandas as pd

    read = {k: pd.read_csv(v) for k, v in tables.items()}
    plots = {
        "norms": lambda f: plot_retrac_norms(read["norms"], *f),
        "single_example": lambda f: plot_retrac_single_example(read["single_example"], *f),
        "correlation": lambda f: plot_retrac_correlation(read["correlation_points"],
                                                         read["correlation"], *f),
        "manipulation": lambda f: plot_retrac_manipulation(read["manipulation_points"], *f),
        "targeted": lambda f: plot_retrac_targeted(read["targeted"], *f, lds=read.get("lds")),
        "outliers": lambda f: plot_retrac_outliers(read["outliers"], *f),
        "source_tracing": lambda f: plot_retrac_source_tracing(read["source_tracing"], *f),
    }
    for name, paths in figures.items():
        plots[name](paths)


def plot_counterfactual_box(per_query, pdf_path, png_path):
    """Two panels: pixel L2 (higher = the removed examples mattered more) and embedding cosine
    (lower = more), one box per method, queries as points (D-TRAK Fig. 3)."""
    plt = style()
    methods = list(dict.fromkeys(per_query["method"]))
    fig, axes = plt.subplots(1, 2, figsize=(TWO_COLUMN * 0.75, 1.9))
    for ax, (key, title) in zip(axes, (("l2", "pixel L2 distance ↑"),
                                       ("cosine", "embedding cosine similarity ↓"))):
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
        show_image(axes[i][0], first["original"])
        axes[i][0].set_ylabel(f"#{q}", fontsize=6)
        for j, label in enumerate(labels):
            show_image(axes[i][j + 1], results[label][i]["counterfactual"])
    for j, title in enumerate(["original"] + labels):
        axes[0][j].set_title(title, fontsize=6, pad=2)
    save(fig, pdf_path, png_path)
    plt.close(fig)


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
    _finish_panels(plt, fig, axes[0], "LDS (%)", pdf_path, png_path)


def write_retraining_figure(csv_path, pdf_path, png_path) -> None:
    import pandas as pd

    df = pd.read_csv(csv_path)
    df["setting"] = df["setting"].fillna("")     # Empirical influence / Datamodel: no setting
    plot_retraining(df, pdf_path, png_path)


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
    _finish_panels(plt, fig, axes[0], "group LDS (%)", pdf_path, png_path)


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
                           label=FAMILY_LABELS.get(fam, fam),
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
    _finish_panels(plt, fig, axes[0], "LDS (%)", pdf_path, png_path)

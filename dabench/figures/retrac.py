"""Figures of the Diffusion-ReTrac analyses: gradient norms against timesteps (Figures 1, 3),
Algorithm 1's correlation, the timestep manipulation, targeted attribution, outlier detection
and source tracing."""

from __future__ import annotations

import numpy as np

from dabench.figures.style import ONE_COLUMN, TWO_COLUMN, colour, finish_panels, save, shade, style


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
    finish_panels(plt, fig, axes[0], "gradient norm", pdf_path, png_path)


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
    finish_panels(plt, fig, axes[0], "distinct proportion", pdf_path, png_path)


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
    finish_panels(plt, fig, axes[0], "precision", pdf_path, png_path)


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

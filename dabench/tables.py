"""Tidy tables (pandas) written as CSV with a booktabs LaTeX version beside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dabench.io import atomic_path, load_json
from dabench.layout import LDS_TABLE
from dabench.naming import row_names

LDS_COLUMNS = ["method", "variant", "query_set", "n_timesteps", "lds", "ci_low", "ci_high",
               "n_queries", "n_subsets", "method_id", "family", "subset_family", "n_models"]


def lds_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (method, setting, query set) from LDS records; LDS and CI in percent."""
    rows = [{"method": r["label"], **{k: r.get(k) for k in LDS_COLUMNS if k != "method"}}
            for r in records]
    df = pd.DataFrame(rows, columns=LDS_COLUMNS)
    df["n_timesteps"] = df["n_timesteps"].astype("Int64")
    df["n_models"] = pd.to_numeric(df["n_models"]).astype("Int64")
    order = {"reference": 0}
    df["_ref"] = df["family"].map(order).fillna(1)
    df = df.sort_values(["query_set", "_ref", "lds"], ascending=[False, True, False])
    return df.drop(columns="_ref").reset_index(drop=True)


def fmt_ci(row) -> str:
    """A table cell "LDS (low, high)" of a row with lds / ci_low / ci_high ("--" when undefined)."""
    if not np.isfinite(row["lds"]):
        return "--"
    return f"{row['lds']:.2f} ({row['ci_low']:.2f}, {row['ci_high']:.2f})"


def lds_latex(df: pd.DataFrame, caption: str = "") -> str:
    """Table-2 layout: methods × query set, LDS (%) with its bootstrap interval (booktabs)."""
    wide = df.assign(cell=df.apply(fmt_ci, axis=1),
                     name=df["method"] + " (" + df["variant"].astype(str) + ")")
    wide = wide.pivot_table(index="name", columns="query_set", values="cell", aggfunc="first",
                            sort=False)
    wide = wide.reindex(columns=[c for c in ("validation", "generation") if c in wide.columns])
    wide.columns = [c.capitalize() for c in wide.columns]
    wide = wide.fillna("--").reset_index().rename(columns={"name": "Method"})
    latex = booktabs(wide, "l" + "c" * (len(wide.columns) - 1))
    if caption:
        latex = f"% {caption}\n" + latex
    return latex


# The two float formats of every CSV a run writes: summary tables (LDS, compute) to 4 decimals;
# per-point data, p-values and chosen λ to 6 significant digits (they span orders of magnitude).
SUMMARY_FLOATS = "%.4f"
RAW_FLOATS = "%.6g"


def write_csv(df: pd.DataFrame, path, float_format: str = SUMMARY_FLOATS) -> None:
    """The one CSV writer: no index, atomic, floats in one of the two formats above."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=float_format)


def booktabs(view: pd.DataFrame, column_format: str, **formats) -> str:
    """The one LaTeX writer: a booktabs tabular of ``view`` without its index; ``formats`` go to
    pandas' ``Styler.format`` (``precision``, ``na_rep``, a per-column formatter)."""
    styler = view.style.hide(axis="index")
    if formats:
        styler = styler.format(**formats)
    return styler.to_latex(hrules=True, column_format=column_format)


def write_table(df: pd.DataFrame, csv_path, tex_path, latex: str) -> None:
    """A summary table: ``df`` as CSV (:data:`SUMMARY_FLOATS`) and its LaTeX beside it."""
    write_csv(df, csv_path)
    with atomic_path(tex_path) as tmp:
        Path(tmp).write_text(latex)


def write_lds_table(record_paths: list, csv_path, tex_path) -> pd.DataFrame:
    """Workflow stage: ``tables/lds.csv`` and ``tables/lds.tex`` from LDS record files."""
    records = [load_json(p) for p in record_paths]
    df = lds_frame(records)
    write_table(df, csv_path, tex_path,
                lds_latex(df, "LDS (%) on the test subsets, mean and bootstrap interval"))
    return df


def retraining_frame(lds: pd.DataFrame) -> pd.DataFrame:
    """D-TRAK Tables 7–8: the methods that use several retrained models (ensembles of S, Empirical
    influence / Datamodels of M), one row per (method, setting, number of models, query set), and
    as ``reference`` the single full-model method each ensemble averages (same features)."""
    multi = lds[lds["n_models"].notna()].copy()
    multi["setting"] = multi["variant"].astype(str).str.replace(r",?\s*[SM]=\d+$", "", regex=True)
    refs = []
    for (label, setting, k), _ in multi.groupby(["method", "setting", "n_timesteps"], dropna=False):
        base = label.replace(" (ensemble)", "")
        if base != label:
            refs.append(lds[(lds["method"] == base) & (lds["variant"].astype(str) == setting)
                            & (lds["n_timesteps"] == k) & lds["n_models"].isna()]
                        .assign(setting=setting, reference=True))
    multi["reference"] = False
    out = pd.concat([multi, *refs], ignore_index=True)
    cols = ["method", "setting", "n_models", "reference", "query_set", "n_timesteps", "lds",
            "ci_low", "ci_high", "n_queries", "n_subsets", "method_id", "family"]
    return out[cols].sort_values(["query_set", "method", "setting", "reference", "n_models"],
                                 ascending=[False, True, True, True, True]).reset_index(drop=True)


def write_retraining_table(record_paths: list, csv_path, tex_path) -> pd.DataFrame:
    """Workflow stage: ``tables/retraining.csv`` (+ ``.tex``, Tables 7–8 layout) from the LDS
    records of the retraining-based methods and of the single-model methods they average."""
    df = retraining_frame(lds_frame([load_json(p) for p in record_paths]))
    rows = df[~df["reference"]]
    setting = rows["setting"].fillna("").astype(str)
    wide = rows.assign(cell=rows.apply(fmt_ci, axis=1),
                       name=rows["method"] + setting.map(lambda s: f" ({s})" if s else ""),
                       models=rows["n_models"].astype(int))
    wide = wide.pivot_table(index=["name", "models"], columns="query_set", values="cell",
                            aggfunc="first").sort_index()
    wide = wide.reindex(columns=[c for c in ("validation", "generation") if c in wide.columns])
    wide.columns = [c.capitalize() for c in wide.columns]
    wide = wide.fillna("--").reset_index().rename(columns={"name": "Method", "models": "Models"})
    latex = booktabs(wide, "lr" + "c" * (len(wide.columns) - 2))
    write_table(df, csv_path, tex_path, "% LDS (%) of the retraining-based methods against the "
                "number of retrained models (D-TRAK Tables 7-8)\n" + latex)
    return df


def summary(run_dir) -> str:
    """A short text view of a finished run's LDS table (printed when a run succeeds)."""
    path = Path(run_dir) / LDS_TABLE
    if not path.exists():
        return ""
    df = pd.read_csv(path)
    lines = [f"LDS (%) on the test subsets — {path}"]
    for qs, sub in df.groupby("query_set", sort=False):
        lines.append(f"  {qs} queries:")
        for name, (_, r) in zip(row_names(sub), sub.iterrows()):
            lines.append(f"    {name:<48} {r['lds']:6.2f}  [{r['ci_low']:6.2f}, {r['ci_high']:6.2f}]")
    return "\n".join(lines)


def ablation_latex(df: pd.DataFrame) -> str:
    if df.empty:
        return "% no ablations\n"
    view = df.assign(LDS=df.apply(fmt_ci, axis=1))[["axis", "value", "LDS"]]
    view = view.rename(columns={"axis": "Setting", "value": "Value"})
    return ("% LDS (%) of the ablation base method as one setting changes\n"
            + booktabs(view, "llc"))


def write_ablation_tables(record_paths: list, sidecar_paths: list, ablations_cfg: dict,
                          csv_path, tex_path, lambda_csv_path) -> pd.DataFrame:
    """Workflow stage: ``tables/ablations.csv`` (+ .tex) and ``tables/lambda.csv``."""
    from dabench.ablations import ablation_frame, ablation_methods, lambda_frame

    methods = ablation_methods(ablations_cfg)
    records = [r for r in map(load_json, record_paths) if r["query_set"] == ablations_cfg["query_set"]]
    df = (ablation_frame(records, methods, methods["ablation-base"]["entry"]) if methods
          else pd.DataFrame(columns=["axis", "value", "lds", "ci_low", "ci_high"]))
    write_table(df, csv_path, tex_path, ablation_latex(df))
    lam = lambda_frame([load_json(p) for p in sidecar_paths])
    write_csv(lam, lambda_csv_path, RAW_FLOATS)
    return df


def write_checkpoint_table(record_paths: list, config: dict, csv_path, tex_path) -> pd.DataFrame:
    """Workflow stage: ``tables/checkpoint_selection.csv`` (+ ``.tex``: methods × checkpoints,
    one block per query set)."""
    from dabench.checkpoint_selection import checkpoint_frame

    df = checkpoint_frame([load_json(p) for p in record_paths], config)
    if df.empty:
        latex = "% no checkpoint selection results\n"
    else:
        view = df.assign(cell=df.apply(fmt_ci, axis=1),
                         name=df["method"] + " (" + df["variant"] + ", K="
                         + df["n_timesteps"].astype(str) + ")",
                         qs=df["query_set"].str.capitalize(),
                         col=df["epoch"].map(lambda e: f"epoch {e:.0f}"))
        wide = view.pivot_table(index=["qs", "name"], columns="col", values="cell",
                                aggfunc="first", sort=False)
        wide = wide.reindex(columns=[f"epoch {e:.0f}" for e in sorted(df["epoch"].unique())])
        wide = wide.reset_index().rename(columns={"qs": "Queries", "name": "Method"})
        latex = ("% LDS (%) with features from each training checkpoint (D-TRAK Figures 2, 6-8); "
                 "the last column is the final model\n"
                 + booktabs(wide, "ll" + "c" * (len(wide.columns) - 2)))
    write_table(df, csv_path, tex_path, latex)
    return df


def simple_latex(df: pd.DataFrame, columns: dict, caption: str, digits: int = 3) -> str:
    """A booktabs table of ``columns`` (name -> header) of ``df``, floats to ``digits`` places."""
    view = df[list(columns)].rename(columns=columns)
    fmt = {c: f"{{:.{digits}f}}" for c, t in view.dtypes.items() if t.kind == "f"}
    latex = booktabs(view, "l" * 2 + "r" * (len(columns) - 2), formatter=fmt)
    return f"% {caption}\n" + latex.replace("_", "\\_")

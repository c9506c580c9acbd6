"""The group-Shapley branch's tables (CSV + booktabs LaTeX) and figures, from the frames that
:mod:`dabench.shapley` computes: group LDS of every attribution (sparsified-FT paper Tables 1,
3), minutes per submodel (Table 2), LDS against compute (Figure 2, Table 4), the counterfactual
(Figure 3) and its samples (Figure 4)."""

from __future__ import annotations

from dabench import figures
from dabench import shapley as S
from dabench.io import load_json, load_npz
from dabench.properties import PROPERTY_LABELS
from dabench.tables import RAW_FLOATS, booktabs, fmt_ci, write_csv, write_table


def write_tables(design_path, reference_json, attribution_paths: list, heldout_chunks: list,
                 way_chunks: dict, pruned_json, cf_results: dict, cfg: dict, bootstrap: dict,
                 seed: int, out: dict) -> None:
    """Workflow stage: every table and figure of the branch. ``bootstrap``: ``n_boot`` and
    ``confidence`` of the group-LDS intervals (the run's ``lds.bootstrap``, ``lds.confidence``);
    ``cf_results``: group-counterfactual key -> its result files, one per job of its seeds;
    ``out``: output name -> path (the rule's outputs)."""
    design, reference = load_npz(design_path), load_json(reference_json)
    attributions = S.load_attributions(attribution_paths)
    heldout = S.load_chunks(heldout_chunks)
    alphas = cfg["lds"]["alphas"]
    write_csv(S.values_frame(attributions), out["values_csv"], RAW_FLOATS)
    _write_lds(S.lds_frame(design, heldout, attributions, alphas, bootstrap, seed), out)
    way_rows = {way: S.load_chunks(paths) for way, paths in way_chunks.items()}
    runtime, budget = S.runtime_and_budget(design, reference, heldout, way_rows,
                                           load_json(pruned_json) if pruned_json else {}, alphas,
                                           bootstrap, seed)
    _write_runtime(runtime, out)
    write_csv(budget, out["budget_csv"])
    figures.plot_shapley_budget(budget, cfg["property"], out["budget_pdf"], out["budget_png"])
    if cf_results:
        cf = {k: S.merge_counterfactual([load_npz(p) for p in paths])
              for k, paths in cf_results.items()}
        _write_counterfactual(cf, attributions, cfg, out)


def _write_lds(lds, out: dict) -> None:
    wide = lds.assign(cell=lds.apply(fmt_ci, axis=1),
                      column=lds["property"].map(PROPERTY_LABELS) + ", α="
                      + lds["alpha"].astype(str)).pivot_table(
        index="method", columns="column", values="cell", aggfunc="first", sort=False)
    wide = wide.reset_index().rename(columns={"method": "Method"})
    latex = booktabs(wide, "l" + "c" * (len(wide.columns) - 1))
    write_table(lds, out["lds_csv"], out["lds_tex"],
                "% Group LDS (%) on held-out subsets of groups retrained from scratch "
                "(sparsified-FT paper Tables 1 and 3)\n" + latex)


def _write_runtime(runtime, out: dict) -> None:
    show = runtime.assign(**{"Minutes per submodel": runtime.apply(
        lambda r: f"{r['minutes']:.2f} ± {r['minutes_sd']:.2f}", axis=1),
        "Speed-up": runtime["speedup_vs_retrain"].map(lambda x: f"{x:.1f}×")})
    latex = booktabs(show[["way", "n_submodels", "Minutes per submodel", "Speed-up"]].rename(
        columns={"way": "Way", "n_submodels": "Submodels"}), "lrcc")
    write_table(runtime, out["runtime_csv"], out["runtime_tex"],
                "% Minutes per submodel (training + evaluating F) (sparsified-FT paper Table 2)\n"
                + latex)


def _write_counterfactual(cf: dict, attributions: dict, cfg: dict, out: dict) -> None:
    cfdf = S.counterfactual_frame(cf, attributions, cfg)
    main = cfdf[cfdf["property"] == cfg["property"]]
    latex = booktabs(main.assign(**{"Relative change (%)": main.apply(
        lambda r: f"{r['change_pct']:.2f} ± {r['change_sd']:.2f}", axis=1)})[
        ["method", "Relative change (%)"]].rename(columns={"method": "Method"}), "lc")
    write_table(cfdf, out["cf_csv"], out["cf_tex"],
                f"% Relative change of {PROPERTY_LABELS[cfg['property']]} after removing the "
                f"top {cfg['counterfactual']['fraction']:.0%} groups (sparsified-FT paper "
                f"Figure 3)\n" + latex)
    figures.plot_shapley_counterfactual(main, out["cf_pdf"], out["cf_png"])
    figures.plot_shapley_samples({"full data": cf["full"]["images"],
                                  **{attributions[k]["label"]: cf[k]["images"]
                                     for k in cf if k != "full"}},
                                 out["grid_pdf"], out["grid_png"])

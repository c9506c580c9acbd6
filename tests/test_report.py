"""Paper-ready outputs: which examples the grids show, cost accounting, the report's table pages."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from dabench import cost, examples, report


def test_extremes_are_the_largest_and_smallest_scores_in_order():
    scores = np.array([0.5, -2.0, 3.0, 0.5, -1.0, 2.0])
    top, bottom = examples.extremes(scores, 3)
    assert top.tolist() == [2, 5, 0]          # 3.0, 2.0, then the first of the tied 0.5s
    assert bottom.tolist() == [1, 4, 0]       # -2.0, -1.0, 0.5 (first of the ties)
    with pytest.raises(ValueError, match="one score per training example"):
        examples.extremes(np.zeros((2, 3)), 1)


def test_pick_queries_spreads_over_the_set_and_takes_turns_over_sources():
    assert examples.pick_queries(64, 4).tolist() == [0, 21, 42, 63]
    assert examples.pick_queries(3, 10).tolist() == [0, 1, 2]
    origin = np.array([0] * 6 + [1] * 3)
    # first of each source, then the second of each, ...
    assert examples.pick_queries(len(origin), 4, origin).tolist() == [0, 1, 6, 7]
    assert examples.pick_queries(len(origin), 8, origin).tolist() == [0, 1, 2, 3, 4, 6, 7, 8]


def test_pareto_front_matches_the_definition_by_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        c, l = rng.integers(0, 6, 12).astype(float), rng.integers(0, 6, 12).astype(float)
        front = set(cost.pareto_front(c, l).tolist())
        for i in range(12):
            beaten = any(c[j] <= c[i] and l[j] >= l[i] and (c[j] < c[i] or l[j] > l[i])
                         for j in range(12))
            assert (i in front) == (not beaten)
    assert cost.pareto_front([1.0, 2.0, 3.0], [5.0, 4.0, 6.0]).tolist() == [0, 2]


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_method_cost_sums_the_recorded_seconds_of_what_a_method_is_built_from(tmp_path):
    run = tmp_path
    feat = "features/{m}/sq_K10u_e1_sparse64/{s}.npy"
    for m, g in (("dm0000", 3.0), ("dm0001", 5.0)):
        for s, extra in (("train", 0.0), ("validation", 0.5)):
            _write(run / feat.format(m=m, s=s).replace(".npy", ".json"),
                   {"seconds": {"gradients": g + extra, "projection": 0.25}})
    retrains = run / "lds/datamodel/retrains"
    retrains.mkdir(parents=True)
    np.savez(retrains / "chunk0.npz", subset=np.array([0, 1, 2]), seed=np.zeros(3, int),
             seconds=np.array([40.0, 42.0, 44.0]))
    tune = run / "lds/tune/retrains"
    tune.mkdir(parents=True)
    np.savez(tune / "chunk0.npz", subset=np.array([0, 1]), seed=np.zeros(2, int),
             seconds=np.array([10.0, 11.0]))
    inputs = {f"train_features_{j}": feat.format(m=f"dm000{j}", s="train") for j in (0, 1)}
    inputs.update({f"query_features_{j}": feat.format(m=f"dm000{j}", s="validation")
                   for j in (0, 1)})
    inputs["tune_outputs"] = "lds/tune/validation_outputs.npy"
    _write(run / "scores/ens/validation.json",
           {"seconds": 1.5, "params": {"n_models": 2}, "inputs": inputs})
    c = cost.method_cost(run, "ens", ["validation", "generation"])
    assert c["gradients_s"] == pytest.approx(3.0 + 3.5 + 5.0 + 5.5)
    assert c["projection_s"] == pytest.approx(4 * 0.25)
    assert c["scoring_s"] == pytest.approx(1.5)
    assert c["retrain_s"] == pytest.approx(40.0 + 42.0)      # the two members, not model 2
    assert c["tuning_s"] == pytest.approx(21.0)               # reported apart, not in the total
    assert c["total_s"] == pytest.approx(17.0 + 1.0 + 1.5 + 82.0)
    # M-model estimators: the first M retrains of the family they read
    _write(run / "scores/dm/validation.json",
           {"seconds": 0.5, "params": {"n_models": 3},
            "inputs": {"train_outputs": "lds/datamodel/validation_outputs.npy"}})
    assert cost.method_cost(run, "dm", ["validation"])["retrain_s"] == pytest.approx(126.0)
    with pytest.raises(FileNotFoundError, match="no score sidecar of 'missing'"):
        cost.method_cost(run, "missing", ["validation"])


def test_table_pages_carry_the_caption_and_replace_the_folder_whole(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    pd.DataFrame({"method": ["TRAK", "D-TRAK"], "lds": [12.3456, np.nan]}).to_csv(
        tables / "lds.csv", index=False)
    (tables / "lds.tex").write_text("% LDS (%) on the test subsets\n% second line\n\\begin{x}\n")
    pd.DataFrame({"a": range(7)}).to_csv(tables / "plain.csv", index=False)
    out = tmp_path / "report_tables"
    out.mkdir()
    (out / "stale.html").write_text("old")
    saved = os.umask(0o022)
    try:
        pages = report.write_table_pages([tables / "lds.csv", tables / "plain.csv"], out)
    finally:
        os.umask(saved)
    assert [p.name for p in pages] == ["lds.html", "plain.html"]
    page = (out / "lds.html").read_text()
    assert "LDS (%) on the test subsets second line" in page
    assert "12.35" in page and "D-TRAK" in page and "nan" not in page
    assert "plain" in (out / "plain.html").read_text()
    short = report.table_page(tables / "plain.csv", max_rows=3)
    assert short.count("<tr>") == 1 + 3 and "first 3 of 7 rows" in short
    assert not (out / "stale.html").exists()
    assert out.stat().st_mode & 0o777 == 0o755       # not mkdtemp's private 0700
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report_tables")]


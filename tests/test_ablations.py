from dabench.ablations import ablation_frame, ablation_methods, lambda_frame

CFG = {"enabled": True, "method": {"method": "d-trak", "function": "square", "n_timesteps": 10},
       "query_set": "validation", "n_timesteps": [5, 10], "k": [256, 4096],
       "schedules": ["uniform", "cumulative"], "projections": ["sparse"]}


def test_one_setting_changes_at_a_time_and_the_base_is_shared():
    methods = ablation_methods(CFG)
    assert sorted(methods) == ["ablation-K5", "ablation-base", "ablation-cumulative", "ablation-k256"]
    base = methods["ablation-base"]["entry"]
    assert base["n_timesteps"] == 10 and base["k"] == 4096 and base["projection"] == "sparse"
    assert methods["ablation-k256"]["entry"] == {**base, "k": 256}
    assert ablation_methods({**CFG, "enabled": False}) == {}


def test_ablation_frame_places_the_base_on_every_axis():
    methods = ablation_methods(CFG)
    records = [{"method_id": m, "label": "D-TRAK", "query_set": "validation", "lds": float(i),
                "ci_low": i - 1.0, "ci_high": i + 1.0, "n_queries": 3, "n_subsets": 4}
               for i, m in enumerate(methods)]
    df = ablation_frame(records, methods, methods["ablation-base"]["entry"])
    assert list(df[df.axis == "n_timesteps"]["value"]) == ["5", "10"]
    base_lds = records[list(methods).index("ablation-base")]["lds"]
    assert (df[df.value.isin(["10", "4096", "uniform", "sparse"])]["lds"] == base_lds).all()


def test_lambda_frame_marks_the_chosen_lambda():
    side = {"method_id": "trak", "label": "TRAK", "variant": "loss", "query_set": "validation",
            "n_timesteps": 10, "lambda_relative": 0.1,
            "tune_lds_by_lambda": {"0.01": 0.2, "0.1": 0.3}}
    df = lambda_frame([side])
    assert list(df["chosen"]) == [False, True] and list(df["tune_lds"]) == [20.0, 30.0]

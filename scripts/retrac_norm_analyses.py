"""Snakemake adapter: ReTrac norm vs timestep, t_max, Algorithm 1 and timestep manipulation."""
from dabench.runtime import job

with job(snakemake) as smk:
    from dabench.methods import build
    from dabench.retrac_report import write_norm_analyses

    inp = dict(smk.input.items())
    replay = {int(k.rsplit("_", 1)[1]): v for k, v in inp.items() if k.startswith("replay_norms_")}
    ids = list(smk.params.methods)
    methods = {m: build(smk.params.methods[m]) for m in ids}
    inputs = {m: {k.split(":", 1)[1]: v for k, v in inp.items() if k.startswith(f"{i}:")}
              for i, m in enumerate(ids)}
    write_norm_analyses({int(k): v for k, v in smk.params.checkpoints.items()}, smk.params.model,
                        smk.input.train, smk.input.training_log, replay, methods, inputs,
                        smk.params.retrac, smk.params.seed, dict(smk.output.items()))

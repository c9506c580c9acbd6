# The image embedder (embedding similarity, the counterfactual's cosine): a classifier trained
# here on the training labels, or CLIP read from embedder.path.


rule train_embedder:
    input:
        train=run_path(layout.TRAIN_DATA),
        validation=run_path(layout.VALIDATION_DATA),
    output:
        model=run_path(layout.EMBEDDER_MODEL),
    log:
        log_path("train_embedder"),
    benchmark:
        bench_path("train_embedder")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("train_embedder"),
    params:
        embedder=EMBEDDER,
        seed=config["seed"],
    script:
        "../scripts/train_embedder.py"


rule embed:
    input:
        unpack(embedder_inputs),
        images=[run_path(layout.split_file(s)) for s in ["train"] + QUERY_SETS],
    output:
        embeddings=[run_path(layout.embeddings("{kind}", s)) for s in ["train"] + QUERY_SETS],
    log:
        log_path("embed/{kind}"),
    benchmark:
        bench_path("embed_{kind}")
    wildcard_constraints:
        kind=EMBEDDER["kind"],
    conda:
        CONDA_GPU_ENV if EMBEDDER["kind"] == "clip" else CONDA_ENV
    threads: 1
    resources:
        **resources_of("embed"),
    params:
        embedder=EMBEDDER,
        splits=["train"] + QUERY_SETS,
    script:
        "../scripts/embed.py"

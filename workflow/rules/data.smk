rule data:
    """The real subset D_1: the first N images of a seeded permutation of the source (data_draw: a
    replicate's own D_1 under real_subset: per_replicate, the first N of its own permutation)."""
    output:
        images="results/{dataset}/real/images.npy",
        labels="results/{dataset}/real/labels.npy",
        manifest="results/{dataset}/real/train.tsv",
    log:
        "logs/{dataset}/real/data.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        source=lambda w: dataset_params(w).source_spec,
        root=lambda w: dataset_params(w).root,
        size=lambda w: dataset_params(w).size,
        seed=CFG.seed,
        family=lambda w: dataset_params(w).family,
    script:
        "../scripts/data.py"


use rule data as data_draw with:
    output:
        images="results/{dataset}/real/draw{r}/images.npy",
        labels="results/{dataset}/real/draw{r}/labels.npy",
        manifest="results/{dataset}/real/draw{r}/train.tsv",
    log:
        "logs/{dataset}/real/draw{r}/data.log",
    params:
        replicate=lambda w: int(w.r),


rule reference:
    """Every image of the source: the FID reference when datasets.X.fid_reference is full."""
    output:
        images="results/{dataset}/reference/images.npy",
    log:
        "logs/{dataset}/reference/reference.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        source=lambda w: dataset_params(w).source_spec,
        root=lambda w: dataset_params(w).root,
    script:
        "../scripts/reference.py"


rule fresh:
    """The source's images outside D_1, in the permutation's order: the fresh real data of runs with fresh: λ."""
    output:
        images="results/{dataset}/fresh/images.npy",
        labels="results/{dataset}/fresh/labels.npy",
    log:
        "logs/{dataset}/fresh/fresh.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        source=lambda w: dataset_params(w).source_spec,
        root=lambda w: dataset_params(w).root,
        size=lambda w: dataset_params(w).size,
        seed=CFG.seed,
        family=lambda w: dataset_params(w).family,
    script:
        "../scripts/fresh.py"


use rule fresh as fresh_draw with:
    output:
        images="results/{dataset}/fresh/draw{r}/images.npy",
        labels="results/{dataset}/fresh/draw{r}/labels.npy",
    log:
        "logs/{dataset}/fresh/draw{r}/fresh.log",
    params:
        replicate=lambda w: int(w.r),

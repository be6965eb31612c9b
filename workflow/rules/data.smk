rule data:
    """The real subset D_1: the first N images of a seeded permutation of the source."""
    output:
        images="results/{dataset}/real/images.npy",
        labels="results/{dataset}/real/labels.npy",
        manifest="results/{dataset}/real/train.tsv",
    params:
        source=lambda w: dataset_params(w).source,
        root=lambda w: dataset_params(w).root,
        size=lambda w: dataset_params(w).size,
        seed=CFG.seed,
        family=lambda w: dataset_params(w).family,
    log:
        "logs/{dataset}/real/data.log",
    threads: 1
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/data.py"


rule reference:
    """Every image of the source: the FID reference when datasets.X.fid_reference is full."""
    output:
        images="results/{dataset}/reference/images.npy",
    params:
        source=lambda w: dataset_params(w).source,
        root=lambda w: dataset_params(w).root,
    log:
        "logs/{dataset}/reference/reference.log",
    threads: 1
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/reference.py"

rule classifier:
    """A small CNN on the real labels: the offline feature space for FID (see ouroboros.classifier)."""
    input:
        images="results/{dataset}/real/images.npy",
        labels="results/{dataset}/real/labels.npy",
    output:
        directory("results/{dataset}/real/classifier"),
    log:
        "logs/{dataset}/real/classifier.log",
    benchmark:
        "logs/{dataset}/real/classifier.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        steps=lambda w: dataset_params(w).classifier_steps,
        seed=lambda w: seeds.derive(CFG.seed, w.dataset, 0, "classifier"),
    script:
        "../scripts/classifier.py"

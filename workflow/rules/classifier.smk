rule classifier:
    """A small CNN on the real labels: the offline feature space for FID (see ouroboros.classifier)."""
    input:
        images="results/{dataset}/real/images.npy",
        labels="results/{dataset}/real/labels.npy",
    output:
        directory("results/{dataset}/real/classifier"),
    params:
        steps=lambda w: dataset_params(w).classifier_steps,
        seed=lambda w: seeds.derive(CFG.seed, w.dataset, 0, "classifier"),
    log:
        "logs/{dataset}/real/classifier.log",
    benchmark:
        "logs/{dataset}/real/classifier.benchmark.tsv"
    threads: 1
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/classifier.py"

rule sample:
    """G_n (or the 2N extension of the shared G_1): per-item-seeded samples of the model (uint8 NHWC images
    or float32 vectors) and their labels."""
    input:
        unpack(sample_input),
    output:
        samples="results/{dataset}/{producer}/samples.npy",
        labels="results/{dataset}/{producer}/labels.npy",
    log:
        "logs/{dataset}/{producer}/sample.log",
    benchmark:
        "logs/{dataset}/{producer}/sample.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=model_gpu,
    params:
        sample_range=sample_range,
        seed=sample_seed,
        inference_steps=lambda w: dataset_params(w).sample.inference_steps,
        batch_size=lambda w: dataset_params(w).sample.batch_size,
        guidance_scale=lambda w: dataset_params(w).sample.guidance_scale,
    script:
        "../scripts/sample.py"

rule features:
    """Features of a set of images (real or generated) in one space: pixels, classifier, dinov2, inception,
    dinov2-fd (FD_DINOv2's), inception-torchvision (the torchvision FID's)."""
    input:
        unpack(features_input),
    output:
        "results/{dataset}/{folder}/features-{extractor}.npy",
    log:
        "logs/{dataset}/{folder}/features-{extractor}.log",
    benchmark:
        "logs/{dataset}/{folder}/features-{extractor}.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=features_gpu,
    params:
        dinov2=features_dinov2,
        inception_weights=features_inception_weights,
    script:
        "../scripts/features.py"

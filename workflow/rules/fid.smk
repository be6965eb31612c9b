rule fid:
    """fid.json: Fréchet distance of G_n to the real subset in the dataset's FID feature space (and
    FD_DINOv2 and the torchvision FID when the dataset sets their keys)."""
    input:
        unpack(fid_input),
    output:
        "results/{dataset}/{run}/iter{iter}/fid.json",
    log:
        "logs/{dataset}/{run}/iter{iter}/fid.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        generated=generated_files,
        real=lambda w: paths.fid_reference(CFG, w.dataset, w.run),
        extractor=fid_spaces,
        eval_count=lambda w: dataset_params(w).size,
        meta=run_meta,
    script:
        "../scripts/fid.py"

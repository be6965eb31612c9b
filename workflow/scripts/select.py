# Thin Snakemake script: output goes to the rule's log, the work to ouroboros (src/ouroboros).
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the library, also without pip install -e

from ouroboros import warm  # noqa: E402
from ouroboros.runtime import logged  # noqa: E402

# under `python -m ouroboros.warm` the job runs in a worker forked from a process that imported its libraries once
warm.start(snakemake)

p = snakemake.params
# only the GPU path needs torch: a CPU selection job never imports it
# a job with resources gpu=1 takes a device slot of its own (ouroboros.devices) before CUDA starts
with logged(snakemake.log[0], snakemake.threads, gpu=snakemake.resources.get("gpu", 0), gpus=snakemake.config.get("gpus")):
    from ouroboros import select

    device = p.device
    if device == "cuda":  # select_device: cuda, run where the job's device policy puts the networks
        from ouroboros import policy

        placed = policy.resolve()
        print(placed.describe())
        device = placed.device
    s = dict(p.selection)
    method, real, share, fresh = s.pop("method"), s.pop("real_images"), s.pop("share", "uniform"), s.pop("fresh", None)
    select.stage(p.sources, p.extractor, p.n, method, seed=p.seed, params=s, manifest_out=snakemake.output.manifest,
                 info_out=snakemake.output.info, device=device, real_images=real, share=share,
                 fresh=select.Fresh(*fresh) if fresh else None, plugins=snakemake.config.get("selectors") or [])

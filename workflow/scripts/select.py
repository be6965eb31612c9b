# Thin Snakemake script: output goes to the rule's log, the work to ouroboros (src/ouroboros).
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the library, also without pip install -e

from ouroboros.runtime import logged  # noqa: E402

p = snakemake.params
# only the GPU path needs torch: a CPU selection job never imports it
# a job with resources gpu=1 takes a device slot of its own (ouroboros.devices) before CUDA starts
with logged(snakemake.log[0], snakemake.threads, gpu=snakemake.resources.get("gpu", 0), gpus=snakemake.config.get("gpus")):
    from ouroboros import select

    s = p.selection
    select.stage(p.sources, p.extractor, p.n, s["method"], seed=p.seed, tau0=s["tau0"], decay=s["decay"],
                 manifest_out=snakemake.output.manifest, info_out=snakemake.output.info, device=p.device,
                 real_images=s["real_images"])

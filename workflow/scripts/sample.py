# Thin Snakemake script: output goes to the rule's log, the work to ouroboros (src/ouroboros).
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the library, also without pip install -e

from ouroboros import warm  # noqa: E402
from ouroboros.runtime import logged  # noqa: E402

# under `python -m ouroboros.warm` the job runs in a worker forked from a process that imported its libraries once
warm.start(snakemake)

# a job with resources gpu=1 takes a device slot of its own (ouroboros.devices) before CUDA starts
with logged(snakemake.log[0], snakemake.threads, gpu=snakemake.resources.get("gpu", 0), gpus=snakemake.config.get("gpus")):
    from ouroboros import sample

    p = snakemake.params
    start, count = p.sample_range
    sample.stage(snakemake.input.model, start, count, seed=p.seed, inference_steps=p.inference_steps,
                 batch_size=p.batch_size, guidance_scale=p.guidance_scale, out=snakemake.output.samples,
                 labels_out=snakemake.output.labels)

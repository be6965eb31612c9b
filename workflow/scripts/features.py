# Thin Snakemake script: output goes to the rule's log, the work to ouroboros (src/ouroboros).
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the library, also without pip install -e

from ouroboros import features, warm  # noqa: E402  (features: numpy alone until an extractor runs)
from ouroboros.runtime import logged  # noqa: E402

# under `python -m ouroboros.warm` the job runs in a worker forked from a process that imported its libraries once
# (the model server's when the extractor runs a network in torch, ouroboros.features.register)
warm.start(snakemake, heavy=features.get(snakemake.wildcards.extractor).torch)

# a job with resources gpu=1 takes a device slot of its own (ouroboros.devices) before CUDA starts
with logged(snakemake.log[0], snakemake.threads, gpu=snakemake.resources.get("gpu", 0), gpus=snakemake.config.get("gpus")):
    extractor = snakemake.wildcards.extractor
    features.stage(snakemake.input.images, extractor, snakemake.output[0],
                   classifier_dir=snakemake.input.get("classifier"), dinov2_model=snakemake.params.dinov2,
                   inception_weights=snakemake.params.inception_weights)

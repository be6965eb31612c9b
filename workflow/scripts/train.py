# Thin Snakemake script: output goes to the rule's log, the work to ouroboros (src/ouroboros).
import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the library, also without pip install -e

from ouroboros import warm  # noqa: E402
from ouroboros.runtime import logged  # noqa: E402

# under `python -m ouroboros.warm` the job runs in a worker forked from a process that imported its libraries once
warm.start(snakemake)

# a job with resources gpu=1 takes a device slot of its own (ouroboros.devices) before CUDA starts
with logged(snakemake.log[0], snakemake.threads, gpu=snakemake.resources.get("gpu", 0), gpus=snakemake.config.get("gpus")):
    from ouroboros import train

    p = snakemake.params
    train.stage(snakemake.input.manifest, p.preset, p.options, seed=p.seed, classes=p.classes,
                model_out=snakemake.output.model, stats_out=snakemake.output.stats, checkpoint_dir=p.checkpoint,
                init_from=snakemake.input.get("init"), real=snakemake.input.get("real"),
                labelled=bool(snakemake.input.get("labels")),
                # config.yaml tracking: tensorboard logs each step beside the job's log too; no parameter of the
                # rule, so turning it on or off rebuilds nothing
                tensorboard_dir=str(Path(snakemake.log[0]).with_name("tensorboard"))
                if snakemake.config.get("tracking", train.TRACKING[0]) == "tensorboard" else None)

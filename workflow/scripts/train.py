# Thin Snakemake script: output goes to the rule's log, the work to ouroboros (src/ouroboros).
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the library, also without pip install -e

from ouroboros.runtime import logged  # noqa: E402

with logged(snakemake.log[0], snakemake.threads):
    from ouroboros import train

    p = snakemake.params
    train.stage(snakemake.input.manifest, p.preset, p.options, seed=p.seed, classes=p.classes,
                model_out=snakemake.output.model, stats_out=snakemake.output.stats, checkpoint_dir=p.checkpoint)

# Thin Snakemake script: output goes to the rule's log, the work to ouroboros (src/ouroboros).
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the library, also without pip install -e

from ouroboros.runtime import logged  # noqa: E402

with logged(snakemake.log[0], snakemake.threads):
    from ouroboros import features

    extractor = snakemake.wildcards.extractor
    features.stage(snakemake.input.images, extractor, snakemake.output[0],
                   classifier_dir=snakemake.input.get("classifier"), dinov2_model=snakemake.params.dinov2,
                   inception_weights=snakemake.params.inception_weights)

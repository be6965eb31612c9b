# Thin Snakemake script: output goes to the rule's log, the work to ouroboros (src/ouroboros).
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the library, also without pip install -e

from ouroboros.runtime import logged  # noqa: E402

with logged(snakemake.log[0], snakemake.threads):
    from ouroboros import select

    p = snakemake.params
    select.stage(p.sources, p.extractor, p.n, p.selection["method"], seed=p.seed, tau0=p.selection["tau0"],
                 decay=p.selection["decay"], manifest_out=snakemake.output.manifest, info_out=snakemake.output.info,
                 device=p.device)

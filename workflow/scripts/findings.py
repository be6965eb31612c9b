# Thin Snakemake script: output goes to the rule's log, the work to ouroboros (src/ouroboros).
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the library, also without pip install -e

from ouroboros import warm  # noqa: E402
from ouroboros.runtime import logged  # noqa: E402

# under `python -m ouroboros.warm` the job runs in a worker forked from a process that imported its libraries once
warm.start(snakemake)

with logged(snakemake.log[0], snakemake.threads):
    from ouroboros import findings

    findings.stage(snakemake.input[0], snakemake.output.findings, snakemake.output.summary,
                   config=snakemake.params.findings_config)

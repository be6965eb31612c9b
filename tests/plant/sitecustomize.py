"""A bug planted in every Python process of a workflow run, to check that the T rows catch it:

    PYTHONPATH=src:tests/plant OUROBOROS_PLANT=covariance_n_minus_1 make theory

Python imports ``sitecustomize`` from the path at start-up, so snakemake, its job scripts and the
warm start's workers all run ouroboros.closed_form with the Gaussian refit's covariance divided by
N − 1 instead of N (the bug tests/test_theory.py plants in-process); results/tables/findings.md must
then report a failing T row (T.gaussian_step_ratio). Without OUROBOROS_PLANT this file does nothing.
Never on the path of a real run: results/ made with it are wrong on purpose.
"""

import os
import sys

if os.environ.get("OUROBOROS_PLANT") == "covariance_n_minus_1":
    import numpy as np

    from ouroboros import closed_form

    def _n_minus_1(x):
        return np.atleast_2d(np.cov(x, rowvar=False, ddof=1))

    closed_form.mle_covariance = _n_minus_1
    print("OUROBOROS_PLANT: ouroboros.closed_form.mle_covariance divides by N - 1", file=sys.stderr, flush=True)
elif os.environ.get("OUROBOROS_PLANT"):
    raise SystemExit(f"OUROBOROS_PLANT={os.environ['OUROBOROS_PLANT']!r}: the one planted bug is covariance_n_minus_1")

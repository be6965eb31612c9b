"""The words a findings row ends in, and how an interval alone reads (ouroboros.findings decides
the primary rows with Holm's correction on top of this; ouroboros.theory reads its T rows with it).

- ``holds``: the interval lies wholly on the claimed side of the null value;
- ``fails``: it lies wholly on the other side;
- ``no effect``: a primary row only, the equivalence test (two one-sided tests against a margin
  declared in the config) puts the statistic within the margin of the null: decided against the claim;
- ``inconclusive``: none of these;
- ``too few replicates``: no interval can be formed (one replicate, one chain);
- ``not applicable``: the claim's premise is absent (one dataset size for a test across sizes);
- ``not run``: a primary claim the experiment declares, with none of its data in results/.
"""

from __future__ import annotations

import numpy as np

HOLDS, FAILS, NO_EFFECT, INCONCLUSIVE = "holds", "fails", "no effect", "inconclusive"
TOO_FEW, NOT_APPLICABLE, NOT_RUN = "too few replicates", "not applicable", "not run"
VERDICTS = (HOLDS, FAILS, NO_EFFECT, INCONCLUSIVE, TOO_FEW, NOT_APPLICABLE, NOT_RUN)
SIDES = (">", "<", "=")


def verdict(low: float, high: float, side: str, null: float = 0.0) -> str:
    """The verdict from where the interval lies relative to the null value.

    side ``>`` or ``<``: holds / fails when the interval lies wholly on the claimed / the other
    side, inconclusive when it contains the null. Side ``=``: holds when low ≤ null ≤ high, fails
    otherwise. An interval that cannot be formed (NaN) is too few replicates.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {side!r}")
    if not (np.isfinite(low) and np.isfinite(high)):
        return TOO_FEW
    if side == "=":
        return HOLDS if low <= null <= high else FAILS
    above, below = low > null, high < null
    if side == ">":
        return HOLDS if above else FAILS if below else INCONCLUSIVE
    return HOLDS if below else FAILS if above else INCONCLUSIVE

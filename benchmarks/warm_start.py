"""Cold against warm model jobs: one digits chain (D_1, then two iterations of replace: 4 DDPM jobs and
their selection), from an empty workdir, with every job cold (`--cold`) or under
`python -m ouroboros.warm`. Time each form as a whole process, pair by pair:

    /usr/bin/time -v python benchmarks/warm_start.py --cold
    /usr/bin/time -v python benchmarks/warm_start.py

Both write the same bytes (tests/test_warm.py); only how the jobs start differs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TARGET = "results/digits/replace/iter02/samples.npy"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold", action="store_true", help="every job in its own fresh interpreter")
    args = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    digits = cfg["datasets"]["digits"]
    digits.update(size=32, fid_features="pixels")
    digits["train"].update(steps=12, batch_size=16, warmup_steps=2)
    digits["sample"].update(inference_steps=4, batch_size=64)
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "config.yaml").write_text(yaml.safe_dump(cfg))
        cmd = [snakemake, "-s", str(REPO / "Snakefile"), "--directory", work, "--cores", "2", "--resources=gpu=2",
               *([] if os.environ.get("VERBOSE") else ["--quiet", "all"]), "--", TARGET]
        if not args.cold:
            cmd = [sys.executable, "-m", "ouroboros.warm", *cmd]
        env = {**os.environ, "SLURM_CONF": "/dev/null", "OMP_WAIT_POLICY": "PASSIVE"}
        env.pop("OUROBOROS_WARM", None)
        subprocess.run(cmd, check=True, env=env, stdout=None if os.environ.get("VERBOSE") else subprocess.DEVNULL)


if __name__ == "__main__":
    main()

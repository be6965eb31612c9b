"""Process set-up for a job: thread counts and the device.

Snakemake runs several jobs side by side; each must use only the threads it was given, or two
jobs on a two-core box fight and run many times slower.
"""

from __future__ import annotations

import os


def configure(threads: int = 1, *, uses_torch: bool = True) -> None:
    """Thread counts for this process; ``uses_torch=False`` leaves torch unimported (a job that
    never needs it, such as CPU selection, then neither pays for the import nor loads CUDA)."""
    threads = max(1, int(threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if not uses_torch:
        return
    try:
        import torch
    except ImportError:  # CPU-only stages need not have torch loaded
        return
    torch.set_num_threads(threads)
    # inter-op threads can be set only once per process, before any parallel work
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class logged:
    """Send this job's stdout, stderr (tqdm, warnings, tracebacks) and logging to its log file.

    Snakemake keeps a failed job's log, so the traceback of a failure lands where the user is
    told to look.
    """

    def __init__(self, path: str, threads: int = 1, *, uses_torch: bool = True):
        self.path, self.threads, self.uses_torch = path, threads, uses_torch

    def __enter__(self):
        import logging
        import sys

        from pathlib import Path

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", buffering=1)
        self._saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self._file
        logging.basicConfig(stream=self._file, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
        configure(self.threads, uses_torch=self.uses_torch)
        return self

    def __exit__(self, kind, value, tb):
        import sys
        import traceback

        if kind is not None:
            traceback.print_exception(kind, value, tb, file=self._file)
        sys.stdout, sys.stderr = self._saved
        self._file.close()
        return False


def fault_point(stage: str) -> None:
    """Fault injection for the resume tests: OUROBOROS_FAULT=<stage> makes that stage fail here,
    after it has started writing, exactly like a crash would.

    With OUROBOROS_FAULT_ONCE=<path> the fault fires only in the first job that reaches it, which
    creates <path> (atomically); later jobs and retries run through, as after a transient failure.
    """
    if os.environ.get("OUROBOROS_FAULT") != stage:
        return
    once = os.environ.get("OUROBOROS_FAULT_ONCE")
    if once:
        try:
            open(once, "x").close()
        except FileExistsError:
            return
    raise RuntimeError(f"injected fault in {stage} (OUROBOROS_FAULT={stage})")


def pause_point(stage: str) -> None:
    """Test hook for the kill tests: OUROBOROS_PAUSE=<stage> makes that stage announce itself in
    its log and sleep here (OUROBOROS_PAUSE_SECONDS, default an hour), after it has started
    writing, so a test can SIGKILL it at exactly this point."""
    if os.environ.get("OUROBOROS_PAUSE") == stage:
        import sys
        import time

        print(f"paused in {stage} (OUROBOROS_PAUSE={stage})", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("OUROBOROS_PAUSE_SECONDS", 3600)))

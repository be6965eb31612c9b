"""Process set-up for a job: thread counts, its log, a GPU slot (the device choices: ouroboros.policy).

Snakemake runs several jobs side by side; each must use only the threads it was given, or two
jobs on a two-core box fight and run many times slower.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


def configure(threads: int = 1) -> None:
    """This job's thread budget, for every library that may load later in the process.

    torch is not imported here: jobs that run no model (select, evaluate, tables, figures) would
    pay seconds for it. torch reads OMP_NUM_THREADS when it loads, so a model stage that imports
    it later gets the same intra-op thread count; a torch already loaded (in-process callers,
    tests) is set directly.
    """
    threads = max(1, int(threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


HEAVY = ("torch", "diffusers", "transformers")  # seconds to import each
# set inside a warm worker (ouroboros.warm): its libraries were imported before the job began. Here,
# not in warm, so that the job's runtime asks without importing the warm start (warm imports runtime)
WARM_WORKER = "OUROBOROS_WARM_WORKER"


def preloaded() -> bool:
    """Whether this process is a warm worker (its libraries were imported before the job began)."""
    return bool(os.environ.get(WARM_WORKER))


class logged:
    """Send this job's stdout, stderr (tqdm, warnings, tracebacks) and logging to its log file.

    Snakemake keeps a failed job's log, so the traceback of a failure lands where the user is
    told to look. A job that asked for a GPU (``gpu``) first takes a device slot
    (``ouroboros.devices``; ``gpus`` is config.yaml's ``gpus`` block), and the log says which.
    """

    def __init__(self, path: str, threads: int = 1, gpu: int = 0, gpus: dict | None = None):
        self.path, self.threads, self.gpu, self.gpus = path, threads, int(gpu or 0), dict(gpus or {})

    def __enter__(self):
        import logging
        import sys
        from pathlib import Path

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", buffering=1)
        self._saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self._file
        logging.basicConfig(stream=self._file, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
        configure(self.threads)
        if self.gpu:
            try:
                self._gpu()
            except BaseException:  # logged like a failure inside the job: __exit__ does not run for __enter__'s
                self.__exit__(*sys.exc_info())
                raise
        return self

    def _gpu(self) -> None:
        """A device slot, then the refusal of a job handed a GPU that torch cannot use (ouroboros.cuda)."""
        from ouroboros import cuda, devices

        slot = devices.assign(self.gpu, self.gpus.get("count", devices.AUTO), int(self.gpus.get("slots_per_gpu", 1)))
        given = (f"this job was given GPU {os.environ.get('CUDA_VISIBLE_DEVICES')} (slot {slot.slot}, {slot.path})"
                 if slot is not None else cuda.gpu_allocated())
        cuda.require(given)

    def __exit__(self, kind, value, tb):
        import sys
        import traceback

        if kind is not None:
            traceback.print_exception(kind, value, tb, file=self._file)
        # what the job paid seconds to import: stages that run no model should name none of these
        loaded = [m for m in HEAVY if m in sys.modules]
        warm = " (a warm worker: imported before the job began)" if preloaded() else ""
        print(f"libraries loaded: {', '.join(loaded) if loaded else 'none of ' + ', '.join(HEAVY)}{warm}", file=self._file)
        sys.stdout, sys.stderr = self._saved
        self._file.close()
        return False


def _armed(kind: str, stage: str) -> bool:
    """Whether the test hook OUROBOROS_<kind>=<stage> fires here. With OUROBOROS_<kind>_ONCE=<path>
    only the first job that reaches it fires, creating <path> atomically (so a test also knows
    when it has fired); later jobs, retries and restarts run through."""
    if os.environ.get(f"OUROBOROS_{kind}") != stage:
        return False
    once = os.environ.get(f"OUROBOROS_{kind}_ONCE")
    if once:
        try:
            open(once, "x").close()
        except FileExistsError:
            return False
    return True


def fault_point(stage: str) -> None:
    """Fault injection for the resume tests: OUROBOROS_FAULT=<stage> makes that stage fail here,
    after it has started writing, exactly like a crash would (OUROBOROS_FAULT_ONCE: only the
    first time, as after a transient failure)."""
    if _armed("FAULT", stage):
        raise RuntimeError(f"injected fault in {stage} (OUROBOROS_FAULT={stage})")


def pause_point(stage: str) -> None:
    """Test hook for the kill tests: OUROBOROS_PAUSE=<stage> makes that stage announce itself in
    its log and sleep here (OUROBOROS_PAUSE_SECONDS, default an hour), after it has started
    writing, so a test can SIGKILL (or SLURM requeue) it at exactly this point
    (OUROBOROS_PAUSE_ONCE: only the first job pauses; the restarted one runs through).
    OUROBOROS_PAUSE_UNTIL=<path> ends the pause as soon as <path> exists, and so does a pre-emption
    (SIGTERM, ``preemptible``), announced in the log so that a test knows it arrived."""
    if _armed("PAUSE", stage):
        import sys
        import time

        print(f"paused in {stage} (OUROBOROS_PAUSE={stage})", file=sys.stderr, flush=True)
        until = os.environ.get("OUROBOROS_PAUSE_UNTIL")
        deadline = time.monotonic() + float(os.environ.get("OUROBOROS_PAUSE_SECONDS", 3600))
        while time.monotonic() < deadline and not (until and os.path.exists(until)):
            if _PREEMPTED:  # the stage stops at its next safe point, as it would have without the pause
                print(f"pre-emption (signal {_PREEMPTED[0]}) received while paused in {stage}", file=sys.stderr, flush=True)
                break
            time.sleep(0.05)


_PREEMPTED: list[int] = []  # the signal that asked this job to stop, while ``preemptible`` holds


@contextlib.contextmanager
def preemptible() -> Iterator[None]:
    """SIGTERM (a scheduler pre-empting the job, Snakemake or the warm start stopping it) asks the
    block to stop at its next safe point instead of killing the process mid-write: a training
    checks ``preempted()`` after each step, writes its checkpoint and exits, as a checkpoint being
    written when the signal came is finished first. Outside the main thread (where no handler can
    be set) it does nothing."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _PREEMPTED.clear()
    previous = signal.signal(signal.SIGTERM, lambda sig, _frame: _PREEMPTED.append(sig))
    try:
        yield  # a SIGTERM after the block's last safe point lets it finish: its end is the quickest stop
    finally:
        signal.signal(signal.SIGTERM, previous)
        _PREEMPTED.clear()


def preempted() -> bool:
    """Whether a SIGTERM arrived inside ``preemptible``: stop at this safe point."""
    return bool(_PREEMPTED)

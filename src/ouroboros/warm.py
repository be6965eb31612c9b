"""Warm start: jobs forked from processes that have already imported their libraries.

On a CPU machine at the demo's or the tests' scale a job spends most of its life importing: about
10 CPU-s for torch and diffusers in a model job, against well under a second of training or
sampling, and 0.3–2 CPU-s for numpy, pandas, scipy and sklearn in a job without a model, against
milliseconds of work. Under

    python -m ouroboros.warm snakemake --cores 2 ...

(the Makefile's demo and science targets use it) this wrapper runs snakemake as its child and serves
its jobs from two servers: itself for the model jobs (at the first one it imports torch, diffusers,
transformers and torch-fidelity), and a light server, forked before anything heavy is imported, for
every other job (numpy, pandas, scipy, sklearn, matplotlib; never torch, so such a job's log still
says "libraries loaded: none of torch, ..."). For each job a server forks a worker. The worker
runs the same generated script file a cold job would run, in the job's own working directory,
environment, argv and stdin/stdout/stderr, so the job computes the same bytes (tests/test_warm.py
compares them with a cold run). Only jobs that ask through ``start(snakemake)`` are handed over,
and only single-threaded ones: the servers load their BLAS and OpenMP libraries for one thread, as
``runtime.configure(1)`` would.

Processes:
- the client is the job's own process, started by Snakemake. It hands over its stdio, waits, and
  exits with the worker's status; a signal it receives goes on to the worker, and it goes on
  waiting: a SIGTERM'd training writes its checkpoint and stops as a cold one does. A served snakemake
  starts its Python script jobs with a launcher in place of its Python (``_write_launcher``): a
  client that hands Snakemake's script file to the light server before it imports anything (a
  job's own Python spent 0.1 CPU-s importing Snakemake for the file's preamble). The light worker
  then reads the job, and hands a model job on to the model server in its turn, or, for a job of
  several threads, becomes a fresh Python (exec) that runs it cold.
- the server (this wrapper) forks a manager per client and exits with snakemake's status when
  snakemake is done. The light server ends when snakemake has.
- the manager forks the worker, tells the client its pid, and waits for it. If the client dies
  (SIGKILLed by Snakemake or by hand: it dies of nothing else), it kills the worker at once, so
  nothing of a killed job keeps writing. It ignores SIGTERM, which is for the job (a scheduler's
  SIGTERM to the whole tree must not take the worker down with its manager before the checkpoint).

If the wrapper dies (SIGKILL, a lost login), snakemake gets SIGTERM and stops starting jobs, and
every manager, watching the server's life line (_LIFE), passes SIGTERM on to its worker at once: a
training finishes the step and any checkpoint write under way, checkpoints and exits, any other job
ends there and then. The tree is gone within that time (well under a second at the tests' scale,
one training step and one checkpoint write at any scale), and a worker still running GRACE seconds
after its SIGTERM is SIGKILLed. Each job's process holds the directory's jobs lock while it runs
and removes the temporaries an earlier attempt left beside its outputs (start): a new run in the
directory waits for an old run's jobs, or refuses naming them (ouroboros.locks), and finds no
half-written files of theirs.

Every process descends from the wrapper and stays in its process group, so killing the group kills
them all and their CPU time is counted as the wrapper's children's. A job that finds no server (the
wrapper is gone, or the job runs on another machine under a cluster executor) runs cold in its own
process, as without the wrapper; so does a job of another Python, environment or checkout, or of
another SLURM allocation than the server's (a worker would escape its cgroup). A machine with a
CUDA driver gets no server: forking after CUDA has started is unsafe, and there the imports are
seconds against minutes of GPU work.

``--serve TOKEN`` is a standalone server for many commands in a row (the test suite keeps one per
session): a command run as ``python -m ouroboros.warm snakemake ...`` with ``OUROBOROS_WARM=TOKEN``
in its environment has its jobs served there, and its snakemake itself is forked from the light
server too (2 of the 2.7 CPU-s of a small plan are snakemake's imports). Settings that a library
reads from the environment when it is imported come from the server's environment then.
"""

from __future__ import annotations

import marshal  # the messages: plain values, and a builtin, so that a launcher starts in milliseconds
import os
import signal
import socket
import struct
import sys

from ouroboros.runtime import WARM_WORKER  # runtime never imports warm: no import circle

ENV = "OUROBOROS_WARM"  # the server's token, set by `python -m ouroboros.warm` for the command it runs
WORKER = WARM_WORKER  # set inside a worker: the script runs here, it does not hand over again
LAUNCHED = "launched"  # WORKER in a worker that a launcher asked for: its job has not yet chosen a server
_LAUNCHER: list[str] = []  # this server's launcher (_write_launcher), for the snakemakes it forks
# the libraries a model job imports, in the order a job imports them ("module:function": called, for
# what a job imports by a function of ours: the UNet, as ouroboros.lazy imports it)
PRELOAD = ("torch", "torchvision", "diffusers", "ouroboros.lazy:unet_class", "diffusers.schedulers",
           "transformers", "transformers.models.dinov2.modeling_dinov2", "transformers.models.auto",
           "torch_fidelity.feature_extractor_inceptionv3", "scipy.linalg", "snakemake.script")
# what the jobs without a model import (0.3–2 CPU-s each: sklearn's digits loader alone is 1.9): the
# light server imports these and never torch, so that those jobs' logs still truthfully say
# "libraries loaded: none of torch, ..."
LIGHT_PRELOAD = ("numpy", "pandas", "scipy.special", "scipy.stats", "scipy.spatial", "scipy.linalg",
                 "sklearn.datasets", "faiss", "matplotlib.pyplot", "PIL.Image", "yaml", "snakemake.script")
# what a snakemake command imports (2 of its 2.7 CPU-s for a plan of 50 jobs): a standalone server
# (--serve) also runs the commands themselves, forked from its light server
COMMAND_PRELOAD = ("snakemake.cli", "snakemake.api", "snakemake.profiles", "snakemake.storage",
                   "snakemake.report.html_reporter", "requests", "nbformat", "docutils.core", "jinja2",
                   "jsonschema", "fastjsonschema", "yte", "smart_open", "dpath", "argparse_dataclass")
_HEADER = struct.Struct("!Q")
PR_SET_PDEATHSIG = 1
# The server's life line (_lifeline): a pipe whose write end only the server holds, so that its read
# end, which every manager watches, reads as closed the moment the server dies, however it dies
_LIFE: list[int] = []
GRACE = 60.0  # seconds a worker has to stop after its SIGTERM once the server is dead; then SIGKILL


def _address(token: str, heavy: bool = True) -> str:
    """An abstract Unix socket (Linux): no file to clean up, gone with the process that holds it. The
    model jobs' server and the light server of the other jobs listen on one each."""
    return f"\0ouroboros-warm-{token}" + ("" if heavy else "-light")


def _send(sock: socket.socket, obj) -> None:
    data = marshal.dumps(obj)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = [b""]
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise EOFError("the other end closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _recv(sock: socket.socket):
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    return marshal.loads(_recv_exact(sock, size))


def _cuda_machine() -> bool:
    return os.path.exists("/dev/nvidiactl")


def offered() -> bool:
    """Whether this process may hand its job over: under the wrapper, and not already a worker."""
    return bool(os.environ.get(ENV)) and not os.environ.get(WORKER)


def start(snakemake, *, heavy: bool | None = None) -> None:
    """Call first thing in a job's script. Under the wrapper, a job with one thread is run by a forked
    worker, and this process exits with the worker's status: a model job (``heavy``, by default one
    that asked for a GPU slot) by the server that imported torch, any other by the light server that
    never does. Otherwise (and if no server answers) it returns, and the job runs here, cold.

    Wherever the job runs, warm or cold, that process first holds the directory's jobs lock (a new
    run waits for it: ouroboros.locks) and removes what an earlier attempt's cut-short atomic writes
    left beside the job's outputs and checkpoint (ouroboros.io.remove_temporaries)."""
    _run_elsewhere(snakemake, heavy)
    _begin(snakemake)


def _begin(snakemake) -> None:
    """This process runs the job. Its outputs (and its training checkpoint, a sibling of its model)
    are its own while it runs, Snakemake giving them to no other job, and the temporaries beside
    them are an earlier attempt's, killed mid-write."""
    from ouroboros import locks
    from ouroboros.io import remove_temporaries

    locks.hold_job()
    params = getattr(snakemake, "params", None)
    for path in [*getattr(snakemake, "output", []), *([params.get("checkpoint")] if params is not None else [])]:
        if path:
            remove_temporaries(path)


def _run_elsewhere(snakemake, heavy: bool | None) -> None:
    """start's hand-over: exits this process once a worker has run the job; returns where it runs here."""
    launched = os.environ.get(WORKER) == LAUNCHED
    single = int(snakemake.threads) == 1
    if not launched and not (offered() and single):
        return
    if heavy is None:
        heavy = int(snakemake.resources.get("gpu", 0) or 0) > 0
    script = os.path.abspath(sys.argv[0])  # the generated file: Snakemake's preamble, then the script
    if launched:  # this light worker took the job from a launcher, before anyone knew what the job is
        env = {k: v for k, v in os.environ.items() if k != WORKER}  # the job's own environment
        if single and not heavy:
            os.environ[WORKER] = "1"
            return  # the job is this worker's
        code = _hand_over(env[ENV], script, heavy=True, env=env) if single else None
        if code is None:  # a job of several threads, or one the model server would not take: cold, as
            sys.stdout.flush()  # the launcher's own Python would have run it, in this process
            sys.stderr.flush()
            os.execve(sys.executable, [sys.executable, *sys.argv], env)
    else:
        code = _hand_over(os.environ[ENV], script, heavy)
    if code is not None:
        _exit_like(code)


def _exit_like(code: int) -> None:
    """Exit as the worker did: with its code, or killed by the same signal."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:
        if -code != signal.SIGKILL:
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    os._exit(min(code, 255))


def _context() -> tuple[str, str, str, str | None]:
    """What a worker must share with its client: the Python, its environment and this library's copy
    (a conda env of the rule, or a Snakefile of another checkout, would run other code), and the
    SLURM allocation (a worker of another allocation's server would escape its limits: cgroup)."""
    return (sys.version, os.path.realpath(sys.prefix), os.path.realpath(os.path.dirname(__file__)),
            os.environ.get("SLURM_JOB_ID"))


def _hand_over(token: str, script: str, heavy: bool = True, *, argv: list[str] | None = None,
               path: list[str] | None = None, env: dict | None = None, command: bool = False,
               launched: bool = False) -> int | None:
    """The client's side: the worker's exit status, or None when no worker started (run cold). The
    worker runs ``script`` with this process's argv, sys.path and environment, or with ``argv``,
    ``path`` and ``env``; a ``command`` (snakemake itself) offers the warm start on to the jobs it
    starts; a ``launched`` job (from a launcher) chooses its server once it knows what it is."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(_address(token, heavy))
        except OSError:
            return None  # no server (the command it ran is over, or this job runs on another machine)
        request = {"script": script, "argv": argv or sys.argv, "path": path or sys.path, "cwd": os.getcwd(),
                   "env": env or dict(os.environ), "context": _context(), "command": command, "launched": launched}
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            data = marshal.dumps(request)
            socket.send_fds(sock, [_HEADER.pack(len(data)) + data], [0, 1, 2])
            pid = _recv(sock)  # the first job waits here while the server imports: seconds it would spend anyway
        except (OSError, EOFError):
            return None  # the server went away, or would not serve this Python: nothing ran, run cold
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, lambda s, _frame: os.kill(pid, s))
        try:
            return _recv(sock)
        except (OSError, EOFError):
            return 1  # the manager died: the worker's fate is unknown, so the job failed


def _src() -> str:
    """The folder that holds this copy of the ouroboros package (a new process imports it from there)."""
    return os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def _write_launcher() -> str | None:
    """A launcher: the executable that a served snakemake runs its Python script jobs with, in place of
    this Python (_use_launcher). It hands Snakemake's script file to the light server before any
    import, where a job's own Python spent 0.1 CPU-s importing snakemake for the file's preamble,
    and it runs anything else as this Python would. None where this Python's path cannot be a #! line."""
    import tempfile

    if any(c.isspace() for c in sys.executable) or len(sys.executable) > 200:
        return None
    _remove_stale_launchers(tempfile.gettempdir())
    path = os.path.join(tempfile.mkdtemp(prefix=f"ouroboros-warm-{os.getpid()}-"), "python")
    with open(path, "w") as f:
        f.write(f"#!{sys.executable}\nimport sys\nsys.path[0] = {_src()!r}\nfrom ouroboros.warm import _launch\n_launch()\n")
    os.chmod(path, 0o755)
    return path


def _remove_stale_launchers(folder: str) -> None:
    """Remove the launchers of this user's servers that were killed (SIGKILL leaves no time to)."""
    import re
    import shutil

    for entry in os.scandir(folder):
        match = re.fullmatch(r"ouroboros-warm-(\d+)-\w+", entry.name)
        try:
            if match and entry.is_dir(follow_symlinks=False) and entry.stat().st_uid == os.getuid():
                os.kill(int(match.group(1)), 0)
        except ProcessLookupError:  # its server is gone
            shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            continue


def _remove_launcher(path: str | None) -> None:
    if path:
        import shutil

        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def _is_snakemake_script(arg: str) -> bool:
    """Whether ``arg`` is the file Snakemake writes for a ``script:`` job: .snakemake/scripts/tmp….py"""
    *_, parent, folder, name = ["", "", *os.path.abspath(arg).split(os.sep)]
    return (parent, folder) == (".snakemake", "scripts") and name.startswith("tmp") and name.endswith(".py") \
        and os.path.isfile(arg)


def _script_path(script: str) -> list[str]:
    """The sys.path that this Python gives ``script`` run as `python SCRIPT`: its real folder first."""
    return [os.path.dirname(os.path.realpath(script)), *sys.path[1:]]


def _launch() -> None:
    """The launcher (_write_launcher): Snakemake's script file, its only argument, goes to the light
    server with the argv, sys.path, directory and environment that this Python would have run it
    with; the light worker hands a model job on to the model server (start). Anything else, or a
    job that no server takes, is this Python's, as if the launcher were not there."""
    args = sys.argv[1:]
    token = os.environ.get(ENV)
    if token and not os.environ.get(WORKER) and len(args) == 1 and _is_snakemake_script(args[0]):
        code = _hand_over(token, os.path.abspath(args[0]), heavy=False, argv=args, path=_script_path(args[0]),
                          launched=True)
        if code is not None:
            _exit_like(code)
    os.execv(sys.executable, [sys.executable, *args])


class _LauncherSys:
    """The ``sys`` that snakemake.script sees: its executable is the launcher (Snakemake runs a Python
    script job as `{sys.executable} FILE`), anything else is sys itself. Only script jobs see it:
    the jobs a cluster executor submits keep the Python they name."""

    def __init__(self, launcher: str):
        self.executable = launcher

    def __getattr__(self, name: str):
        return getattr(sys, name)


def _use_launcher() -> None:
    """Have this process's snakemake run its Python script jobs with this server's launcher. A
    Snakemake whose script module is not as expected keeps its own Python: jobs then hand over
    themselves (start), 0.1 CPU-s later."""
    if not _LAUNCHER:
        return
    try:
        import snakemake.script as script_module
    except ImportError:
        return
    if getattr(script_module, "sys", None) is sys and hasattr(script_module, "PythonScript"):
        script_module.sys = _LauncherSys(_LAUNCHER[0])


def _command() -> None:
    """`python -c ... LAUNCHER SCRIPT ARGS` (wrap's child): run the Python script SCRIPT (snakemake) as
    `SCRIPT ARGS` would run, with its script jobs started by LAUNCHER."""
    import runpy

    launcher, script, *args = sys.argv[1:]
    _LAUNCHER[:] = [launcher]
    _use_launcher()
    for name in [m for m in sys.modules if m == "ouroboros" or m.startswith("ouroboros.")]:
        del sys.modules[name]  # the Snakefile imports its own checkout's library, as it would without this
    sys.argv[:] = [script, *args]
    sys.path[:] = _script_path(script)
    runpy.run_path(script, run_name="__main__")


def wrap(argv: list[str]) -> int:
    """`python -m ouroboros.warm CMD ...`: run CMD (snakemake) as a child, serving its model jobs
    until it exits; return its exit status. This process is the server: it imports the libraries
    when the first job asks, so a run without model jobs costs nothing, and every process of the
    warm start descends from it (its CPU time is counted wherever CMD's would be). Where
    ``OUROBOROS_WARM`` already names a server (``serve``: one for many commands in a row, as the
    test suite keeps), CMD's jobs use that one, and CMD itself, when it is a script of this Python
    (the environment's snakemake), runs forked from its light server: this process then waits for
    it as a job's client waits for its worker."""
    if not argv:
        raise SystemExit("usage: python -m ouroboros.warm snakemake [ARGS...]")
    env = {k: v for k, v in os.environ.items() if k != WORKER}
    if env.get(ENV) and not os.environ.get(WORKER) and (script := _own_python_script(argv[0])):
        # a standalone server runs the command itself too: snakemake forked from its light server
        code = _hand_over(env[ENV], script, heavy=False, argv=[script, *argv[1:]], path=_script_path(script),
                          command=True)
        if code is not None:
            _exit_like(code)
    listener, light, launcher, command = None, None, None, argv
    if not env.get(ENV) and not _cuda_machine():
        token = f"{os.getpid()}-{os.urandom(6).hex()}"
        _lifeline()
        listener = _listen(token)
        light = _start_light(token, listener, eager=False)
        env[ENV] = token
        launcher = _write_launcher()
        if launcher and (script := _own_python_script(argv[0])):
            command = [sys.executable, "-c", f"import sys; sys.path[0] = {_src()!r}; from ouroboros.warm import _command; "
                       "_command()", launcher, script, *argv[1:]]
    import subprocess

    try:
        child = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)
    except OSError as exc:
        _stop_light(light)
        _remove_launcher(launcher)
        raise SystemExit(f"ouroboros.warm: cannot run {argv[0]!r}: {exc}") from None
    # Ctrl-C reaches the whole foreground group: snakemake handles it; SIGTERM is passed on
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _frame: child.send_signal(s))
    managers: set[int] = set()
    if listener is not None:
        _serve(listener, lambda: child.poll() is None, managers, eager=False)
        listener.close()
    code = child.wait()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # snakemake is gone: nothing to pass them on to
        signal.signal(sig, signal.SIG_DFL)
    _stop_light(light)
    for pid in managers:  # a job's manager outlives snakemake only while its client does
        os.waitpid(pid, 0)
    _remove_launcher(launcher)
    return code if code >= 0 else 128 - code


def _own_python_script(command: str) -> str | None:
    """The path of ``command`` when it is a Python script of this interpreter (a console script such
    as the environment's ``snakemake``), which a worker of this server can run as it is."""
    import shutil

    path = shutil.which(command)
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    interpreter = first[2:].strip().split(b" ")[0].decode(errors="replace")
    same = os.path.realpath(interpreter) == os.path.realpath(sys.executable)
    return os.path.abspath(path) if same else None


def serve(token: str) -> None:
    """`python -m ouroboros.warm --serve TOKEN`: a server for every command run with
    ``OUROBOROS_WARM=TOKEN`` in its environment, until the process that started it exits. It imports
    at once, so the first job does not wait. Jobs served this way descend from this server, not from
    their snakemake; a killed job's worker still dies with its client (the manager sees to it)."""
    if _cuda_machine():
        return
    parent = os.getppid()
    _lifeline()
    listener = _listen(token)
    _LAUNCHER[:] = [path] if (path := _write_launcher()) else []  # for the snakemakes its light server forks
    def stop(sig: int, _frame) -> None:
        # stopped: remove the launcher and exit here. Not sys.exit: a handler's exception is raised in
        # whatever the main thread runs, and during the eager imports a library's import code that
        # catches everything swallowed it, the server serving on and its stopper waiting for ever
        _remove_launcher(path)
        os._exit(128 + sig)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        _start_light(token, listener, eager=True, commands=True)
        _serve(listener, lambda: os.getppid() == parent, set(), eager=True)
    finally:
        _remove_launcher(path)


def _lifeline() -> None:
    """Make this process the server whose death its managers watch (_LIFE): it keeps the write end."""
    _LIFE[:] = list(os.pipe())


def _forked_from_server() -> None:
    """In a process forked from the server (the light server, a manager): drop the life line's write
    end, which only the server may hold, keeping the read end to watch."""
    if len(_LIFE) == 2:
        os.close(_LIFE.pop())


def _listen(token: str, heavy: bool = True) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(_address(token, heavy))
    listener.listen(64)
    return listener


def _start_light(token: str, heavy: socket.socket, *, eager: bool, commands: bool = False) -> int:
    """Fork the light server, before this process imports anything heavy: it serves the jobs without
    a model from LIGHT_PRELOAD (and snakemake commands, with COMMAND_PRELOAD: ``commands``), until
    its parent stops it (SIGTERM) or dies. Its socket is bound here, before any job can ask."""
    light = _listen(token, heavy=False)
    server = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        light.close()
        return pid
    try:
        _forked_from_server()
        heavy.close()  # else the model jobs' address would stay bound, unanswered, while this one lives
        stopping: list[int] = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for snakemake and the jobs
        managers: set[int] = set()
        preload = LIGHT_PRELOAD + (COMMAND_PRELOAD if commands else ())
        _serve(light, lambda: not stopping and os.getppid() == server, managers, eager=eager, preload=preload)
        for manager in managers:
            os.waitpid(manager, 0)
    finally:
        os._exit(0)


def _stop_light(pid: int | None) -> None:
    """Stop the light server once snakemake is gone: it ends when its last job's manager has."""
    if pid:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


def _die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Get ``sig`` when the parent dies: snakemake (before exec) when the wrapper is killed by a
    timeout, say; a worker (SIGKILL) when its manager dies."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _serve(listener: socket.socket, running, managers: set[int], *, eager: bool,
           preload: tuple[str, ...] = PRELOAD) -> None:
    """Fork a manager per connection while ``running()``; import ``preload`` first (``eager``)
    or at the first connection."""
    import gc
    import select

    if eager:
        _preload(preload)
    imported = eager
    while running():
        for pid in list(managers):  # reap the managers that are done (only those: never the child)
            if os.waitpid(pid, os.WNOHANG)[0]:
                managers.discard(pid)
        if not select.select([listener], [], [], 0.5)[0]:
            continue
        conn, _ = listener.accept()
        if not imported:
            _preload(preload)
            imported = True
        sys.stdout.flush()
        sys.stderr.flush()
        # every object so far into the collector's permanent generation: a job's collections then never
        # write to the headers of the libraries' objects, which would copy their pages into each job
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            listener.close()
            _forked_from_server()
            try:
                _manage(conn)
            finally:
                os._exit(0)
        managers.add(pid)
        conn.close()


def _preload(names: tuple[str, ...]) -> None:
    """Import what the served jobs import, loading BLAS and OpenMP as a one-thread job would."""
    import importlib

    from ouroboros import runtime

    runtime.configure(1)
    for name in names:
        module, _, function = name.partition(":")
        try:
            imported = importlib.import_module(module)
            if function:
                getattr(imported, function)()
        except Exception:  # noqa: BLE001 - a library this install lacks: its jobs import it themselves
            pass


def _manage(conn: socket.socket) -> None:
    """Fork the worker, tell the client its pid, wait; kill the worker if the client goes away."""
    conn.settimeout(None)
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    if uid != os.getuid():  # an abstract socket has no permissions: only our own user's jobs are served
        return
    head, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, 3)
    (size,) = _HEADER.unpack(head + _recv_exact(conn, _HEADER.size - len(head)))
    try:
        request = marshal.loads(_recv_exact(conn, size))
    except (ValueError, EOFError, TypeError):
        return  # not a request of this Python's: unanswered, the client runs its job cold
    if request.get("context") != _context():
        return  # closing the connection unanswered: the client runs its job cold, in its own process
    manager = os.getpid()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD wakes the select below
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the worker stops and the manager reports it
    # a SIGTERM to the whole tree (a scheduler, `kill -- -PGID`) is the job's, which writes its checkpoint
    # and stops: the manager, ignoring it, lives on to report, and its worker is not SIGKILLed with it
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        os.close(wake_r)
        os.close(wake_w)
        conn.close()
        try:
            _work(request, fds, manager)
        finally:
            os._exit(1)  # whatever escaped _work is a failure, never a success
    for fd in fds:
        os.close(fd)
    import select
    import time

    watched = [conn, wake_r, *_LIFE[:1]]
    deadline = None  # once the server is dead: when the worker's grace ends
    try:
        _send(conn, pid)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                _send(conn, os.waitstatus_to_exitcode(status))
                return
            if deadline is not None and time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)  # pre-empted GRACE s ago and still running
                deadline = float("inf")
            timeout = None if deadline is None else max(0.0, min(deadline - time.monotonic(), 3600.0))
            readable, _, _ = select.select(watched, [], [], timeout)
            if wake_r in readable:
                os.read(wake_r, 512)
            if _LIFE and _LIFE[0] in readable:  # the server died (the wrapper killed): pre-empt the job
                watched.remove(_LIFE[0])
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + GRACE
            if conn in readable and not conn.recv(1):
                raise EOFError("the client is gone: the job was killed")
    except (OSError, EOFError):  # the job is gone (its client SIGKILLed): nothing of it may go on writing
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _work(request: dict, fds: list[int], manager: int) -> None:
    """The worker: become the client (stdio, directory, environment, argv), run its script file."""
    import runpy
    import traceback

    _die_with_parent(signal.SIGKILL)
    if os.getppid() != manager:  # the manager died before the line above: nobody waits for this job
        os._exit(1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    code = 1
    interrupted = False
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if request.get("command"):  # a command's jobs may hand over in their turn, through the launcher
            _use_launcher()
        else:
            os.environ[WORKER] = LAUNCHED if request.get("launched") else "1"
        sys.argv[:] = request["argv"]
        sys.path[:] = request["path"]
        try:
            runpy.run_path(request["script"], run_name="__main__")
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code & 0xFF
            else:
                print(exc.code, file=sys.stderr)
        except KeyboardInterrupt:
            traceback.print_exc()
            interrupted = True
        except BaseException:  # noqa: BLE001 - what an uncaught exception does to a Python process
            traceback.print_exc()
        if "threading" in sys.modules:  # as the interpreter ends: join the threads left, then atexit
            sys.modules["threading"]._shutdown()
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        if interrupted:  # as Python itself ends on Ctrl-C: killed by SIGINT
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"] and len(sys.argv) == 3:
        serve(sys.argv[2])
    else:
        sys.exit(wrap(sys.argv[1:]))

"""A throw-away single-node SLURM cluster on this machine, for tests/test_slurm.py.

Debian's packages (`apt-get install slurmctld slurmd slurm-client munge`; .ci/run installs them)
give the real daemons; this module writes their configuration, starts munged, slurmctld and slurmd
bound to 127.0.0.1, waits until the node is idle, and stops them again by their recorded PIDs.

Why it looks the way it does:
- The configuration lives where SLURM looks by default, /etc/slurm/slurm.conf: the executor
  plugin's job step strips every SLURM_* variable (SLURM_CONF included) before its nested `srun`.
  A slurm.conf that this module did not write (a real cluster's) is never touched.
- No slurmdbd: job states come from slurmctld through `squeue`, which keeps a finished job for
  MinJobAge seconds; 600 s is far above the plugin's status-check interval.
- A container has no cgroups to give: proctrack/linuxproc, task/none, no accounting gatherer.
- "GPUs" are GRES backed by character devices (copies of /dev/null, or /dev/null itself), so
  `--gpus=1` requests schedule and the job sees CUDA_VISIBLE_DEVICES, without any hardware.

`start()` is idempotent: it stops daemons a previous start left behind (by their PID files, and
only processes whose name matches), clears the controller's state and starts afresh.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CONF_DIR = Path("/etc/slurm")
STATE = Path("/var/tmp/ouroboros-slurm")  # spool, state, logs and PID files of the test cluster
MARKER = "# written by ouroboros tests/slurm_cluster.py"
CLUSTER = "ouroboros"
PARTITION = "ouroboros"
NODE = "ouroboros-node"
# The three SLURM flows of tests/test_slurm.py run at once (the loop, the requeue and the failing
# job), up to five tiny jobs: the node claims this many CPUs and GPUs whatever the machine has
# (SlurmdParameters=config_overrides), so that no flow queues behind another's jobs.
SLOTS = 6
GPUS = 4
PACKAGES = "slurmctld slurmd slurm-client munge"
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
MUNGE_PID = Path("/run/munge/ouroboros-munged.pid")


class ClusterError(RuntimeError):
    """SLURM could not be started here; the message says why and what to look at."""


@dataclass(frozen=True)
class Cluster:
    partition: str
    node: str
    gpus: int
    cpus: int
    memory_mb: int
    state: Path  # logs of the daemons: state/log/*.log

    def daemon_logs(self) -> str:
        """The tails of the daemons' logs, for a failure message."""
        parts = []
        for log in sorted((self.state / "log").glob("*.log")):
            parts.append(f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(parts)


def missing() -> str | None:
    """Why this machine cannot run the test cluster, or None when it can."""
    if os.geteuid() != 0:
        return "the test SLURM cluster needs root (it writes /etc/slurm and starts the daemons)"
    tools = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
    absent = [t for t in tools if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install -y {PACKAGES})"
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and MARKER not in conf.read_text(errors="replace"):
        return f"{conf} belongs to a real SLURM installation; the test cluster will not overwrite it"
    return None


def _run(*cmd: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _signal_pidfile(pidfile: Path, name: str) -> int | None:
    """SIGTERM the process recorded in pidfile if it is still `name`; its PID, or None."""
    try:
        pid = int(pidfile.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        comm = None
    pidfile.unlink(missing_ok=True)
    if comm != name[:15]:  # gone, or a recycled PID that is not ours
        return None
    os.kill(pid, 15)
    return pid


def _alive(pid: int) -> bool:
    try:  # a zombie (state Z, waiting for its parent to reap it) has exited
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in filter(_alive, pids):
        os.kill(pid, 9)


def _hardware() -> tuple[int, int]:
    """(CPUs, memory in MB) for the node: the machine's memory as slurmd reports it, and at least SLOTS CPUs."""
    line = _run(_tool("slurmd"), "-C").stdout
    cpus = max(SLOTS, int(re.search(r"\bCPUs=(\d+)", line).group(1)))
    memory = int(re.search(r"\bRealMemory=(\d+)", line).group(1))
    return cpus, memory


def _gpu_devices(count: int) -> list[str]:
    """Character devices for the fake GPUs: mknod'ed twins of /dev/null, or /dev/null itself."""
    devices = []
    for i in range(count):
        dev = STATE / f"nvidia{i}"
        if not dev.exists():
            try:
                os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
            except OSError:  # no CAP_MKNOD (some containers): one GPU on /dev/null
                return ["/dev/null"]
        devices.append(str(dev))
    return devices


def _write_config(cpus: int, memory: int, devices: list[str]) -> None:
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    log, spool = STATE / "log", STATE / "spool"
    (CONF_DIR / "slurm.conf").write_text(f"""{MARKER}
ClusterName={CLUSTER}
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again once its credential has expired (default 120 s): one local node
# needs seconds, and the requeue test then waits seconds instead of two minutes
AuthInfo=cred_expire=10
StateSaveLocation={spool}/ctld
SlurmdSpoolDir={spool}/d
SlurmctldPidFile={STATE}/slurmctld.pid
SlurmdPidFile={STATE}/slurmd.pid
SlurmctldLogFile={log}/slurmctld.log
SlurmdLogFile={log}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# squeue is the job-state source (no slurmdbd): keep finished jobs visible for 10 minutes
MinJobAge=600
ReturnToService=2
# the node's CPUs are the configured SLOTS, not the machine's: never drained for having fewer
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=2
# listen on 127.0.0.1 (NodeAddr, SlurmctldHost), not on every interface
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={cpus} RealMemory={memory} Gres=gpu:{len(devices)} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")
    (CONF_DIR / "gres.conf").write_text(f"""{MARKER}
AutoDetect=off
NodeName={NODE} Name=gpu File={",".join(devices)}
""")
    (CONF_DIR / "cgroup.conf").write_text(f"""{MARKER}
# The test cluster uses no cgroup plugin (proctrack/linuxproc, task/none): nothing to constrain.
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
""")


def _munge_running() -> bool:
    if not MUNGE_SOCKET.exists():
        return False
    encoded = subprocess.run([_tool("munge"), "-n"], capture_output=True, timeout=10)
    if encoded.returncode != 0:
        return False
    return subprocess.run([_tool("unmunge")], input=encoded.stdout, capture_output=True, timeout=10).returncode == 0


def _start_munge() -> None:
    if _munge_running():  # a system munged (or ours from an earlier start): use it
        return
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        _run("mungekey", "--create", "--keyfile", str(key))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o600)
    MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
    _run("runuser", "-u", "munge", "--", _tool("munged"), f"--pid-file={MUNGE_PID}", "--force")
    _wait(_munge_running, 10, "munged did not answer")


def _node_state() -> str:
    proc = _run(_tool("sinfo"), "-h", "-N", "-n", NODE, "-o", "%T", check=False, timeout=10)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _wait(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ClusterError(message)
        time.sleep(0.2)


def _active_jobs() -> list[str]:
    proc = _run(_tool("squeue"), "-h", "-p", PARTITION, "--states=PD,CF,R,CG", "-o", "%i", check=False, timeout=10)
    return proc.stdout.split() if proc.returncode == 0 else []


def stop() -> None:
    """Cancel the test cluster's jobs (a test that timed out leaves some), then stop slurmd,
    slurmctld and the munged this module started, by their PID files."""
    if (STATE / "slurmctld.pid").exists() and _active_jobs():
        _run(_tool("scancel"), "-p", PARTITION, check=False)
        try:
            _wait(lambda: not _active_jobs(), 15, "jobs still running")
        except ClusterError:
            pass  # stop the daemons anyway
    daemons = ((STATE / "slurmd.pid", "slurmd"), (STATE / "slurmctld.pid", "slurmctld"), (MUNGE_PID, "munged"))
    _wait_gone([pid for pidfile, name in daemons if (pid := _signal_pidfile(pidfile, name))])


def start(timeout: float = 60) -> Cluster:
    """Start (or restart) the cluster and return once its node is idle."""
    reason = missing()
    if reason:
        raise ClusterError(reason)
    stop()  # daemons of an earlier start: a fresh controller state every time
    shutil.rmtree(STATE / "spool", ignore_errors=True)
    for d in (STATE / "log", STATE / "spool/ctld", STATE / "spool/d"):
        d.mkdir(parents=True, exist_ok=True)
    for log in (STATE / "log").glob("*.log"):
        log.unlink()
    cpus, memory = _hardware()
    devices = _gpu_devices(GPUS)
    _write_config(cpus, memory, devices)
    cluster = Cluster(PARTITION, NODE, len(devices), cpus, memory, STATE)
    try:
        _start_munge()
        _run(_tool("slurmctld"), "-c", "-i")  # -c: no state from an earlier cluster
        _run(_tool("slurmd"), "-N", NODE)
        _wait(lambda: _node_state() == "idle", timeout, f"node {NODE} not idle (state {_node_state()!r})")
    except (ClusterError, subprocess.TimeoutExpired) as err:
        logs = cluster.daemon_logs()
        stop()
        raise ClusterError(f"{err}\n{logs}") from err
    return cluster

"""The warm start's launcher (ouroboros.warm._write_launcher): the executable that a served snakemake
starts its Python script jobs with. Where no server takes the job, and for anything that is not
Snakemake's script file, it must be this Python itself: the same sys.executable, argv and sys.path.
tests/test_warm.py runs it under snakemake (the same bytes as cold jobs, a killed job's workers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ouroboros import warm

SHOW = "import json, sys; print(json.dumps([sys.executable, sys.argv, sys.path[0]]))"


@pytest.fixture
def launcher():
    path = warm._write_launcher()
    assert path and os.access(path, os.X_OK)
    yield path
    warm._remove_launcher(path)
    assert not Path(path).parent.exists()


def _run(cmd: list[str], cwd: Path, **env: str) -> list:
    base = {k: v for k, v in os.environ.items() if k not in (warm.ENV, warm.WORKER)}
    out = subprocess.run(cmd, cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("relative, expected", [
    (".snakemake/scripts/tmpk2j4.train.py", True),
    (".snakemake/scripts/tmpk2j4.missing.py", False),  # no such file
    (".snakemake/other/tmpk2j4.train.py", False),
    ("scripts/tmpk2j4.train.py", False),
    (".snakemake/scripts/train.py", False),  # not a temporary file of Snakemake's
    ("-c", False),
])
def test_only_snakemakes_script_files_are_handed_over(tmp_path, monkeypatch, relative, expected):
    for name in (".snakemake/scripts/tmpk2j4.train.py", ".snakemake/other/tmpk2j4.train.py", "scripts/tmpk2j4.train.py",
                 ".snakemake/scripts/train.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    monkeypatch.chdir(tmp_path)
    assert warm._is_snakemake_script(relative) is expected
    assert warm._is_snakemake_script(str(tmp_path / relative)) is expected


def test_without_a_server_the_launcher_is_this_python(launcher, tmp_path):
    script = tmp_path / ".snakemake/scripts/tmpk2j4.show.py"
    script.parent.mkdir(parents=True)
    script.write_text(SHOW)
    rel = ".snakemake/scripts/tmpk2j4.show.py"
    cold = _run([sys.executable, rel], tmp_path)
    assert cold[2] == str(script.parent)
    assert _run([launcher, rel], tmp_path) == cold  # no server named: this Python runs it
    assert _run([launcher, rel], tmp_path, **{warm.ENV: "no-such-server"}) == cold  # named, but none answers
    # anything else than a script file of Snakemake's: this Python, with the launcher's arguments
    assert _run([launcher, "-c", SHOW], tmp_path, **{warm.ENV: "no-such-server"}) == _run([sys.executable, "-c", SHOW],
                                                                                          tmp_path)


def test_a_wrapped_snakemake_runs_its_script_jobs_with_the_launcher_which_ends_with_the_wrapper(tmp_path):
    """`python -m ouroboros.warm SCRIPT` runs a Python script of this Python (the environment's
    snakemake) with its snakemake.script seeing the launcher as sys.executable, and nothing else
    changed; the launcher is gone once the wrapper is."""
    script = tmp_path / "snakemake"
    script.write_text(f"#!{sys.executable}\nimport sys\nimport snakemake.script\n"
                      "print(snakemake.script.sys.executable, sys.executable, sys.argv[1], 'ouroboros' in sys.modules)\n")
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in (warm.ENV, warm.WORKER)}
    out = subprocess.run([sys.executable, "-m", "ouroboros.warm", str(script), "an-argument"], env=env, text=True,
                         capture_output=True, timeout=120, check=True).stdout.split()
    launcher, python, argument, imported = out
    assert (python, argument, imported) == (sys.executable, "an-argument", "False")
    if warm._cuda_machine():  # no server, no launcher: forking after CUDA starts is unsafe
        assert launcher == sys.executable
    else:
        assert Path(launcher).name == "python" and Path(launcher).parent.name.startswith("ouroboros-warm-")
        assert not Path(launcher).parent.exists()


def test_the_launchers_of_killed_servers_are_removed_by_the_next_one(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no process has now
    stale, alive, other = (tmp_path / f"ouroboros-warm-{pid}-x1" for pid in (gone.pid, os.getpid(), "not-a-pid"))
    for folder in (stale, alive, other):
        folder.mkdir()
        (folder / "python").write_text("")
    warm._remove_stale_launchers(str(tmp_path))
    assert not stale.exists() and alive.exists() and other.exists()

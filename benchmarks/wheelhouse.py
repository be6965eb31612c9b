"""A wheelhouse of what an air-gapped GPU node lacks for benchmarks/gpu_check.sh (`make wheelhouse`).

The node has its own Python (3.12 by default) with torch, torchvision and transformers, and the
scientific stack a torch installation carries (numpy, scipy, Pillow) — a site module or a container —
and no network. This takes the packages the check needs beyond those (diffusers, snakemake and its
dependencies, torch-fidelity, faiss-cpu) with the versions this project's environment holds, leaves
out every distribution the node's packages already bring (their dependency closure), and downloads
binary wheels for the node's Python and platform with ``--no-deps`` (the set is complete by
construction: no resolver runs, so torch is never downloaded). Pure-Python packages published
only as source (connection_pool) are built into wheels here. The check installs them offline with
``pip install --no-index --no-deps --target DIR wheelhouse/*.whl`` (benchmarks/gpu_check.sh).

For CPython 3.12 (2026-12-07): 48.1 MiB in 49 wheels, the largest faiss-cpu (18.0), PuLP (15.6:
snakemake's ILP scheduler, with its CBC binaries) and diffusers (6.1). A node without scipy, Pillow
or torchvision needs them too (``--node-has torch,transformers``: +47.6 MiB); leaving out faiss-cpu
and PuLP, which the check's phases do not use (the loop builds fid.json, not metrics.json, with
snakemake's greedy scheduler), that is 62 MiB: ``--leave-out faiss-cpu,pulp --max-mib 64``.

    python benchmarks/wheelhouse.py --out wheelhouse [--python 3.12] [--torch 2.11] [--max-mib 60]
"""

from __future__ import annotations

import sys
from pathlib import Path

# first, before any stdlib module imports `select` (subprocess does): benchmarks/select.py would shadow it
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
from importlib import metadata  # noqa: E402

from packaging.markers import default_environment  # noqa: E402
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

# what gpu_check.sh imports beyond torch and transformers (the loop phase runs the workflow)
NEEDS = ("diffusers", "snakemake", "torch-fidelity", "torchvision", "scipy", "pillow", "faiss-cpu")
NODE_HAS = ("torch", "torchvision", "transformers", "numpy", "scipy", "pillow")
# torchvision pairs with one torch minor release (pytorch/vision's compatibility table)
TORCHVISION = {"2.4": "0.19.1", "2.5": "0.20.1", "2.6": "0.21.0", "2.7": "0.22.1", "2.8": "0.23.0", "2.9": "0.24.1",
               "2.10": "0.25.0", "2.11": "0.26.0", "2.12": "0.27.0", "2.13": "0.28.0", "2.14": "0.29.1"}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64")


def closure(roots: tuple[str, ...], python: str) -> dict[str, str]:
    """{canonical name: installed version} of the roots and everything they require on ``python``/Linux,
    from the installed distributions' metadata."""
    env = default_environment() | {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
                                   "platform_system": "Linux", "platform_machine": "x86_64", "extra": ""}
    out: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in out:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed in this environment ({sys.executable}): run `make` first") from None
        out[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    return out


def download(name: str, version: str, out: Path, python: str) -> None:
    pip = [sys.executable, "-m", "pip"]
    binary = [*pip, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", python,
              "--implementation", "cp", "--abi", f"cp{python.replace('.', '')}", "--abi", "abi3", "--abi", "none",
              *[a for p in PLATFORMS for a in ("--platform", p)], "--platform", "any", "-d", str(out), f"{name}=={version}"]
    if subprocess.run(binary, capture_output=True, text=True).returncode == 0:
        return
    # published as source only: a pure-Python package builds into a py3-none-any wheel here
    built = subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(out), f"{name}=={version}"], capture_output=True,
                           text=True)
    wheels = [w for w in out.glob(f"{re.sub(r'[-.]', '_', name)}-{version}-*.whl")]
    if built.returncode != 0 or not wheels or not all(w.name.endswith("-none-any.whl") for w in wheels):
        raise SystemExit(f"{name}=={version}: no wheel for CPython {python} on Linux x86_64, and it does not build into a "
                         f"pure-Python one:\n{built.stderr[-1500:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="wheelhouse")
    ap.add_argument("--python", default="3.12", help="the node's Python version")
    ap.add_argument("--torch", default="2.11", help="the node's torch version (major.minor): picks torchvision")
    ap.add_argument("--max-mib", type=float, default=60)
    ap.add_argument("--node-has", default=",".join(NODE_HAS), help="distributions the node's Python holds")
    ap.add_argument("--leave-out", default="", help="distributions to leave out although the node lacks them")
    args = ap.parse_args(argv)
    node = closure(tuple(p for p in args.node_has.split(",") if p), args.python)
    leave = {canonicalize_name(p) for p in args.leave_out.split(",") if p}
    wanted = {n: v for n, v in closure(NEEDS, args.python).items() if n not in node and n not in leave}
    if "torchvision" in wanted:  # the release paired with the node's torch, not this environment's
        wanted["torchvision"] = TORCHVISION[".".join(args.torch.split(".")[:2])]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    for name, version in sorted(wanted.items()):
        download(name, version, out, args.python)
    wheels = sorted(out.glob("*.whl"), key=lambda w: w.stat().st_size, reverse=True)
    total = sum(w.stat().st_size for w in wheels) / 2**20
    (out / "requirements.txt").write_text(f"# for CPython {args.python}, torch {args.torch}; the node has: {args.node_has}\n"
                                          + "".join(f"{n}=={v}\n" for n, v in sorted(wanted.items())))
    for w in wheels:
        print(f"{w.stat().st_size / 2**20:7.1f} MiB  {w.name}")
    print(f"{total:7.1f} MiB in {len(wheels)} wheels for CPython {args.python} + torch {args.torch} (left out, the node's: "
          f"{', '.join(sorted(node))})")
    if total > args.max_mib:
        print(f"over the {args.max_mib:g} MiB limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

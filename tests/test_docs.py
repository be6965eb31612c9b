"""The README stays a user's page, its links reach their targets, the site's nav holds every page,
and the version, license and citation each live in one place. (`make docs` builds the site in
strict mode: the links and anchors between the pages are mkdocs' to check.)"""

import re
import tomllib
import unicodedata
from pathlib import Path

import pytest
import yaml

import ouroboros

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc gives a heading (its default slugify), as mkdocs and GitHub
    both give for the plain headings these pages use."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # no headings inside code blocks
    return {slug(m[1].replace("`", "")) for m in re.finditer(r"(?m)^#{1,6} (.+)$", text)}


def test_the_readme_is_a_users_page():
    assert len(README.splitlines()) <= 300
    assert len(README.split()) <= 2500
    assert "arXiv:2509.16499" in README and "A Closer Look at Model Collapse" in README
    assert "make .venv/bin/snakemake" in README  # the install step
    # no lab notebook: no commit hashes, no timings (they live in docs/performance.md)
    assert not re.findall(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b", README)
    assert not re.findall(r"\b\d+(?:\.\d+)? ?(?:ms|s|min|h)\b", README)
    # every command names the venv's executables: a bare `snakemake` only exists inside an activated venv
    commands = re.findall(r"(?m)^    (\S+)", README)
    assert all(not c.startswith(("snakemake", "python", "pip")) for c in commands), commands


@pytest.mark.parametrize("source", ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))])
def test_relative_links_reach_a_file_and_its_heading(source):
    text = re.sub(r"```.*?```", "", (REPO / source).read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        path = (REPO / source).parent / file if file else REPO / source
        assert path.exists(), f"{source}: link to {target}: no such file"
        if anchor:
            assert anchor in anchors(path), f"{source}: link to {target}: no such heading in {file or source}"


def nav_files(nav) -> set[str]:
    out = set()
    for entry in nav:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            out |= nav_files(value) if isinstance(value, list) else {value}
    return out


def test_every_page_of_docs_is_in_the_sites_nav():
    site = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert site["strict"] is True
    assert nav_files(site["nav"]) == {p.name for p in (REPO / "docs").glob("*.md")}


def test_the_version_lives_in_ouroboros_alone():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ouroboros.__version__"}
    newest = re.search(r"(?m)^## \[(\d+\.\d+\.\d+)\]", (REPO / "CHANGELOG.md").read_text())
    assert newest and newest[1] == ouroboros.__version__
    assert "version" not in yaml.safe_load((REPO / "CITATION.cff").read_text())


def test_license_and_citation():
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["type"] == "software" and cff["license"] == "MIT"
    (paper,) = cff["references"]
    assert paper["title"] == "A Closer Look at Model Collapse: From a Generalization-to-Memorization Perspective"
    assert [a["family-names"] for a in paper["authors"]] == ["Shi", "Wu", "Zhang", "Zhang", "Tao", "Qu"]
    assert {"type": "other", "value": "arXiv:2509.16499", "description": "the arXiv preprint"} in paper["identifiers"]

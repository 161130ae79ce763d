"""The map and the facts are in the repository: the package cites docs/ pages, never the project's research notes
outside the repo (a clone does not have them), and every docs/ page and section that code, tests, configs and the
README cite exists, as does every relative link between the docs pages."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = {".py", ".cpp", ".h", ".cu", ".csv", ".md", ".j2", ".html", ".txt", ".toml", ".yml", ".yaml"}
# research/..., or a bare dossier name such as "liif.md §5", not inside a docs/ path or a URL
OUTSIDE_NOTE = re.compile(r"(?<![\w/.-])(research/|DESIGN\.md|(?:gsasr|liif|metasr|igconv|rt4ksr)\.md\b)")
DOCS_CITATION = re.compile(r"(?<![\w/.-])(docs/[\w./-]+?\.md)((?:\s*§\s*[\d.]+\d)?)")
MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def text_files(*roots: str) -> list[Path]:
    files = []
    for root in roots:
        path = REPO / root
        files += [path] if path.is_file() else [p for p in sorted(path.rglob("*"))
                                                 if p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts]
    return files


def section_exists(text: str, number: str) -> bool:
    """§N.M is a heading numbered N.M, or item M of the numbered list under heading N (e.g. a checklist entry)."""
    headings = re.findall(r"^#+\s+([\d.]+?)\.?\s", text, flags=re.M)
    if number in headings:
        return True
    parent, _, item = number.rpartition(".")
    if not parent or parent not in headings:
        return False
    body = re.split(rf"^#+\s+{re.escape(parent)}\.?\s.*$", text, maxsplit=1, flags=re.M)[1]
    body = re.split(r"^#{1,2}\s", body, maxsplit=1, flags=re.M)[0]
    return re.search(rf"^{re.escape(item)}\.\s", body, flags=re.M) is not None


def test_the_package_cites_no_note_outside_the_repository():
    offenders = [f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}"
                 for path in text_files("asr_bench")
                 for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
                 if OUTSIDE_NOTE.search(line)]
    assert not offenders, "cite docs/ pages instead:\n" + "\n".join(offenders)


def test_the_checker_sees_what_it_must_refuse_and_lets_urls_through():
    assert OUTSIDE_NOTE.search("facts in research/liif.md") and OUTSIDE_NOTE.search("(rt4ksr.md §3)")
    assert OUTSIDE_NOTE.search('(DESIGN.md "Measured figures")')
    assert not OUTSIDE_NOTE.search("https://cv.snu.ac.kr/research/EDSR/benchmark.tar")
    assert not OUTSIDE_NOTE.search("docs/methods/liif.md §5") and not OUTSIDE_NOTE.search("docs/architecture.md")
    assert DOCS_CITATION.findall("(docs/methods/gsasr.md §4.1-§4.2).") == [("docs/methods/gsasr.md", " §4.1")]
    assert section_exists("## 9. List\n1. a\n4. b\n## 10. Next\n", "9.4")
    assert not section_exists("## 9. List\n1. a\n## 10. Next\n4. b\n", "9.4")


def cited_docs() -> list[tuple[str, str, str]]:
    """(where, page, section or '') of every docs/ citation in the code, tests, configs and README."""
    found = []
    for path in text_files("asr_bench", "tests", "configs", "README.md", "run_bench.py"):
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for page, section in DOCS_CITATION.findall(line):
                found.append((f"{path.relative_to(REPO)}:{n}", page, section.replace("§", "").strip()))
    return found


def test_every_cited_docs_page_and_section_exists():
    citations = cited_docs()
    assert len(citations) > 40   # the methods, ops and tests cite their pages
    missing = [f"{where}: {page} {section}".strip() for where, page, section in citations
               if not (REPO / page).is_file()
               or (section and not section_exists((REPO / page).read_text(), section))]
    assert not missing, "cited but absent:\n" + "\n".join(missing)


@pytest.mark.parametrize("page", sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md")))
def test_relative_links_between_docs_pages_resolve(page):
    path = REPO / page
    prose = re.sub(r"`[^`]*`", "", path.read_text())   # code spans are not links
    broken = [target for target in MD_LINK.findall(prose)
              if "://" not in target and not (path.parent / target).exists()]
    assert not broken, f"{page} links to missing {broken}"


def test_every_method_has_its_facts_page():
    methods = sorted(p.name for p in (REPO / "asr_bench" / "methods").iterdir()
                     if p.is_dir() and not p.name.startswith("_"))
    assert methods and [m for m in methods if not (REPO / "docs" / "methods" / f"{m}.md").is_file()] == []

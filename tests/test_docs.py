"""The documentation's links stay inside the repository and resolve.

Checked: every Markdown link in ``README.md``, ``docs/*.md``, ``collector/*/README.md`` and
``store/*/SCHEMA.md`` is relative, points to a file or folder of the repository, and its
``#anchor`` (if any) is a heading of the target; a repository path named in code (`` `tests/...` ``)
still exists after files move; the README stays short enough to read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250

#: what issue 10 asks to exist; the index links each of them
DOCS = ["README.md", "configuration.md", "kpis.md", "api.md", "store.md", "influxdb.md",
        "spool.md", "docker.md", "benchmarks.md", "architecture.md", "interop.md"]
PROTOCOLS = ["modbus", "opcua", "mqtt"]

_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
#: [text](target "title") and ![alt](target); text may hold one level of brackets
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
#: [label]: target
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
#: a code span naming a path of the repository, e.g. `tests/interop/test_*.py --flag`
_REPO_PATH = re.compile(
    r"`((?:api|bench|collector|config|deploy|docs|kpi|scripts|simulators|store|tests)/[^`\s{}<>]*)[^`]*`"
)


def documents() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted(ROOT.glob("collector/*/README.md")), *sorted(ROOT.glob("store/*/SCHEMA.md"))]
    return [p for p in found if p.is_file()]


def prose_lines(text: str, spans: bool = False) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with code spans blanked out (or kept)."""
    out, fence = [], None
    for n, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
            continue
        if fence is None:
            out.append((n, line if spans else _CODE_SPAN.sub(lambda s: " " * len(s.group(0)), line)))
    return out


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for n, line in prose_lines(path.read_text(encoding="utf-8")):
        found += [(n, m.group(1)) for m in _INLINE.finditer(line)]
        m = _REFERENCE.match(line)
        if m:
            found.append((n, m.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2).replace("`", ""))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def problems(path: Path) -> list[str]:
    rel = path.relative_to(ROOT)
    out = []
    for n, target in links(path):
        where = f"{rel}:{n}: {target}"
        if _SCHEME.match(target) or target.startswith(("/", "//")):
            out.append(f"{where}: points outside the repository (use a relative link to its own docs)")
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.is_relative_to(ROOT):
            out.append(f"{where}: leaves the repository")
        elif not dest.exists():
            out.append(f"{where}: {dest.relative_to(ROOT)} does not exist")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            out.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return out


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(path: Path) -> None:
    assert problems(path) == []


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_paths_named_in_code_exist(path: Path) -> None:
    """A file moved without its documentation following shows here (globs must match)."""
    gone = [f"{path.relative_to(ROOT)}:{n}: {m.group(1)}"
            for n, line in prose_lines(path.read_text(encoding="utf-8"), spans=True)
            for m in _REPO_PATH.finditer(line) if not any(ROOT.glob(m.group(1).rstrip("/")))]
    assert gone == []


def test_readme_is_short() -> None:
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_the_guide_exists_and_is_linked() -> None:
    missing = [f"docs/{d}" for d in DOCS if not (ROOT / "docs" / d).is_file()]
    missing += [f"collector/{p}/README.md" for p in PROTOCOLS
                if not (ROOT / "collector" / p / "README.md").is_file()]
    assert missing == []
    linked = {(ROOT / "docs" / t.partition("#")[0]).resolve()
              for _, t in links(ROOT / "docs" / "README.md")}
    unlinked = [d for d in DOCS[1:] if (ROOT / "docs" / d).resolve() not in linked]
    assert unlinked == [], "docs/README.md does not link these"
    from_readme = {(ROOT / t.partition("#")[0]).resolve() for _, t in links(ROOT / "README.md")}
    want = [ROOT / "docs" / "README.md", *(ROOT / "collector" / p / "README.md" for p in PROTOCOLS)]
    assert [str(w.relative_to(ROOT)) for w in want if w.resolve() not in from_readme] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see [the spool](docs/spool.md#when-full) and `[no](link.md)`", ["docs/spool.md#when-full"]),
        ("![diagram](img/a.png) [a [nested] text](b.md \"title\")", ["img/a.png", "b.md"]),
        ("[label]: ../x.md", ["../x.md"]),
    ],
)
def test_link_extraction(tmp_path: Path, text: str, expected: list[str]) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"{text}\n```\n[in code](skipped.md)\n```\n", encoding="utf-8")
    assert [t for _, t in links(doc)] == expected


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [("Store-and-forward spool", "store-and-forward-spool"),
     ("`store.type: influx` (InfluxDB 2.x)", "storetype-influx-influxdb-2x"),
     ("Errors and how they show", "errors-and-how-they-show")],
)
def test_slug(heading: str, anchor: str) -> None:
    assert slug(heading.replace("`", "")) == anchor

"""Rebuild ``data/real.jsonl``: human-written legal prose that ships with Python and its packages.

No English contract corpus ships in any offline package (shared/DATA.md), so the real side is
the closest legal prose that does: the license agreements in CPython's ``LICENSE.txt`` (the PSF,
BeOpen, CNRI and CWI agreements: parties, terms, breach, governing law) and the license files
in installed packages' ``*.dist-info`` folders (Apache-2.0, BSD, MIT, GPL, ...). Each record is
one paragraph, kept verbatim apart from joined line breaks, with its provenance.

Run from the repository root: ``.venv/bin/python examples/contract-clauses/build_real.py``.
"""

from __future__ import annotations

import json
import re
import sys
import sysconfig
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "real.jsonl"
MIN_CHARS = 150  # shorter paragraphs are headings, copyright lines and addresses
MAX_CHARS = 1500  # longer blocks are whole licences without blank lines
MAX_RECORDS = 400
_LICENSE_FILE = re.compile(r"^(licen[cs]e|copying|notice)", re.IGNORECASE)


def paragraphs(text: str) -> Iterator[str]:
    """Blank-line separated blocks, whitespace joined, that read as prose (mostly letters)."""
    for block in re.split(r"\n\s*\n", text):
        paragraph = " ".join(block.split())
        letters = sum(c.isalpha() or c.isspace() for c in paragraph)
        if MIN_CHARS <= len(paragraph) <= MAX_CHARS and letters >= 0.9 * len(paragraph):
            yield paragraph


def license_sources() -> Iterator[tuple[str, str]]:
    """(source, text) for CPython's LICENSE.txt and every dist-info license file."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    if stdlib.exists():
        version = ".".join(map(str, sys.version_info[:3]))
        yield f"python=={version}:LICENSE.txt", stdlib.read_text(encoding="utf-8")
    dists = sorted(metadata.distributions(), key=lambda d: d.metadata["Name"].lower())
    for dist in dists:
        for file in sorted(dist.files or [], key=str):
            if ".dist-info" in str(file) and _LICENSE_FILE.match(file.name):
                text = file.read_text(encoding="utf-8") or ""
                yield f"{dist.metadata['Name']}=={dist.version}:{file}", text


def build() -> list[dict[str, str]]:
    seen: set[str] = set()
    rows: list[dict[str, str]] = []
    for source, text in license_sources():
        for paragraph in paragraphs(text):
            if paragraph.lower() not in seen and len(rows) < MAX_RECORDS:
                seen.add(paragraph.lower())
                rows.append({"id": f"lic-{len(rows):04d}", "source": source, "text": paragraph})
    return rows


if __name__ == "__main__":
    records = build()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    print(f"{len(records)} paragraphs -> {OUT}")

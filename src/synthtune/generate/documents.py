"""Load local documents (.txt, .md, .pdf, .docx) and cut them into overlapping chunks.

PDF text comes from ``pypdf`` and Word from ``python-docx`` (the ``docs`` extra); chunks try
to end at a paragraph or sentence boundary, and keep their character span in the document so
answers can be checked against their source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from synthtune.errors import StageError
from synthtune.records import content_hash

SUFFIXES = (".txt", ".md", ".pdf", ".docx")
_BREAKS = re.compile(r"\n\s*\n|(?<=[.!?。！？])\s+|(?<=[。！？])")


@dataclass(frozen=True)
class Chunk:
    id: str
    document: str
    index: int
    start: int
    end: int
    text: str


def read_document(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".txt", ".md"):
        return path.read_text(encoding="utf-8")
    if suffix == ".pdf":
        try:
            from pypdf import PdfReader
        except ImportError:
            raise StageError("reading PDF needs pypdf: pip install 'synthtune[docs]'") from None
        return "\n\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
    if suffix == ".docx":
        try:
            import docx
        except ImportError:
            raise StageError(
                "reading .docx needs python-docx: pip install 'synthtune[docs]'"
            ) from None
        return "\n\n".join(p.text for p in docx.Document(str(path)).paragraphs)
    raise StageError(f"{path}: unsupported document type (use {', '.join(SUFFIXES)})")


def find_documents(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES))
        elif path.exists():
            found.append(path)
        else:
            raise StageError(f"generate.strategy.documents: not found: {path}")
    if not found:
        raise StageError("generate.strategy.documents: no .txt/.md/.pdf/.docx file found")
    return found


def chunk_text(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) spans of at most ``size`` chars, cut at a boundary past 60 % when possible."""
    spans = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            window = text[start + int(size * 0.6) : end]
            cuts = [m.end() for m in _BREAKS.finditer(window)]
            if cuts:
                end = start + int(size * 0.6) + cuts[-1]
        spans.append((start, end))
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return [(s, e) for s, e in spans if text[s:e].strip()]


def load_chunks(paths: list[Path], size: int, overlap: int) -> list[Chunk]:
    chunks = []
    for path in find_documents(paths):
        text = read_document(path)
        for index, (start, end) in enumerate(chunk_text(text, size, overlap)):
            body = text[start:end]
            chunk_id = f"{path.name}#{index}:{content_hash(body, 8)}"
            chunks.append(Chunk(chunk_id, str(path), index, start, end, body))
    return chunks

import itertools
from pathlib import Path

import pytest

from synthtune.errors import StageError
from synthtune.generate.documents import chunk_text, find_documents, load_chunks, read_document


def test_reads_txt_md_docx_and_pdf(tmp_path: Path) -> None:
    import docx
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (tmp_path / "a.txt").write_text("Rest and fluids.", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Fever\n\nCheck twice a day.", encoding="utf-8")
    document = docx.Document()
    document.add_paragraph("Ibuprofen is an anti-inflammatory drug.")
    document.save(tmp_path / "c.docx")
    matplotlib.rcParams["pdf.fonttype"] = 42  # real text in the PDF, not glyph outlines
    fig = plt.figure()
    fig.text(0.1, 0.5, "Paracetamol lowers fever in adults.")
    fig.savefig(tmp_path / "d.pdf")
    plt.close(fig)
    (tmp_path / "skip.csv").write_text("x", encoding="utf-8")
    paths = find_documents([tmp_path])
    assert [p.name for p in paths] == ["a.txt", "b.md", "c.docx", "d.pdf"]
    texts = [read_document(p) for p in paths]
    assert texts[2] == "Ibuprofen is an anti-inflammatory drug."
    assert "Paracetamol lowers fever" in texts[3]


def test_chunks_cover_the_text_with_overlap_and_sentence_cuts() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(60))
    spans = chunk_text(text, size=200, overlap=30)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (s1, e1), (s2, _e2) in itertools.pairwise(spans):
        assert e1 - s1 <= 200 and s2 < e1  # bounded, overlapping
        assert text[s1:e1].rstrip().endswith(".")  # cut at a sentence end


def test_chunk_ids_are_stable_and_missing_paths_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("word " * 500, encoding="utf-8")
    first = load_chunks([tmp_path], 300, 50)
    assert [c.id for c in first] == [c.id for c in load_chunks([tmp_path], 300, 50)]
    with pytest.raises(StageError, match="not found"):
        find_documents([tmp_path / "missing.pdf"])

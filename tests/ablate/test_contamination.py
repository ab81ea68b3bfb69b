"""The contamination guard counts test rows a synthetic training record could have copied."""

from __future__ import annotations

from synthtune.ablate.contamination import ngram_size, overlap
from synthtune.records import Message, Payload, Record, Source


def _row(text: str, source: Source = "real", label: str | None = "x") -> Record:
    return Record.create(
        source, Payload(messages=[Message(role="user", content=text)], label=label)
    )


TEST = [
    _row("The central bank raised its key interest rate by half a point on Tuesday morning"),
    _row("Shares of the small retailer fell sharply after a weak holiday season report"),
    _row("Rates up"),
]


def test_a_synthetic_copy_of_a_test_row_is_counted() -> None:
    clean = [_row("A bakery opened a second shop in the old town last spring", "synthetic")]
    assert overlap(clean, TEST)["ngram_rows"] == 0
    copied = [*clean, _row(TEST[0].payload.messages[0].content, "synthetic")]
    found = overlap(copied, TEST)
    assert found["ngram_rows"] == 1 and found["exact_duplicates"] == 1
    assert found["ngram_fraction"] == round(1 / 3, 4)


def test_eight_shared_tokens_count_and_short_rows_match_whole() -> None:
    # 8 consecutive tokens of test row 1 inside a longer synthetic text (not a duplicate)
    partial = _row(
        "Analysts said shares of the small retailer fell sharply after news", "synthetic"
    )
    found = overlap([partial], TEST)
    assert (found["ngram_rows"], found["exact_duplicates"]) == (1, 0)
    assert overlap([_row("markets: rates up again", "synthetic")], TEST)["ngram_rows"] == 1


def test_cjk_text_uses_thirteen_character_ngrams() -> None:
    assert ngram_size(list("央行周二宣布上调基准利率半个百分点")) == 13
    assert ngram_size(["the", "bank", "raised", "rates"]) == 8
    test = [_row("央行周二宣布上调基准利率半个百分点市场反应平淡")]
    twelve = _row("新闻：央行周二宣布上调基准利率", "synthetic")  # 12 shared characters
    thirteen = _row("新闻：央行周二宣布上调基准利率半", "synthetic")
    assert overlap([twelve], test)["ngram_rows"] == 0
    assert overlap([thirteen], test)["ngram_rows"] == 1

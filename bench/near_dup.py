"""Near-duplicate detection on 100k records with planted near-duplicates.

Goal (issue 5): <= 30 s on 2 cores with recall >= 0.95 and precision >= 0.95 (exhaustive
pairwise Jaccard would be ~5e9 comparisons: hours). A planted pair is a record and a copy
with a few words changed (true character-5-gram Jaccard around 0.85-0.95).

    python bench/near_dup.py [--records 100000] [--planted 5000]
"""

from __future__ import annotations

import argparse
import random
import time

from synthtune.quality.dedup import minhash_clusters


def corpus(n: int, planted: int, seed: int = 0) -> tuple[list[str], set[tuple[int, int]]]:
    rng = random.Random(seed)
    vocab = [f"{rng.choice('bcdfghklmnprstvz')}{rng.choice('aeiou')}{i}" for i in range(20000)]
    texts = [" ".join(rng.choices(vocab, k=rng.randint(30, 60))) for _ in range(n - planted)]
    truth = set()
    for k in range(planted):
        source = rng.randrange(len(texts))
        words = texts[source].split()
        for _ in range(max(1, len(words) // 30)):  # change about 3 % of the words
            words[rng.randrange(len(words))] = rng.choice(vocab)
        texts.append(" ".join(words))
        truth.add((source, n - planted + k))
    return texts, truth


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--planted", type=int, default=5_000)
    parser.add_argument("--threshold", type=float, default=0.8)
    args = parser.parse_args()
    texts, truth = corpus(args.records, args.planted)
    started = time.perf_counter()
    clusters = minhash_clusters(texts, threshold=args.threshold)
    elapsed = time.perf_counter() - started
    found = {(min(a, b), max(a, b)) for c in clusters for a in c for b in c if a < b}
    hits = len(found & truth)
    # a found pair outside the planted ones is a false positive unless it is a transitive
    # neighbour inside a planted cluster (two copies of one source)
    planted_members = {i for pair in truth for i in pair}
    false = [p for p in found - truth if not (p[0] in planted_members and p[1] in planted_members)]
    recall = hits / len(truth)
    precision = (len(found) - len(false)) / len(found) if found else 1.0
    print(
        f"{args.records} records, {len(truth)} planted pairs: {elapsed:.1f} s, "
        f"recall {recall:.4f}, precision {precision:.4f} (goal: <= 30 s, >= 0.95, >= 0.95)"
    )


if __name__ == "__main__":
    main()

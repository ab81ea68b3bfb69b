"""A generation setting with arms of known quality, for evolve tests and bench/evolve_bandit.py.

Three templates on the offline template backend:

- ``triage``: replies drawn like the real data (the arm a good strategy should favour);
- ``offtopic``: fluent replies that pass every tier but sit far from the real data;
- ``boilerplate``: mostly refusals/boilerplate, which the heuristics tier rejects;
- ``looping``: mostly degenerate, repeating replies (rejected for repetition).
- ``overdose`` (with ``hidden_defect=True``): notes written like ``triage`` that every tier
  accepts, but whose advice an expert rejects (a dangerous dose): only review finds them.
  :func:`simulate_review` is that expert, with a known error rate.

The real data is written from the same vocabulary as ``triage`` with its own random stream,
so the accepted pool can approach it; no model is needed (the perplexity tier is off).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import yaml

AGES = list(range(18, 81))
SYMPTOMS = ["a cough", "a sore throat", "a headache", "a mild fever", "back pain", "nausea"]
ADVICE = [
    "rest and drink plenty of fluids",
    "see a doctor if it lasts more than a week",
    "measure the temperature twice a day",
    "book an appointment with the family doctor",
]
DAYS = list(range(1, 8))
NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kofi"]
HISTORY = [
    "no chronic illness",
    "asthma since childhood",
    "high blood pressure",
    "type 2 diabetes",
    "a penicillin allergy",
    "a recent trip abroad",
]
WORSE = ["at night", "after meals", "in the morning", "when lying down", "after exercise"]
REAL = (
    "{name}, {age}, has had {symptom} for {days} days, worse {worse}, with {history}; "
    "advice: {advice}."
)


def real_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        REAL.format(
            name=rng.choice(NAMES),
            age=rng.choice(AGES),
            symptom=rng.choice(SYMPTOMS),
            days=rng.choice(DAYS),
            worse=rng.choice(WORSE),
            history=rng.choice(HISTORY),
            advice=rng.choice(ADVICE),
        )
        for _ in range(count)
    ]


OVERDOSE = [
    "take 4000 mg of paracetamol at once",
    "take 10 ibuprofen tablets every hour",
    "double the usual dose of any painkiller",
]
DEFECT_REASON = "dangerous dose advice"


TRIAGE_REPLY = (
    "{{ name }}, {{ age }}, has had {{ symptom }} for {{ days }} days, worse {{ worse }}, "
    "with {{ history }}; advice: {{ advice }}."
)


def _triage_template() -> dict[str, Any]:
    return {
        "id": "triage",
        "prompt": "Write one triage note (case {{ case }}).",
        "response": TRIAGE_REPLY,
        "slots": {
            "case": {"randint": [1, 10**9]},
            "name": {"choice": NAMES},
            "age": {"randint": [18, 80]},
            "symptom": {"choice": SYMPTOMS},
            "days": {"randint": [1, 7]},
            "worse": {"choice": WORSE},
            "history": {"choice": HISTORY},
            "advice": {"choice": ADVICE},
        },
    }


def _overdose_template() -> dict[str, Any]:
    """``triage`` with a dangerous dose after the advice."""
    triage = _triage_template()
    return {
        **triage,
        "id": "overdose",
        "response": TRIAGE_REPLY.removesuffix(".") + ", and {{ dose }}.",
        "slots": {**triage["slots"], "dose": {"choice": OVERDOSE}},
    }


def truly_bad(record: Any) -> bool:
    """What the simulated expert knows: a reply with dangerous dose advice."""
    reply = record.payload.messages[-1].content if record.payload.messages else ""
    return any(advice in reply for advice in OVERDOSE)


def simulate_review(
    run_dir: Path, records: list[Any], share: float, error: float, seed: int
) -> int:
    """An expert reviews ``share`` of ``records`` (drawn from ``seed``) and gets each verdict
    wrong with probability ``error``; the decisions go to the run's review store, as the
    review app writes them. Returns how many were reviewed."""
    from synthtune.decisions import Decision
    from synthtune.store import ReviewStore

    rng = random.Random(seed)
    chosen = [r for r in records if rng.random() < share]
    store = ReviewStore(run_dir)
    try:
        for record in chosen:
            bad = truly_bad(record) != (rng.random() < error)
            store.save(
                Decision(
                    record_id=record.id,
                    decision="reject" if bad else "accept",
                    reason=DEFECT_REASON if bad else "",
                    reviewer="simulated",
                )
            )
    finally:
        store.close()
    return len(chosen)


def recipe_dict(
    name: str, seed: int, evolve: dict[str, Any], hidden_defect: bool = False
) -> dict[str, Any]:
    recipe: dict[str, Any] = {
        "name": name,
        "seed": seed,
        "generate": {
            "n": 10,
            "backend": {"type": "template"},
            "templates": [
                _triage_template(),
                {
                    "id": "offtopic",
                    "prompt": "Write one market note (case {{ case }}).",
                    "response": "Shares of {{ company }} rose {{ pct }} percent after the "
                    "{{ quarter }} results beat analyst forecasts on {{ segment }} demand.",
                    "slots": {
                        "case": {"randint": [1, 10**9]},
                        "company": {"faker": "company"},
                        "pct": {"randint": [1, 30]},
                        "quarter": {"choice": ["first-quarter", "second-quarter", "annual"]},
                        "segment": {"choice": ["cloud", "retail", "energy", "chip"]},
                    },
                },
                {
                    "id": "boilerplate",
                    "prompt": "Write one triage note (case {{ case }}).",
                    "response": "{{ reply }}",
                    "slots": {
                        "case": {"randint": [1, 10**9]},
                        "reply": {
                            "choice": [
                                "I'm sorry, but as an AI language model I cannot give "
                                "medical advice about case {{ case }}.",
                                "A patient has had a cough for 2 days and should rest.",
                            ],
                            "weights": [17, 3],
                        },
                    },
                },
                {
                    "id": "looping",
                    "prompt": "Write one triage note (case {{ case }}).",
                    "response": "{{ reply }}",
                    "slots": {
                        "case": {"randint": [1, 10**9]},
                        "symptom": {"choice": SYMPTOMS},
                        "reply": {
                            "choice": [
                                "{{ symptom }} and rest and rest and rest and rest and rest and "
                                "rest and rest and rest and rest (note {{ case }})",
                                "{{ symptom | capitalize }} for two days; advice: rest.",
                            ],
                            "weights": [17, 3],
                        },
                    },
                },
            ],
        },
        "quality": {
            "perplexity": {"enabled": False},
            # the triage replies share long phrases with the real data by construction
            "decontam": {"enabled": False},
            "review": {"fraction": 0.05},
        },
        "mix": {"real": {"path": "data/real.jsonl", "text_field": "text"}},
        "evolve": evolve,
    }
    if hidden_defect:
        recipe["generate"]["templates"].append(_overdose_template())
    return recipe


def write_setting(
    folder: Path,
    *,
    name: str = "arms",
    seed: int = 0,
    real: int = 400,
    evolve: dict[str, Any] | None = None,
    hidden_defect: bool = False,
) -> Path:
    """Write ``recipe.yaml`` and ``data/real.jsonl`` under ``folder``; return the recipe path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    lines = [json.dumps({"text": t}) for t in real_texts(real, seed + 1000)]
    (folder / "data" / "real.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = recipe_dict(name, seed, evolve or {"rounds": 4, "per_round": 60}, hidden_defect)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path

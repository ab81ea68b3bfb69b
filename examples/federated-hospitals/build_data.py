"""Rebuild ``data/hospital-*.jsonl``: three hospitals' triage notes, each a different case mix.

No real patient records can ship (or should), so each hospital's private data is stood in for
by seeded, templated triage question/answer pairs. What matters for federated learning is the
*skew*: the respiratory clinic sees fevers, coughs and sore throats, the cardiology unit chest
pain, dizziness and breathlessness, the outpatient clinic rashes, back and abdominal pain. A
hospital that trains alone never learns the other two's advice; the federation does.

Run from the repository root: ``.venv/bin/python examples/federated-hospitals/build_data.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data"
PER_HOSPITAL = 120
ADVICE = {
    "a fever": "Rest, drink plenty of fluids and measure the temperature twice a day.",
    "a cough": "Warm drinks with honey and steam ease the cough; see a doctor if it lasts three "
    "weeks.",
    "a sore throat": "Gargle with warm salt water, suck lozenges and rest the voice.",
    "chest pain": "Call emergency services now: chest pain can be a heart attack.",
    "dizziness": "Sit or lie down at once, stand up slowly and have the blood pressure checked.",
    "shortness of breath": "Sit upright, loosen tight clothing and get urgent care if the lips "
    "turn blue.",
    "a rash": "Keep the skin clean and dry, avoid scratching and use a mild unscented cream.",
    "back pain": "Keep moving gently, use a warm pack and avoid lifting heavy loads.",
    "abdominal pain": "Eat light meals, avoid fatty food and seek care if the pain moves to "
    "the lower right.",
}
HOSPITALS = {
    "hospital-a": ["a fever", "a cough", "a sore throat"],
    "hospital-b": ["chest pain", "dizziness", "shortness of breath"],
    "hospital-c": ["a rash", "back pain", "abdominal pain"],
}


def note(rng: random.Random, symptom: str) -> dict[str, object]:
    age = rng.randint(18, 85)
    days = rng.randint(1, 7)
    gender = rng.choice(["man", "woman"])
    prompt = (
        f"A {age}-year-old {gender} has had {symptom} for {days} "
        f"day{'s' if days > 1 else ''}. What should they do?"
    )
    urgency = "needs a doctor soon" if age >= 65 or days > 4 else "can usually be managed at home"
    span = f"{days} day{'s' if days > 1 else ''}"
    response = f"{symptom.capitalize()} for {span} {urgency}. {ADVICE[symptom]}"
    return {"prompt": prompt, "response": response, "symptom": symptom, "age": age}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for index, (hospital, symptoms) in enumerate(HOSPITALS.items()):
        rng = random.Random(100 + index)
        rows = [note(rng, symptoms[i % len(symptoms)]) for i in range(PER_HOSPITAL)]
        lines = "".join(json.dumps(row) + "\n" for row in rows)
        (OUT / f"{hospital}.jsonl").write_text(lines, encoding="utf-8")
        print(f"{hospital}: {len(rows)} notes ({', '.join(symptoms)})")


if __name__ == "__main__":
    main()

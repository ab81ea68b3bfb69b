"""A held-aside synthetic test set: the recipe's audio generator run again with another seed.

Records split off the generated pool share its random stream's habits (the same recipe seed
draws the rpm, load, blade counts, phases and noise of every clip). A test set made with a
different seed draws all of them anew, so a score on it says how well the model generalises
to new machines and new noise, not to siblings of its training clips. The clips go through
the same audio tier as the generated ones; the accepted records are returned, their media
paths relative to the run directory (``evaluate/heldout-audio/``).
"""

from __future__ import annotations

from typing import Any

from synthtune.records import Record

HELDOUT_DIR = "evaluate/heldout-audio"


def heldout_records(store: Any, recipe: Any, n: int, seed: int) -> list[Record]:
    """``n`` clips from ``recipe``'s generate section with ``seed``, written under the run
    directory of ``store`` and checked by the audio tier; the accepted records."""
    from synthtune.audio.quality_tier import check_clips
    from synthtune.audio.strategy import AudioSynthesis
    from synthtune.audio.wav import read_wav
    from synthtune.config.generate import is_audio_backend
    from synthtune.records import Payload

    generate = recipe.generation
    if not is_audio_backend(generate.backend.type):
        return []
    variant = recipe.model_copy(
        update={"seed": seed, "generate": generate.model_copy(update={"n": n})}
    )
    strategy = AudioSynthesis(variant)  # its media seeds come from ``seed``
    backend = strategy.create_backend(lambda name: name)
    items = strategy.plan()
    requests = [strategy.request(it, strategy.item_seed(it.index)) for it in items]
    records = []
    for item, request, result in zip(items, requests, backend.render(requests), strict=True):
        output = strategy.output(item, request.seed, result, HELDOUT_DIR)
        if output.error is not None:
            continue
        for relative, data in output.files.items():
            store.write_media(relative, data)
        payload = Payload.model_validate(
            {"messages": output.messages, "label": output.label, "media": output.media}
        )
        lineage = {"slots": item.slots, "heldout_seed": seed, **output.lineage}
        records.append(Record.create("synthetic", payload, lineage=lineage))
    check_clips(
        records,
        lambda relative: read_wav(store.media_path(relative)),
        recipe.quality.audio,
        generate.backend.type == "espeak",
    )
    return [r for r in records if r.status == "accepted"]

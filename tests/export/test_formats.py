"""Dataset export formats: text records as before, image records keep their images."""

from synthtune.export.formats import FORMATS
from synthtune.records import Box, Media, Message, Payload, Record


def _records() -> tuple[Record, Record]:
    text = Record.create(
        "synthetic",
        Payload(
            messages=[
                Message(role="user", content="Fever for 3 days?"),
                Message(role="assistant", content="See a doctor."),
            ]
        ),
    )
    box = Box(label="crack", x0=1, y0=2, x1=5, y1=6)
    image = Record.create(
        "synthetic",
        Payload(
            messages=[Message(role="user", content="a photo of a crack on brick")],
            label="crack",
            media=(Media(path="generate/images/a.png", width=8, height=8, boxes=(box,)),),
        ),
    )
    return text, image


def test_every_format_keeps_the_images_of_image_records_and_leaves_text_rows_alone() -> None:
    text, image = _records()
    for name in ("openai", "alpaca", "sharegpt"):
        row = FORMATS.get(name)(text)
        assert row is not None and "images" not in row and "label" not in row
        row = FORMATS.get(name)(image)
        assert row is not None
        assert row["images"] == ["generate/images/a.png"] and row["label"] == "crack"
        assert row["boxes"] == [[{"label": "crack", "x0": 1, "y0": 2, "x1": 5, "y1": 6}]]
    assert FORMATS.get("sharegpt")(text) == {
        "conversations": [
            {"from": "human", "value": "Fever for 3 days?"},
            {"from": "gpt", "value": "See a doctor."},
        ]
    }

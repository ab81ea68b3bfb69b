from synthtune.records import Message, Payload, Record, payload_id, split_of


def _payload(text: str = "hello") -> Payload:
    return Payload(
        messages=[Message(role="user", content="q"), Message(role="assistant", content=text)]
    )


def test_id_is_a_stable_content_hash() -> None:
    # Pinned: a changed canonical form would silently break dedup, caches and resume.
    assert payload_id(_payload()) == "171d8ba2b11526cd"
    assert payload_id(_payload()) == payload_id(_payload())
    assert payload_id(_payload("other")) != payload_id(_payload())


def test_lineage_quality_and_status_do_not_change_the_id() -> None:
    a = Record.create("synthetic", _payload(), lineage={"seed": 1})
    b = Record.create("synthetic", _payload(), lineage={"seed": 2}, quality={"perplexity": 3.0})
    b.reject("rules: x")
    assert a.id == b.id


def test_reject_keeps_every_reason_once() -> None:
    record = Record.create("synthetic", _payload())
    record.reject("a")
    record.reject("b")
    record.reject("a")
    assert record.status == "rejected" and record.reasons == ["a", "b"]


def test_split_is_deterministic_and_close_to_the_fractions() -> None:
    ids = [f"{i:016x}" for i in range(4000)]
    splits = [split_of(i, 7, 0.1, 0.2) for i in ids]
    assert splits == [split_of(i, 7, 0.1, 0.2) for i in ids]
    assert abs(splits.count("test") / 4000 - 0.2) < 0.03
    assert abs(splits.count("val") / 4000 - 0.1) < 0.03
    assert splits != [split_of(i, 8, 0.1, 0.2) for i in ids]

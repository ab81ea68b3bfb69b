"""Image records through the stages: store round-trip, generate -> quality on an image recipe,
resume after kill -9, safe media paths in the review app, image feature spaces."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from synthtune.config import load_recipe
from synthtune.config.training import MixConfig
from synthtune.distribution.probe import DistributionProbe
from synthtune.pipeline import run_recipe
from synthtune.records import Box, Media, Message, Payload, Record, payload_id
from synthtune.review.app import ReviewServer, create_app
from synthtune.store import RunStore, UnsafeMediaPath, read_records, resolve_inside, write_records
from tests.vision.image_recipe import write_image_recipe

TOKEN = "image-token"


def _image_payload(path: str = "generate/images/a.png") -> Payload:
    box = Box(label="crack", x0=3, y0=4, x1=20, y1=9)
    media = Media(path=path, width=64, height=48, boxes=(box,), mask="generate/images/a.mask.png")
    return Payload(
        messages=[Message(role="user", content="a photo of a crack on brick")],
        label="crack",
        media=(media,),
    )


def test_media_round_trips_through_shards_and_text_ids_do_not_move(tmp_path: Path) -> None:
    text = Payload(
        messages=[Message(role="user", content="q"), Message(role="assistant", content="hello")]
    )
    assert payload_id(text) == "171d8ba2b11526cd"  # the pinned text id, media or not
    image = Record.create("synthetic", _image_payload(), lineage={"template": "t"})
    write_records(tmp_path / "s.parquet", [image, Record.create("real", text)])
    back = read_records(tmp_path / "s.parquet")
    assert back[0] == image and back[0].id == payload_id(back[0].payload)
    assert back[1].payload.media is None and back[1].id == "171d8ba2b11526cd"
    assert payload_id(_image_payload("generate/images/b.png")) != image.id
    with pytest.raises(ValueError, match="empty box"):
        Box(label="x", x0=5, y0=0, x1=5, y1=3)


def test_media_paths_cannot_leave_the_run_folder(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "secret.txt").write_text("no")
    os.symlink(tmp_path / "secret.txt", tmp_path / "run" / "link.png")
    assert (
        resolve_inside(tmp_path / "run", "generate/x.png")
        == (tmp_path / "run/generate/x.png").resolve()
    )
    for bad in ("../secret.txt", "/etc/passwd", "generate/../../secret.txt", "link.png", ""):
        with pytest.raises(UnsafeMediaPath):
            resolve_inside(tmp_path / "run", bad)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    recipe = write_image_recipe(folder, n=24)
    raw = recipe.read_text().replace("quality:\n", "quality:\n  review: {fraction: 0.25}\n")
    recipe.write_text(raw)
    result = run_recipe(load_recipe(recipe), folder / "runs", until="quality", quiet=True)
    return result.run_dir


def test_generate_then_quality_on_an_image_recipe(image_run: Path) -> None:
    store = RunStore(image_run)
    records = store.read_table("quality", "dataset")
    assert len(records) == 24
    # one caption on many images: exact dedup compares the images too
    assert sum(r.status == "accepted" for r in records) >= 22
    for record in records:
        (media,) = record.payload.media or ()
        image = Image.open(store.media_path(media.path))
        mask = np.asarray(Image.open(store.media_path(media.mask or "")))
        assert image.size == (media.width, media.height) == (64, 64)
        (box,) = media.boxes
        assert box.label == record.payload.label == record.lineage["slots"]["defect"]
        rows, cols = np.nonzero(mask)
        assert (box.x0, box.y0, box.x1, box.y1) == (
            cols.min(),
            rows.min(),
            cols.max() + 1,
            rows.max() + 1,
        )
        assert (
            record.payload.input_text()
            == f"a photo of a {box.label} on {record.lineage['slots']['material']}"
        )
        assert record.quality["image"]["exposure"][0]["std"] > 0.02
        assert "drawn" in record.lineage and record.lineage["backend"] == "procedural"
    files = sorted(p.name for p in (image_run / "generate" / "images").iterdir())
    assert len(files) == 48  # an image and a mask per record, nothing else
    usage = store.read_json("generate", "manifest.json")["usage"]
    assert usage["requests"] == 24 and usage["failed"] == 0  # images count as requests


def test_kill_9_mid_generation_then_resume_gives_the_same_records(
    tmp_path: Path, image_run: Path
) -> None:
    recipe = write_image_recipe(tmp_path, n=24)
    runs = tmp_path / "runs"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from synthtune.config import load_recipe
        from synthtune.context import StageContext
        from synthtune.generate.stage import GenerateStage
        from synthtune.store import RunStore
        from synthtune.vision.image_backends import ProceduralBackend

        original, calls = ProceduralBackend.render, []

        def dying(self, requests):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, requests)

        ProceduralBackend.render = dying
        # the stage alone (the pipeline imports the training stack: slow to start)
        store = RunStore(Path({str(runs / "defects")!r}))
        GenerateStage().run(StageContext(load_recipe({str(recipe)!r}), store, quiet=True))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()
    store = RunStore(runs / "defects")
    assert len(store.shard_paths("generate")) == 2 and store.stage_state("generate") is None
    run_recipe(load_recipe(recipe), runs, until="generate", quiet=True)
    resumed = store.read_table("generate", "dataset")
    reference = RunStore(image_run).read_table("generate", "dataset")
    assert [r.id for r in resumed] == [r.id for r in reference]
    assert len({r.lineage["request_key"] for r in store.read_shards("generate")}) == 24
    assert len(list((store.root / "generate" / "images").glob("*.png"))) == 48


def test_review_app_serves_sampled_images_and_nothing_else(image_run: Path) -> None:
    headers = {"X-Review-Token": TOKEN}
    with ReviewServer(create_app(image_run, TOKEN, ["template"], 0.2)) as server:
        items = httpx.get(f"{server.url}/api/items", headers=headers).json()
        assert items and all(len(i["media"]) == 1 and i["media"][0]["boxes"] for i in items)
        path = items[0]["media"][0]["path"]
        got = httpx.get(f"{server.url}/media/{path}", headers=headers)
        assert got.status_code == 200 and got.content == (image_run / path).read_bytes()
        assert got.headers["content-type"] == "image/png"
        assert httpx.get(f"{server.url}/media/{path}").status_code == 401
        # the page's images send the cookie the page set; a token in the query is refused
        assert httpx.get(f"{server.url}/media/{path}?token={TOKEN}").status_code == 401
        cookie = {"synthtune_review": TOKEN}
        assert httpx.get(f"{server.url}/media/{path}", cookies=cookie).status_code == 200
        for bad in (
            "..%2F..%2Fstate.json",
            "generate%2F..%2Fstate.json",
            "%2Fetc%2Fpasswd",
            "state.json",
            "generate/dataset.parquet",
        ):
            assert httpx.get(f"{server.url}/media/{bad}", headers=headers).status_code == 404, bad
        page = httpx.get(f"{server.url}/?token={TOKEN}").text
        assert "showMedia" in page and "<svg" not in page.split("<script>")[0]


def test_review_page_draws_the_boxes_over_the_image(image_run: Path) -> None:
    """In headless Chromium: the image loads through /media and each box is an SVG rect in
    the image's pixel coordinates, scaled with it."""
    from playwright.sync_api import sync_playwright

    from tests.review.test_review_browser import ARGS, CHROMIUM

    assert CHROMIUM, "Chromium is missing: apt-get install chromium"
    with (
        ReviewServer(create_app(image_run, TOKEN, ["template"], 0.2)) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.goto(f"{server.url}/?token={TOKEN}")
        page.wait_for_function("(document.querySelector('#media img') || {}).naturalWidth > 0")
        item = httpx.get(f"{server.url}/api/items", headers={"X-Review-Token": TOKEN}).json()[0]
        (box,) = item["media"][0]["boxes"]
        rect = page.locator("#media rect")
        assert rect.count() == 1 and page.text_content("#media text") == box["label"]
        assert [rect.get_attribute(k) for k in ("x", "y", "width", "height")] == [
            str(box["x0"]),
            str(box["y0"]),
            str(box["x1"] - box["x0"]),
            str(box["y1"] - box["y0"]),
        ]
        shown = page.locator("#media img").bounding_box()
        overlay = page.locator("#media svg").bounding_box()
        assert shown is not None and shown == overlay  # the boxes scale with the image
        browser.close()


def _image_records(n: int, seed: int, materials: list[str], folder: Path) -> list[Record]:
    from synthtune.vision.procedural import generate_dataset

    records = []
    for i, sample in enumerate(generate_dataset(n, materials=materials, seed=seed, size=48)):
        path = f"images/{seed}-{i}.png"
        (folder / "images").mkdir(exist_ok=True)
        sample.image.save(folder / path)
        payload = Payload(
            messages=[Message(role="user", content=sample.caption)],
            label=sample.label.defect,
            media=(Media(path=path, width=48, height=48),),
        )
        records.append(Record.create("real" if seed == 0 else "synthetic", payload))
    return records


def test_image_distance_with_the_pixel_space(tmp_path: Path) -> None:
    """The probe's distances and clusters on image records, pixel-statistics space: a sample
    of the real distribution reads near 0, a different material mix reads far."""
    mix = MixConfig.model_validate({"features": {"space": "pixels"}, "distance": {"bootstrap": 0}})
    real = _image_records(120, 0, ["brick", "grass", "gravel"], tmp_path)
    same = _image_records(60, 1, ["brick", "grass", "gravel"], tmp_path)
    other = _image_records(60, 2, ["metal", "moon"], tmp_path)
    probe = DistributionProbe(real, mix, seed=0, media_root=tmp_path)
    near, far = probe.measure(same)["wasserstein"], probe.measure(other)["wasserstein"]
    assert near < 1.0 and far > 3 * near, (near, far)  # 60-row samples: noisy, far is ~7x
    assert len(probe.in_support(same)) > len(probe.in_support(other))
    text = Record.create("synthetic", Payload(messages=[Message(role="user", content="x")]))
    with pytest.raises(Exception, match="has no image"):
        probe.measure([text] * 10)


def test_a_review_edit_of_an_image_record_corrects_its_caption_and_keeps_the_image() -> None:
    from synthtune.decisions import Decision, apply_decisions

    record = Record.create("synthetic", _image_payload())
    edit = Decision(record_id=record.id, decision="edit", reason="caption", edited_reply="a crack")
    (edited,) = apply_decisions([record], {record.id: edit})
    assert edited.payload.media == record.payload.media and edited.payload.label == "crack"
    assert edited.payload.text("response") == "a crack" and edited.id != record.id
    # the caption is what the CLIP task trains on (the user turn): the edit replaced it,
    # no second copy of the caption and no assistant turn appeared
    assert [m.role for m in edited.payload.messages] == ["user"]
    assert edited.payload.input_text() == "a crack"


def _real_image_recipe(tmp_path: Path, features: dict, quality: dict | None = None) -> Path:
    """Real images (JSONL: caption, label, image path) next to a generated image recipe."""
    import json

    import yaml

    from synthtune.vision.procedural import generate_dataset

    (tmp_path / "real").mkdir()
    rows = []
    for i, sample in enumerate(
        generate_dataset(60, seed=99, size=64, materials=["brick", "grass"])
    ):
        sample.image.save(tmp_path / "real" / f"{i}.png")
        rows.append({"caption": sample.caption, "defect": sample.label.defect, "file": f"{i}.png"})
    data = tmp_path / "real" / "real.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    recipe = write_image_recipe(tmp_path, n=24)
    raw = yaml.safe_load(recipe.read_text())
    raw["mix"] = {
        "real": {
            "path": "real/real.jsonl",
            "text_field": "caption",
            "label_field": "defect",
            "image_field": "file",
        },
        "features": features,
        "distance": {"bootstrap": 0},
        "schedule": {"max_rounds": 2},
    }
    raw["quality"].update(quality or {})
    recipe.write_text(yaml.safe_dump(raw))
    return recipe


def test_offline_clip_model_names_resolve_in_quality_and_mix(tmp_path: Path) -> None:
    # local-tiny-clip is built by the run (like local-tiny), not looked up on the hub
    recipe = _real_image_recipe(
        tmp_path,
        {"space": "clip", "model": "local-tiny-clip"},
        {"image": {"caption_score": {"model": "local-tiny-clip", "min_score": -1.0}}},
    )
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="mix", quiet=True)
    store = RunStore(result.run_dir)
    scores = [r.quality["image"]["caption_score"] for r in store.read_table("quality", "dataset")]
    assert len(scores) == 24 and all(-1.0 <= s <= 1.0 for s in scores)
    assert (result.run_dir / "models" / "local-tiny-clip" / "config.json").exists()
    rounds = store.read_json("mix", "rounds.json")
    assert rounds and all(r["wasserstein"] is not None for r in rounds)


def test_mix_injects_image_records_by_image_distance(tmp_path: Path) -> None:
    """Real images and generated ones through mix with the pixel-statistics space: the same
    distances and schedule as text."""
    recipe = _real_image_recipe(tmp_path, {"space": "pixels"})
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="mix", quiet=True)
    store = RunStore(result.run_dir)
    train = store.read_table("mix", "train")
    real = [r for r in train if r.source == "real"]
    synthetic = [r for r in train if r.source == "synthetic"]
    assert real and synthetic and all(r.payload.media for r in train)
    assert Path(real[0].payload.media[0].path).is_absolute()
    assert real[0].payload.input_text().startswith("a photo of")
    rounds = store.read_json("mix", "rounds.json")
    kept = [r for r in rounds if r["kept"]]
    assert all(r["wasserstein"] is not None for r in rounds) and kept[-1]["synthetic"] == len(
        synthetic
    )
    assert {r.source for r in store.read_table("mix", "test")} == {"real"}


def test_real_image_ids_do_not_depend_on_where_the_data_folder_is(tmp_path: Path) -> None:
    """The id decides the held-out split: moving the data must not move records across it."""
    import json
    import shutil

    from PIL import Image

    from synthtune.config import RealDataConfig
    from synthtune.realdata import load_real

    first = tmp_path / "a"
    first.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(first / f"{i}.png")
    rows = [{"caption": f"a photo {i}", "file": f"{i}.png"} for i in range(3)]
    (first / "real.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    shutil.copytree(first, tmp_path / "b")

    def ids(folder: Path) -> list[str]:
        cfg = RealDataConfig(
            path=str(folder / "real.jsonl"), text_field="caption", image_field="file"
        )
        return [r.id for r in load_real(cfg)]

    assert ids(first) == ids(tmp_path / "b")
    assert len(set(ids(first))) == 3

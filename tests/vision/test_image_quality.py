"""Image quality checks: perceptual dedup, blank/exposure, caption agreement by CLIP score."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthtune.config.quality import CaptionScoreConfig, ImageQualityConfig
from synthtune.records import Media, Message, Payload, Record
from synthtune.vision.embed import CAPTION_SCORERS, ClipCaptionScorer
from synthtune.vision.exposure import exposure_reasons, measure_exposure
from synthtune.vision.phash import hamming_pairs, perceptual_hashes
from synthtune.vision.procedural import generate_dataset
from synthtune.vision.quality_tier import check_images


def _reencoded(image: Image.Image) -> Image.Image:
    """A JPEG copy at quality 70, resized by 6 %: what a re-upload of one image looks like."""
    buffer = io.BytesIO()
    image.resize((image.width - 8, image.height - 8)).save(buffer, "JPEG", quality=70)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _record(path: str, caption: str, index: int) -> Record:
    payload = Payload(
        messages=[Message(role="user", content=caption)],
        media=[Media(path=path, width=128, height=128)],
    )
    return Record.create("synthetic", payload, lineage={"request_index": index})


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [s.image for s in generate_dataset(60, seed=11, size=128)]


def test_phash_pairs_a_reencoded_copy_and_nothing_else(images: list[Image.Image]) -> None:
    bits = perceptual_hashes([*images, _reencoded(images[7])])
    assert hamming_pairs(bits, 5) == [(7, len(images))]
    assert hamming_pairs(bits, 64) != [(7, len(images))]  # the threshold decides


def test_blank_and_exposure_checks(images: list[Image.Image]) -> None:
    flat = Image.new("RGB", (64, 64), (120, 120, 120))
    white = Image.fromarray(np.full((64, 64, 3), 252, np.uint8))
    black = Image.fromarray(np.full((64, 64, 3), 2, np.uint8))
    reasons = {
        name: exposure_reasons(measure_exposure(im), 0.02, 0.5)
        for name, im in {"flat": flat, "white": white, "black": black}.items()
    }
    assert reasons["flat"] == ["image: blank (grey std 0.000 < 0.02)"]
    assert any("over-exposed (100% of pixels white)" in r for r in reasons["white"])
    assert any("under-exposed" in r for r in reasons["black"])
    assert all(exposure_reasons(measure_exposure(im), 0.02, 0.5) == [] for im in images)


def test_check_images_keeps_rejects_with_reasons(images: list[Image.Image]) -> None:
    files = {f"generate/images/{i}.png": im for i, im in enumerate(images[:10])}
    files["generate/images/copy.png"] = _reencoded(images[3])
    files["generate/images/flat.png"] = Image.new("RGB", (128, 128), (90, 90, 90))
    records = [_record(path, "a photo of a spot on brick", n) for n, path in enumerate(files)]
    text_only = Record.create("synthetic", Payload(messages=[Message(role="user", content="x")]))
    check_images([*records, text_only], files.__getitem__, ImageQualityConfig())
    rejected = {r.payload.media[0].path: r.reasons for r in records if r.status == "rejected"}
    assert set(rejected) == {"generate/images/copy.png", "generate/images/flat.png"}
    assert rejected["generate/images/copy.png"] == [
        f"dedup: perceptual duplicate (kept {records[3].id})"
    ]
    assert rejected["generate/images/flat.png"][0].startswith("image: blank")
    assert text_only.status == "accepted" and text_only.quality == {}
    assert len(records[0].quality["image"]["exposure"]) == 1


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised CLIP with a word-level tokenizer, saved like a real checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-clip")
    words = "[PAD] [UNK] [BOS] [EOS] a photo of on scratch spot crack hole stain dent brick grass"
    vocab = {w: i for i, w in enumerate(words.split())}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )
    tokenizer.save_pretrained(folder)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "pad_token_id": 0,
            "bos_token_id": 2,
            "eos_token_id": 3,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


def test_clip_caption_scores_and_the_threshold(tiny_clip: Path, images: list[Image.Image]) -> None:
    captions = ["a photo of a scratch on brick", "a photo of a hole on grass"] * 3
    scores = ClipCaptionScorer(str(tiny_clip)).score(images[:6], captions)
    assert scores.shape == (6,) and np.all(np.abs(scores) <= 1.0001)
    assert len(set(np.round(scores, 6))) > 1  # real scores, not a constant
    files = {f"i{i}.png": im for i, im in enumerate(images[:6])}
    records = [_record(p, c, n) for n, (p, c) in enumerate(zip(files, captions, strict=True))]
    middle = float(np.median(scores))
    cfg = ImageQualityConfig(
        phash_distance=None,
        caption_score=CaptionScoreConfig(model=str(tiny_clip), min_score=middle),
    )
    check_images(records, files.__getitem__, cfg)
    for record, score in zip(records, scores, strict=True):
        assert record.quality["image"]["caption_score"] == pytest.approx(score, abs=1e-4)
        assert (record.status == "rejected") == bool(score < middle)
        if record.status == "rejected":
            assert record.reasons[0].startswith("image: caption disagrees (clip ")
    assert "clip" in CAPTION_SCORERS


def test_clip_feature_space_embeds_image_records(tiny_clip: Path, tmp_path: Path) -> None:
    from synthtune.config.training import FeatureSpaceConfig
    from synthtune.distribution.features import FEATURE_SPACES

    samples = generate_dataset(5, seed=3, size=48)
    records = []
    for i, sample in enumerate(samples):
        sample.image.save(tmp_path / f"{i}.png")
        records.append(_record(f"{i}.png", sample.caption, i))
    cfg = FeatureSpaceConfig(space="clip", model=str(tiny_clip))
    space = FEATURE_SPACES.get("clip").from_config(cfg, seed=0, media_root=tmp_path)
    vectors = space.transform(space.inputs(records, "response"))
    assert vectors.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    direct = ClipCaptionScorer(str(tiny_clip)).embedder.images([s.image for s in samples])
    np.testing.assert_allclose(vectors, direct, atol=1e-5)  # the files are the images

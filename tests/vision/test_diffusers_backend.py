"""The diffusers backend, offline: tiny randomly initialised Stable Diffusion pipelines built
from configs and saved like real ones, then loaded by the backend's own from_pretrained code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore
from tests.vision.image_recipe import write_image_recipe

pytest.importorskip("diffusers")


def _tiny_pipeline(folder: Path, inpaint: bool) -> Path:
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=4,
        in_channels=9 if inpaint else 4,  # inpainting: latents + masked-image latents + mask
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    words = "[PAD] [BOS] [EOS] [UNK] a photo of on scratch crack spot hole stain dent brick grass"
    vocab = {w: i for i, w in enumerate(words.split())}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        model_max_length=16,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    )
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, steps_offset=1)
    kind = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    pipe = kind(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sd")
    return {
        "text2img": _tiny_pipeline(root / "text2img", inpaint=False),
        "inpaint": _tiny_pipeline(root / "inpaint", inpaint=True),
    }


@pytest.mark.parametrize("mode", ["text2img", "inpaint"])
def test_diffusers_backend_makes_image_records(
    mode: str, pipelines: dict[str, Path], tmp_path: Path
) -> None:
    backend = {
        "type": "diffusers",
        "model": str(pipelines[mode]),
        "mode": mode,
        "width": 32,
        "height": 32,
        "steps": 2,
        "batch_size": 3,
    }
    recipe = write_image_recipe(tmp_path, n=4, backend=backend)
    run = run_recipe(load_recipe(recipe), tmp_path / "runs", until="generate", quiet=True)
    store = RunStore(run.run_dir)
    records = store.read_table("generate", "dataset")
    assert len(records) == 4 and all(r.status == "accepted" for r in records)
    assert {r.lineage["backend"] for r in records} == {"diffusers"}
    from PIL import Image

    for record in records:
        (media,) = record.payload.media or ()
        image = Image.open(store.media_path(media.path))
        assert image.size == (32, 32) and np.asarray(image).std() > 0
        if mode == "inpaint":
            (box,) = media.boxes
            assert box.label == record.payload.label == record.lineage["slots"]["defect"]
            mask = np.asarray(Image.open(store.media_path(media.mask or ""))) > 0
            assert mask.sum() == record.lineage["inpainted_pixels"] > 0
        else:
            assert media.boxes == () and media.mask is None


def test_each_image_has_its_own_seed(pipelines: dict[str, Path]) -> None:
    """A request's image does not depend on its batch neighbours (resume redraws it)."""
    from synthtune.config import DiffusersBackendConfig
    from synthtune.vision.diffusion import DiffusersBackend
    from synthtune.vision.image_backends import ImageRequest

    cfg = DiffusersBackendConfig(
        type="diffusers", model=str(pipelines["text2img"]), width=32, height=32, steps=2
    )
    backend = DiffusersBackend(cfg, lambda name: name)
    requests = [ImageRequest(f"k{i}", "a photo of a crack on brick", {}, seed=i) for i in range(3)]
    together = backend.render(requests)
    alone = backend.render(requests[1:2])
    pixels = [np.asarray(r.image, dtype=float) for r in together]
    assert np.abs(pixels[1] - np.asarray(alone[0].image, dtype=float)).max() <= 2
    assert np.abs(pixels[0] - pixels[1]).mean() > 1  # other seed, other image


def test_an_inpainting_request_that_cannot_be_prepared_fails_alone(
    pipelines: dict[str, Path],
) -> None:
    from synthtune.config import DiffusersBackendConfig
    from synthtune.vision.diffusion import DiffusersBackend
    from synthtune.vision.image_backends import ImageRequest

    cfg = DiffusersBackendConfig(
        type="diffusers",
        model=str(pipelines["inpaint"]),
        mode="inpaint",
        width=32,
        height=32,
        steps=2,
    )
    backend = DiffusersBackend(cfg, lambda name: name)
    good = ImageRequest("good", "a crack on brick", {"defect": "crack", "material": "brick"}, 1)
    bad = ImageRequest("bad", "a burn on brick", {"defect": "burn", "material": "brick"}, 2)
    results = backend.render([good, bad, good])
    assert [r.image is not None for r in results] == [True, False, True]
    assert "burn" in (results[1].error or "")
    assert results[0].label == "crack" and results[0].mask is not None

"""ONNX Runtime int8 vs PyTorch fp32 images/s for a CLIP vision tower on CPU (issue 9).

Goal: ORT int8 >= 2x PyTorch fp32 images/s at the same batch and thread count. The model is
a CLIP with ViT-B/32's vision tower (768 wide, 12 blocks, 224x224 images in 32x32 patches,
~88M vision parameters; a tiny text tower, only used to bake the class prompts in), randomly
initialised and seeded, exported the way the export stage does it
(synthtune.vision.onnx_export: vision tower + projection + class scores, TorchScript
exporter, dynamic int8). Inputs are procedural defect images. The runtimes are timed in turns
(round-robin), so load from other processes falls on all of them alike; the median round
counts. Agreement with PyTorch (max |logit diff|, argmax agreement) is printed too.

    python bench/onnx_vision.py [--batch 16] [--rounds 10] [--width 768] [--layers 12]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from synthtune.vision import onnx_export as onnx
from synthtune.vision.clip_model import build_tiny_clip
from synthtune.vision.clip_task import build_classifier
from synthtune.vision.procedural import generate_dataset

CLASSES = ("scratch", "spot", "crack", "hole")


def build(folder: Path, args: argparse.Namespace) -> onnx.VisionScorer:
    """A seeded CLIP with a ViT-B/32-like vision tower, as the export stage's scorer."""
    from transformers import CLIPModel

    build_tiny_clip(folder, [f"a photo of a {c} on metal" for c in CLASSES], seed=0)
    small = CLIPModel.from_pretrained(folder)
    config = small.config
    vision = config.vision_config
    vision.hidden_size, vision.intermediate_size = args.width, 4 * args.width
    vision.num_hidden_layers, vision.num_attention_heads = args.layers, args.width // 64
    vision.image_size, vision.patch_size = args.image_size, args.patch
    config.projection_dim = 512
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    prompts = [[f"a photo of a {c} on metal"] for c in CLASSES]
    classifier, _ = build_classifier(str(folder), list(CLASSES), prompts, "contrastive")
    return onnx.VisionScorer(classifier.eval()).eval()


def pixels(n: int, size: int) -> np.ndarray:
    """Procedural defect images, CLIP-normalised, as a (n, 3, size, size) batch."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    images = [s.image for s in generate_dataset(n, CLASSES, seed=1, size=size)]
    batch: np.ndarray = processor(images=images, return_tensors="np")["pixel_values"]
    return batch.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch", type=int, default=32)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    scorer = build(folder / "clip", args)
    fp32 = onnx.export_onnx(scorer, args.image_size, folder / "vision.onnx")
    int8 = onnx.quantize_int8(fp32, folder / "vision-int8.onnx")
    batch = pixels(args.batch, args.image_size)
    runners = {
        "torch_fp32": onnx.torch_runner(scorer),
        "ort_fp32": onnx.ort_runner(onnx.ort_session(fp32)),
        "ort_int8": onnx.ort_runner(onnx.ort_session(int8)),
    }
    reference = runners["torch_fp32"](batch)
    params = sum(p.numel() for p in scorer.vision.parameters()) / 1e6
    print(
        f"vision tower {params:.1f}M params, {args.image_size}px/{args.patch}, batch "
        f"{args.batch}, {torch.get_num_threads()} threads, {args.rounds} rounds"
    )
    for name in ("ort_fp32", "ort_int8"):
        print(f"  {name} vs torch_fp32: {onnx.agreement(reference, runners[name](batch))}")
    speed = onnx.compare_runtimes(runners, batch, args.rounds)
    sizes = {"ort_fp32": fp32.stat().st_size, "ort_int8": int8.stat().st_size}
    for name, value in speed.items():
        ratio = value / speed["torch_fp32"]
        size = f", {sizes[name] / 1e6:.0f} MB" if name in sizes else ""
        print(f"  {name:>10}: {value:8.1f} images/s  ({ratio:.2f}x torch fp32{size})")


if __name__ == "__main__":
    main()

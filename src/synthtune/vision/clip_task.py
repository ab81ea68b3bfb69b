"""The ``clip`` training task: CLIP on image records, as one more entry of the train stage's
task registry, so methods (LoRA on both towers ...), layered learning rates, freezing, early
stopping and gradient clipping apply exactly as for text.

A record's image is ``payload.media[0]`` (a path relative to the run directory), its caption
the user turn, its class ``payload.label``. :class:`ClipClassifier` wraps a ``CLIPModel``:

* ``contrastive`` (default): the symmetric image-caption loss of CLIP (Radford et al., 2021)
  with label-aware targets -- two pairs of one class are both positives, as in UniCL (Yang
  et al., 2022), because a batch of defect captions holds many of one class and treating
  them as negatives would push same-class images apart. Classes are predicted zero-shot:
  cosine similarity to the class prompts ("a photo of a {label} on {material}"), the prompts
  of a class averaged (prompt ensembling, Radford et al., 2021, section 3.1.4).
* ``head``: a linear classifier on the image embeddings, cross-entropy on the labels.

Both return ``logits`` over the classes, which the stage's classification metrics read.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.utils import ModelOutput

from synthtune.errors import StageError
from synthtune.records import Record

CLASSIFIER = "classifier"  # the head's module name (trains at lr.adapter, saved with adapters)
TASK_FILE = "clip_task.json"


def image_path(record: Record, root: Path) -> Path:
    """The record's image file; records without an image are a user error, named."""
    media = record.payload.media
    if not media:
        raise StageError(f"record {record.id}: train.task clip needs an image (payload.media)")
    return Path(root) / media[0].path


def load_image(record: Record, root: Path) -> Any:
    from PIL import Image

    with Image.open(image_path(record, root)) as image:
        return image.convert("RGB")


def class_prompts(template: str, labels: list[str], records: list[Record]) -> list[list[str]]:
    """Per label, the distinct prompts made from the template, the label and the slot values
    of that label's records (a template without slot fields gives one prompt per label)."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    prompts: dict[str, dict[str, None]] = {label: {} for label in labels}
    for record in records:
        label = record.payload.label
        slots = {k: str(v) for k, v in record.lineage.get("slots", {}).items()}
        values = {**slots, "label": str(label)}
        if label in prompts and fields <= set(values):
            prompts[label][template.format(**values)] = None
    return [list(prompts[label]) or [_label_only(template, label)] for label in labels]


def _label_only(template: str, label: str) -> str:
    """The template with every field but the label dropped: 'a photo of a scratch'."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    if fields <= {"label"}:
        return template.format(label=label)
    return f"a photo of a {label}"


@dataclass
class ClipOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


def contrastive_loss(
    image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    """Symmetric InfoNCE over normalised embeddings; pairs sharing a label are positives."""
    logits = scale * image @ text.T
    if labels is None:
        targets = torch.eye(len(image), device=image.device)
    else:
        same = (labels[:, None] == labels[None, :]).float()
        targets = same / same.sum(dim=1, keepdim=True)
    images_to_texts = nn.functional.cross_entropy(logits, targets)
    texts_to_images = nn.functional.cross_entropy(logits.T, targets.T)
    return (images_to_texts + texts_to_images) / 2


def register_prompts(module: nn.Module, tokenizer: Any, prompts: list[list[str]]) -> None:
    """The class prompts, tokenised once, as ``module``'s non-persistent buffers
    ``prompt_ids``, ``prompt_mask`` and ``prompt_class`` (each prompt's class id): they follow
    the model to its device and are rebuilt from the prompts on load."""
    flat = [p for group in prompts for p in group]
    enc = tokenizer(flat, padding=True, truncation=True, return_tensors="pt")
    owner = [i for i, group in enumerate(prompts) for _ in group]
    module.register_buffer("prompt_ids", enc["input_ids"], persistent=False)
    module.register_buffer("prompt_mask", enc["attention_mask"], persistent=False)
    module.register_buffer("prompt_class", torch.tensor(owner), persistent=False)


def mean_class_embeds(
    prompts: torch.Tensor, prompt_class: torch.Tensor, classes: int
) -> torch.Tensor:
    """One unit vector per class from unit prompt embeddings: the normalised mean of the
    prompts of each class (``prompt_class``: each prompt's class id). Prompt ensembling,
    shared by the CLIP and audio classifiers."""
    sums = torch.zeros(classes, prompts.shape[1], device=prompts.device)
    return nn.functional.normalize(sums.index_add(0, prompt_class, prompts), dim=-1)


def class_scores(
    embeds: torch.Tensor,
    classifier: nn.Module | None,
    scale: torch.Tensor,
    class_embeds: Any,
) -> torch.Tensor:
    """Class logits from (unnormalised) embeddings: the head when there is one, else
    ``scale`` x cosine similarity to ``class_embeds()`` (zero-shot from the prompts)."""
    if classifier is not None:
        logits: torch.Tensor = classifier(embeds)
        return logits
    unit = nn.functional.normalize(embeds, dim=-1)
    return scale * unit @ class_embeds().T


class ClipClassifier(nn.Module):
    """A ``CLIPModel`` that scores images against classes (see the module docstring)."""

    base_model_prefix = "clip"  # where the CLIPModel sits (peft's weight-name mapping reads it)

    def __init__(
        self, clip: Any, tokenizer: Any, labels: list[str], prompts: list[list[str]], objective: str
    ) -> None:
        super().__init__()
        self.clip = clip
        self.config = clip.config  # peft resolves module aliases from config.model_type
        self.labels, self.prompts, self.objective = list(labels), prompts, objective
        self.prompt_ids: torch.Tensor
        self.prompt_mask: torch.Tensor
        self.prompt_class: torch.Tensor
        register_prompts(self, tokenizer, prompts)
        width = clip.config.projection_dim
        self.classifier = nn.Linear(width, len(labels)) if objective == "head" else None

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.clip.get_image_features(pixel_values=pixel_values).pooler_output

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return nn.functional.normalize(out.pooler_output, dim=-1)

    def class_embeds(self) -> torch.Tensor:
        """One unit vector per class: the mean of its normalised prompt embeddings."""
        prompts = self.text_embeds(self.prompt_ids, self.prompt_mask)
        return mean_class_embeds(prompts, self.prompt_class, len(self.labels))

    def scores(self, image: torch.Tensor) -> torch.Tensor:
        """Class logits from (unnormalised) image embeddings."""
        return class_scores(image, self.classifier, self.clip.logit_scale.exp(), self.class_embeds)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> ClipOutput:
        image = self.image_embeds(pixel_values)
        logits = self.scores(image)
        loss = None
        if labels is not None and self.classifier is None and input_ids is not None:
            text = self.text_embeds(input_ids, attention_mask)  # type: ignore[arg-type]
            unit = nn.functional.normalize(image, dim=-1)
            loss = contrastive_loss(unit, text, self.clip.logit_scale.exp(), labels)
        elif labels is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return ClipOutput(loss=loss, logits=logits)

    def save_pretrained(self, out_dir: Path | str, **kwargs: Any) -> None:
        """An HF CLIP folder (loadable by any CLIP code) + the head + ``clip_task.json``."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        self.clip.save_pretrained(out)
        if self.classifier is not None:
            state = {k: v.contiguous() for k, v in self.classifier.state_dict().items()}
            save_file(state, str(out / f"{CLASSIFIER}.safetensors"))
        (out / TASK_FILE).write_text(json.dumps(self.task_info(), indent=2), encoding="utf-8")

    def task_info(self) -> dict[str, Any]:
        return {"objective": self.objective, "labels": self.labels, "prompts": self.prompts}


@dataclass
class ClipInputs:
    """What the clip task encodes records with: the CLIP processor and the run directory the
    records' image paths are relative to (the stage's "tokenizer" slot)."""

    processor: Any
    root: Path
    task: dict[str, Any]  # objective, labels, prompts: saved beside adapters as clip_task.json

    def save_pretrained(self, out_dir: Path | str) -> None:
        self.processor.save_pretrained(out_dir)
        text = json.dumps(self.task, indent=2)
        (Path(out_dir) / TASK_FILE).write_text(text, encoding="utf-8")

    def pixels(self, images: list[Any]) -> np.ndarray:
        out: np.ndarray = self.processor.image_processor(images=images, return_tensors="np")[
            "pixel_values"
        ]
        return out.astype(np.float32)


def build_classifier(path: str, labels: list[str], prompts: list[list[str]], objective: str) -> Any:
    """``(ClipClassifier, CLIPProcessor)`` from a CLIP folder or hub id."""
    from synthtune.vision.clip_model import load_clip

    clip, processor = load_clip(path)
    return ClipClassifier(clip, processor.tokenizer, labels, prompts, objective), processor


def load_clip_task(path: str, setup: Any) -> tuple[ClipClassifier, ClipInputs]:
    """The train stage's loader (``TaskSpec.load``): the classifier over the train labels,
    its class prompts filled from the train records' slots."""
    cfg = setup.config.clip
    prompts = class_prompts(cfg.prompt, setup.labels, setup.records)
    model, processor = build_classifier(path, setup.labels, prompts, cfg.objective)
    return model, ClipInputs(processor, Path(setup.root), model.task_info())


def load_tuned_classifier(folder: Path, base_path: str) -> tuple[Any, Any]:
    """What the train stage saved in ``folder``: a peft adapter over ``base_path``, or a
    whole fine-tuned CLIP folder; labels, prompts and objective from ``clip_task.json``."""
    from safetensors.torch import load_file

    task = json.loads((folder / TASK_FILE).read_text(encoding="utf-8"))
    args = (task["labels"], task["prompts"], task["objective"])
    if (folder / "adapter_config.json").exists():
        from peft import PeftModel

        model, processor = build_classifier(base_path, *args)
        return PeftModel.from_pretrained(model, str(folder)).eval(), processor
    model, processor = build_classifier(str(folder), *args)
    if model.classifier is not None:
        model.classifier.load_state_dict(load_file(str(folder / f"{CLASSIFIER}.safetensors")))
    return model.eval(), processor


def encode_clip(
    inputs: ClipInputs, record: Record, max_length: int, ids: dict[str, int]
) -> dict[str, Any]:
    """One record as model inputs: pixel values, caption token ids, class index."""
    from synthtune.train.tasks import label_id

    tokenizer = inputs.processor.tokenizer
    limit = min(max_length, getattr(tokenizer, "model_max_length", max_length))
    caption = tokenizer(record.payload.input_text(), truncation=True, max_length=limit)
    return {
        "pixel_values": inputs.pixels([load_image(record, inputs.root)])[0],
        "input_ids": caption["input_ids"],
        "labels": label_id(record, ids),
    }

"""The strategy contract and the pieces every strategy shares.

A strategy plans work items deterministically from the recipe (so resume can skip done items
by key), and turns a batch of items into outputs with as few batched engine calls as it can.
One item may yield several records (document-to-QA), or a rejected one with its reason.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from synthtune import plugins
from synthtune.config import Recipe
from synthtune.errors import RecipeError
from synthtune.generate.edge_cases import compile_edge_cases
from synthtune.llm.backends.base import GenerationRequest
from synthtune.llm.engine import GenerationEngine
from synthtune.llm.structured import Reply
from synthtune.llm.tokens import estimate_messages
from synthtune.records import Record, content_hash
from synthtune.templates import CompiledTemplate, compile_template, request_rng


@dataclass(frozen=True)
class WorkItem:
    index: int
    key: str
    template: CompiledTemplate
    slots: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    edge_case: dict[str, Any] | None = None  # the lineage tag of an edge-case item
    few_shot: tuple[dict[str, str], ...] = ()  # worked examples shown before the prompt

    def render(self, **provided: Any) -> dict[str, str | None]:
        return self.template.render({**self.slots, **self.extra, **provided})

    def messages(self, **provided: Any) -> list[dict[str, str]]:
        """The conversation a record keeps: system (if any) and the prompt."""
        rendered = self.render(**provided)
        out = []
        if rendered["system"]:
            out.append({"role": "system", "content": str(rendered["system"])})
        out.append({"role": "user", "content": str(rendered["prompt"])})
        return out

    def request_messages(self, **provided: Any) -> list[dict[str, str]]:
        """What the model is sent: :meth:`messages` with the few-shot examples as earlier
        user/assistant turns between the system message and the prompt."""
        out = self.messages(**provided)
        shots = [
            {"role": role, "content": example[role]}
            for example in self.few_shot
            for role in ("user", "assistant")
        ]
        at = 1 if out[0]["role"] == "system" else 0
        return out[:at] + shots + out[at:]


@dataclass
class Output:
    """One record's worth: the conversation, or an error, plus strategy lineage.

    ``media`` are the payload's media items; ``files`` (path relative to the run directory
    -> bytes) are written by the stage before the record is flushed, so a flushed record
    never names a missing file.
    """

    messages: list[dict[str, str]]
    error: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    media: list[dict[str, Any]] | None = None
    files: dict[str, bytes] = field(default_factory=dict)


class Strategy(Protocol):
    name: str

    def plan(self) -> list[WorkItem]: ...

    def restore(self, records: list[Record]) -> None:
        """Rebuild in-run state (e.g. the task pool) from records already flushed."""

    def run(self, items: list[WorkItem], engine: GenerationEngine) -> list[list[Output]]: ...

    def estimate(self, item: WorkItem) -> tuple[int, int]:
        """(model calls, prompt tokens) an item is expected to cost, for --dry-run."""
        ...


StrategyFactory = Callable[[Recipe], Strategy]
STRATEGIES = plugins.STRATEGIES  # name -> StrategyFactory (plugins.register_strategy)


def compile_all(recipe: Recipe, provided: frozenset[str] = frozenset()) -> list[CompiledTemplate]:
    return [
        compile_template(t, where=f"generate.templates.{i}", provided=provided)
        for i, t in enumerate(recipe.generation.templates)
    ]


def load_few_shot(path: Path) -> list[dict[str, str]]:
    """The examples of a few-shot file (JSONL: {user, assistant, template?, id?} per line);
    a line that is not such an object is a RecipeError naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(str(path), [f"generate.few_shot.file: cannot read: {exc}"]) from None
    examples, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {number}: must be an object {{user, assistant, template?}}")
            continue
        missing = [k for k in ("user", "assistant") if not str(row.get(k) or "").strip()]
        if missing:
            problems.append(f"line {number}: needs {' and '.join(missing)} (non-empty text)")
            continue
        unknown = sorted(set(row) - {"user", "assistant", "template", "id"})
        if unknown:
            problems.append(f"line {number}: unknown field(s) {', '.join(unknown)}")
            continue
        examples.append({k: str(v) for k, v in row.items() if v is not None})
    if problems:
        raise RecipeError(str(path), problems)
    return examples


def pick_few_shot(
    examples: list[dict[str, str]], template: str, k: int, seed: int, index: int
) -> tuple[dict[str, str], ...]:
    """Up to ``k`` examples for request ``index`` of ``template``: those written for that
    template first, then the ones for any template; drawn from ``(seed, index)`` only."""
    own = [e for e in examples if e.get("template") == template]
    shared = [e for e in examples if not e.get("template")]
    candidates = own if len(own) >= k else own + shared
    if not candidates:
        return ()
    rng = request_rng(seed, index, "few-shot")
    return tuple(rng.sample(candidates, min(k, len(candidates))))


def plan_template_items(
    recipe: Recipe,
    count: int,
    provided: frozenset[str] = frozenset(),
    extras: Callable[[int], dict[str, Any]] | None = None,
) -> list[WorkItem]:
    """Items 0..count-1: template by weight and slots from ``(seed, i)`` only.

    With ``generate.edge_cases``, a share of the items get boundary or variant slot values
    (see ``edge_cases``), also from ``(seed, i)`` only; the others sample exactly as without.
    The key covers everything that decides the item's outputs, so an edit to templates,
    backend or strategy makes new items while an unchanged item keeps its key.
    """
    cfg = recipe.generation
    templates = compile_all(recipe, provided)
    edges = compile_edge_cases(recipe, templates)
    weights = [t.config.weight for t in templates]
    decisive = {
        "seed": recipe.seed,
        "backend": cfg.backend.model_dump(mode="json"),
        "strategy": cfg.strategy.model_dump(mode="json"),
    }
    shots = load_few_shot(cfg.few_shot.file) if cfg.few_shot is not None else []
    items = []
    for index in range(count):
        template = request_rng(recipe.seed, index, "template").choices(templates, weights=weights)[
            0
        ]
        edge = edges.pick(template, recipe.seed, index) if edges else None
        slots = template.sample_slots(recipe.seed, index, edge.overrides if edge else None)
        extra = extras(index) if extras else {}
        tag: dict[str, Any] = (
            {"edge_case": edge.tag} if edge else {}
        )  # ordinary items keep their keys
        few = (
            pick_few_shot(shots, template.config.id, cfg.few_shot.per_prompt, recipe.seed, index)
            if cfg.few_shot is not None
            else ()
        )
        if few:  # items without examples keep their keys
            tag["few_shot"] = [[e["user"], e["assistant"]] for e in few]
        key = content_hash(
            {
                "i": index,
                "template": template.config.model_dump(mode="json", by_alias=True),
                "slots": slots,
                "extra": extra,
                **tag,
                **decisive,
            }
        )
        items.append(WorkItem(index, key, template, slots, extra, edge.tag if edge else None, few))
    return items


def single_call_estimate(item: WorkItem) -> tuple[int, int]:
    try:
        return 1, estimate_messages(item.request_messages())
    except RecipeError:  # it will not render: no call (split_renderable rejects it)
        return 0, 0


def split_renderable(items: list[WorkItem]) -> tuple[list[WorkItem], dict[str, Output]]:
    """``(items whose fields render, {key: failed output})``. A template that cannot render
    for one item's slot values (validate renders the first items; a later slot value may
    still divide by zero or run past a render limit) makes that item a rejected record with
    the reason, and the run goes on."""
    ok: list[WorkItem] = []
    failed: dict[str, Output] = {}
    for item in items:
        try:
            item.render()
        except RecipeError as exc:
            why = f"template: {exc.path}: {'; '.join(exc.problems)}"
            note = f"[request {item.index}: template {item.template.config.id} did not render]"
            failed[item.key] = Output([{"role": "user", "content": note}], why)
        else:
            ok.append(item)
    return ok, failed


def item_requests(items: list[WorkItem]) -> list[GenerationRequest]:
    """One request per item: its rendered messages, reference reply and sample index."""
    return [
        GenerationRequest(it.key, it.request_messages(), it.render()["response"], it.index)
        for it in items
    ]


def usage_lineage(*replies: Reply) -> dict[str, Any]:
    """Tokens, cost, attempts and re-asks of all the calls that made one output."""
    return {
        "tokens_in": sum(r.tokens_in for r in replies),
        "tokens_out": sum(r.tokens_out for r in replies),
        "cost_usd": round(sum(r.cost_usd for r in replies), 8),
        "attempts": sum(r.attempts for r in replies),
        "retries": dict(Counter(reason for r in replies for reason in r.retry_reasons)),
        "reasks": sum(r.reasks for r in replies),
        "cached": all(r.cached for r in replies),
    }


def load_lines(source: list[str] | Any, field: str = "instruction") -> list[str]:
    """A list as is; a .txt file one item per line; a .jsonl file the ``field`` of each row."""
    import json
    from pathlib import Path

    if isinstance(source, list):
        return [s.strip() for s in source if s.strip()]
    path = Path(source)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line)[field].strip() for line in text.splitlines() if line.strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


class MediaSynthesis:
    """A strategy whose backend makes one media item per work item (an image, a sound clip):
    the item's rendered prompt is its text (the user turn; a system turn and an assistant
    reply are added when the template has them), the label the template's ``label`` or else
    the class the backend made, and ``media`` the file the backend's result becomes.

    A subclass names its ``kind`` (the seed's salt, ``lineage[kind + "_seed"]``), the reason
    of a result without media (``missing``), and fills in the hooks: the backend, a request,
    whether a result holds media, and the media item and files of one result. Each item's
    media seed comes from ``(recipe seed, index)`` only, so a resumed run makes the same file.
    """

    name: str
    kind: str
    missing: str
    folder: str  # run-relative folder of the files, named by the hash of their bytes

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self._backend: Any = None

    def plan(self) -> list[WorkItem]:
        return plan_template_items(self.recipe, self.recipe.generation.n)

    def restore(self, records: list[Record]) -> None:
        return None

    def estimate(self, item: WorkItem) -> tuple[int, int]:
        return 1, 0  # one media item, no prompt tokens billed

    def item_seed(self, index: int) -> int:
        """The seed of item ``index``'s media: ``(recipe seed, index)`` only."""
        return request_rng(self.recipe.seed, index, self.kind).getrandbits(63)

    # ---- hooks
    def create_backend(self, resolve_model: Callable[[str], str]) -> Any:
        raise NotImplementedError

    def request(self, item: WorkItem, seed: int) -> Any:
        raise NotImplementedError

    def made(self, result: Any) -> bool:
        raise NotImplementedError

    def media(self, result: Any, folder: str) -> tuple[dict[str, Any], dict[str, bytes]]:
        """``(media item, {run-relative path: bytes})`` of a result that holds media."""
        raise NotImplementedError

    # ---- the shared flow
    def run(self, items: list[WorkItem], engine: GenerationEngine) -> list[list[Output]]:
        from synthtune.llm.backends.base import GenerationResult

        if self._backend is None:  # built on first use: text-only runs never load it
            self._backend = self.create_backend(engine.resolve_model)
        requests = [self.request(it, self.item_seed(it.index)) for it in items]
        results = self._backend.render(requests)
        engine.account(
            [
                GenerationResult(
                    text=None, error=r.error or (None if self.made(r) else self.missing)
                )
                for r in results
            ]
        )
        return [
            [self.output(item, request.seed, result)]
            for item, request, result in zip(items, requests, results, strict=True)
        ]

    def output(self, item: WorkItem, seed: int, result: Any, folder: str | None = None) -> Output:
        """One item's record: its texts and label, and its media written under ``folder``
        (default ``self.folder``), or the backend's reason when it made none."""
        rendered = item.render()
        messages = item.messages()
        if rendered["response"]:
            messages.append({"role": "assistant", "content": str(rendered["response"])})
        label = rendered["label"] or result.label
        lineage = {f"{self.kind}_seed": seed, **result.lineage}
        if result.error is not None or not self.made(result):
            return Output(messages, result.error or self.missing, lineage, label)
        media, files = self.media(result, folder or self.folder)
        return Output(messages, None, lineage, label, media=[media], files=files)

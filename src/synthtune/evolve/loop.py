"""``synthtune evolve``: rounds of generate -> filter -> measure -> regenerate.

Each round the bandit splits ``evolve.per_round`` requests over the arms; every arm runs the
generate stage on its own narrowed recipe (``evolve/round-NN/arm-<name>/``, so an interrupted
round resumes its arms' shards like a normal run); the round's records go through the quality
stage together, then a cross-round dedup against the pool. Rewards (acceptance, and landing
where the real data is under-covered) update the bandit; the pool of accepted records is
measured against the real train split. ``evolve/state.json`` is written after each round:
a re-run continues after the last finished round with the same bandit posterior.

When the rounds end, the pool becomes the run's ``generate`` and ``quality`` results (both
stages are marked complete for the current recipe), so ``synthtune run`` continues at mix.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune.config import Recipe, TemplateBackendConfig
from synthtune.context import StageContext
from synthtune.distribution.probe import DistributionProbe
from synthtune.errors import RecipeError
from synthtune.evolve.arms import Arm, build_arms
from synthtune.evolve.bandit import Bandit
from synthtune.generate.stage import GenerateStage
from synthtune.models import ModelResolver
from synthtune.pipeline import ensure_stage, publish_results
from synthtune.quality.dedup import minhash_clusters
from synthtune.quality.stage import QualityStage
from synthtune.records import Record, content_hash
from synthtune.review.feedback import few_shot_rows
from synthtune.store import RunStore, atomic_write_text, review_decisions

CROSS_ROUND_DEDUP = 0.85  # MinHash Jaccard above which a new record repeats the pool


def check_evolve(recipe: Recipe) -> None:
    cfg, gen = recipe.evolve, recipe.generation
    problems = []
    known = {t.id for t in gen.templates}
    for i, template in enumerate(cfg.templates or []):
        if template not in known:
            problems.append(
                f"evolve.templates.{i}: unknown template {template!r}; "
                f"templates: {', '.join(sorted(known))}"
            )
    strategies = [s.type for s in (cfg.strategies or [gen.strategy])]
    if "doc-qa" in strategies:
        problems.append(
            "evolve.strategies: doc-qa cannot be an arm (it walks a fixed list of document "
            "chunks, so every round would regenerate the same questions)"
        )
    if cfg.temperatures and isinstance(gen.backend, TemplateBackendConfig):
        problems.append("evolve.temperatures: the template backend has no temperature")
    if problems:
        raise RecipeError(str(recipe.source), problems)


@dataclass
class RoundOutcome:
    number: int
    allocation: dict[str, int]
    generated: int
    accepted: int
    measures: dict[str, Any]
    arms: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class Evolution:
    """One evolve run over ``runs_root/<name>``; ``run(rounds)`` is resumable between rounds."""

    def __init__(self, recipe: Recipe, runs_root: Path | str = "runs", quiet: bool = False):
        check_evolve(recipe)
        self.recipe = recipe
        self.store = RunStore(Path(runs_root) / recipe.name)
        self.ctx = StageContext(recipe=recipe, store=self.store, quiet=quiet)
        self.arms = {arm.name: arm for arm in build_arms(recipe)}
        self.state_path = self.store.root / "evolve" / "state.json"
        self.probe: DistributionProbe | None = None

    # ----------------------------------------------------------------- state
    def _load_state(self) -> dict[str, Any]:
        if self.state_path.exists():
            state: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
            if state.get("arms") == sorted(self.arms) and state.get("seed") == self.recipe.seed:
                return state
            self.ctx.log("[yellow]evolve: arms or seed changed; starting over[/]")
        bandit = Bandit(list(self.arms), self.recipe.evolve.policy, self.recipe.seed)
        return {
            "arms": sorted(self.arms),
            "seed": self.recipe.seed,
            "rounds": [],
            "bandit": bandit.to_state(),
            "pool": [],
        }

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.state_path, json.dumps(state, indent=1))

    # ----------------------------------------------------------------- rounds
    def run(self, rounds: int | None = None) -> list[RoundOutcome]:
        total = rounds or self.recipe.evolve.rounds
        state = self._load_state()
        bandit = Bandit.from_state(state["bandit"])
        bandit.policy = self.recipe.evolve.policy  # statistics carry over, the policy is current
        pool = self._pool(state)
        threshold = self.recipe.mix.stop_when.wasserstein_below
        if total < len(state["rounds"]):
            self.ctx.log(
                f"[yellow]evolve: {len(state['rounds'])} rounds are already done (asked for "
                f"{total}); nothing to generate[/]"
            )
        if self.recipe.evolve.review_feedback and self._apply_reviews(state, bandit, pool):
            self._save_state(state)
        for number in range(len(state["rounds"]) + 1, total + 1):
            last = state["rounds"][-1]["measures"] if state["rounds"] else {}
            upper = last.get("wasserstein_upper")
            if self.recipe.evolve.stop_at_threshold and upper is not None and upper < threshold:
                self.ctx.log(f"evolve: pool within {threshold} of the real data; stopping")
                break
            outcome = self._round(number, bandit, pool)
            state["rounds"].append(outcome.as_dict())
            state["bandit"] = bandit.to_state()
            state["pool"] = [r.id for r in pool]
            self._save_state(state)
            # published after every round, so the review app can sample it between rounds
            self._publish(state, pool)
            self.ctx.log(
                f"evolve: round {number}: {outcome.accepted}/{outcome.generated} accepted, "
                f"distance {outcome.measures.get('wasserstein')}"
            )
        self._publish(state, pool)
        return [RoundOutcome(**r) for r in state["rounds"]]

    def _round(self, number: int, bandit: Bandit, pool: list[Record]) -> RoundOutcome:
        allocation = bandit.allocate(self.recipe.evolve.per_round, number)
        round_dir = self.store.root / "evolve" / f"round-{number:02d}"
        few_shot = self._few_shot(number)
        records: list[Record] = []
        for name, requests in allocation.items():
            if requests:
                records += self._generate(self.arms[name], requests, number, round_dir, few_shot)
        judged = self._filter(records, round_dir)
        self._dedup_against(pool, judged)
        useful = self._useful(pool, judged)
        arms_table = []
        for name in self.arms:
            mine = [
                (r, u)
                for r, u in zip(judged, useful, strict=True)
                if r.lineage["evolve_arm"] == name
            ]
            accepted = sum(r.status == "accepted" for r, _ in mine)
            # a reward per request in [0, 1], even when a request yields several records
            per_record = [self._reward(r, u) for r, u in mine]
            reward = sum(per_record) / len(per_record) * allocation[name] if per_record else 0.0
            bandit.update(name, allocation[name], reward, accepted)
            arms_table.append(
                {
                    "arm": name,
                    "requests": allocation[name],
                    "accepted": accepted,
                    "reward": round(reward, 3),
                }
            )
        for record, is_useful in zip(judged, useful, strict=True):
            record.lineage["evolve_reward"] = self._reward(record, is_useful)
        pool.extend(r for r in judged if r.status == "accepted")
        self.store.write_table("evolve", f"round-{number:02d}", judged)
        measures = self._measure(pool)
        return RoundOutcome(
            number,
            allocation,
            len(judged),
            sum(r.status == "accepted" for r in judged),
            measures,
            arms_table,
        )

    def _apply_reviews(self, state: dict[str, Any], bandit: Bandit, pool: list[Record]) -> int:
        """Human review between rounds: a rejected pool record leaves the pool and its arm
        gives back the reward and the acceptance it was credited with (once per record; a
        verdict changed later, e.g. accept then reject, is applied again). Returns how many
        decisions were new."""
        decisions = review_decisions(self.store.root)
        # id -> the verdict already applied; a later, different verdict is applied again
        seen = state.get("reviewed", {})
        applied: dict[str, str] = seen if isinstance(seen, dict) else dict.fromkeys(seen, "")
        counts = state.setdefault("review", {})
        fresh = 0
        for record in list(pool):
            decision = decisions.get(record.id)
            if decision is None or applied.get(record.id) == decision.decision:
                continue
            first = record.id not in applied
            applied[record.id] = decision.decision
            fresh += 1
            arm = record.lineage["evolve_arm"]
            tally = counts.setdefault(arm, {"reviewed": 0, "rejected": 0})
            tally["reviewed"] += int(first)
            if decision.decision == "reject":
                tally["rejected"] += 1
                pool.remove(record)
                bandit.update(arm, 0, -float(record.lineage.get("evolve_reward", 0.0)), -1)
        state["reviewed"] = applied
        state["bandit"] = bandit.to_state()
        state["pool"] = [r.id for r in pool]
        return fresh

    def _reward(self, record: Record, useful: bool) -> float:
        if record.status != "accepted":
            return 0.0
        w = self.recipe.evolve.distance_weight
        return (1 - w) + (w if useful else 0.0)

    def _context(self, recipe: Recipe, root: Path) -> StageContext:
        # One local model for every arm: resolved against the main run folder and recipe.
        models = ModelResolver(self.store.root, self.recipe, log=self.ctx.log)
        return StageContext(
            recipe=recipe,
            store=RunStore(root),
            quiet=self.ctx.quiet,
            models=models,
            console=self.ctx.console,
        )

    def _few_shot(self, number: int) -> Path | None:
        """The reviewers' edits of earlier rounds' records as a few-shot file for round
        ``number`` (content-named, so a resumed round reads the examples it started with),
        or None when there are none or ``evolve.review_feedback`` is off."""
        if not self.recipe.evolve.review_feedback:
            return None
        decisions = review_decisions(self.store.root)
        if not any(d.decision == "edit" for d in decisions.values()):
            return None
        earlier = [
            r
            for n in range(1, number)  # finished rounds: their tables are written
            for r in self.store.read_table("evolve", f"round-{n:02d}")
        ]
        rows = few_shot_rows(earlier, decisions)
        if not rows:
            return None
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        path = self.store.root / "evolve" / f"few-shot-{content_hash(text)[:12]}.jsonl"
        if not path.exists():
            atomic_write_text(path, text)
        return path

    def _generate(
        self, arm: Arm, requests: int, number: int, round_dir: Path, few_shot: Path | None = None
    ) -> list[Record]:
        recipe = arm.recipe(self.recipe, requests, number, few_shot)
        ctx = self._context(recipe, round_dir / f"arm-{content_hash(arm.name)[:8]}")
        stage = GenerateStage()
        ensure_stage(ctx, stage, recipe.model_dump(mode="json")["generate"] | {"seed": recipe.seed})
        records = ctx.store.read_table(stage.name, "dataset")
        for record in records:
            record.lineage["evolve_arm"] = arm.name
            record.lineage["round"] = number
        return records

    def _filter(self, records: list[Record], round_dir: Path) -> list[Record]:
        ctx = self._context(self.recipe, round_dir / "filter")
        ctx.store.write_table("generate", "dataset", records)
        stage = QualityStage()
        ensure_stage(ctx, stage, sorted(r.id for r in records))
        return ctx.store.read_table(stage.name, "dataset")

    def _dedup_against(self, pool: list[Record], judged: list[Record]) -> None:
        """Reject new records that repeat an accepted record of an earlier round."""
        fresh = [r for r in judged if r.status == "accepted"]
        if not pool or not fresh:
            return
        texts = [r.payload.text("all") for r in pool + fresh]
        seen = {r.id for r in pool}
        for cluster in minhash_clusters(texts, CROSS_ROUND_DEDUP, 128, 5):
            if any(i < len(pool) for i in cluster):
                for i in cluster:
                    if i >= len(pool):
                        fresh[i - len(pool)].reject("dedup: repeats a record of an earlier round")
        for record in fresh:
            if record.status == "accepted" and record.id in seen:
                record.reject("dedup: repeats a record of an earlier round")

    # ----------------------------------------------------------------- measuring
    def _probe(self) -> DistributionProbe | None:
        if self.recipe.mix.real is None:
            return None
        if self.probe is None:
            self.probe = DistributionProbe.from_recipe(self.recipe)
        return self.probe

    def _useful(self, pool: list[Record], judged: list[Record]) -> list[bool]:
        probe = self._probe()
        if probe is None:
            return [True] * len(judged)
        return probe.under_covered(pool, judged)

    def _measure(self, pool: list[Record]) -> dict[str, Any]:
        probe = self._probe()
        if probe is None:
            return {"pool": len(pool), "wasserstein": None}
        # Off-distribution records stay in the pool but mixing never injects them (they fill
        # no real cluster), so the distance is that of the usable part.
        usable = probe.in_support(pool)
        measures = {"pool": len(pool), "usable": len(usable), **probe.measure(usable)}
        if usable:
            coverage = probe.coverage(usable)
            measures["distinct_2"] = round(coverage["distinct"]["synthetic"]["distinct_2"], 4)
            slots = coverage["slots"]
            if slots:
                measures["slot_coverage"] = round(sum(slots.values()) / len(slots), 4)
        return measures

    # ----------------------------------------------------------------- results
    def _pool(self, state: dict[str, Any]) -> list[Record]:
        wanted = set(state["pool"])
        pool = []
        for round_ in state["rounds"]:
            for record in self.store.read_table("evolve", f"round-{round_['number']:02d}"):
                if record.id in wanted and record.status == "accepted":
                    pool.append(record)
        return pool

    def _publish(self, state: dict[str, Any], pool: list[Record]) -> None:
        """Every round's records become the run's generate/quality results; later stages are
        forgotten (their inputs changed), so ``synthtune run`` continues at mix. Nothing is
        touched when the rounds and the pool are what was published last time."""
        published = content_hash([len(state["rounds"]), [r.id for r in pool]])
        done = self.store.stage_state("quality") or {}
        if done.get("summary", {}).get("evolve_publication") == published:
            return
        records = [
            r
            for round_ in state["rounds"]
            for r in self.store.read_table("evolve", f"round-{round_['number']:02d}")
        ]
        tail = {
            "records_out": len(pool),
            "evolved_rounds": len(state["rounds"]),
            "evolve_publication": published,
        }
        reasons = Counter(x.split(" (")[0] for r in records for x in r.reasons)
        results = {
            "generate": (records, {"records_in": len(records), "records": len(records), **tail}),
            "quality": (
                records,
                {
                    "records_in": len(records),
                    "funnel": [
                        {"tier": "generated", "remaining": len(records)},
                        {"tier": "accepted (all rounds)", "remaining": len(pool)},
                    ],
                    "rejected_reasons": dict(reasons.most_common(8)),
                    **tail,
                },
            ),
        }
        publish_results(self.recipe, self.store.root.parent, results)
        self.store.write_json(
            "evolve",
            "summary",
            {
                "rounds": state["rounds"],
                "arms": Bandit.from_state(state["bandit"]).table(),
                "policy": self.recipe.evolve.policy,
                "review": state.get("review", {}),
                "threshold": self.recipe.mix.stop_when.wasserstein_below,
            },
        )

"""The evolve loop end to end on the offline arms setting: it learns, resumes, and hands over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.config import load_recipe
from synthtune.errors import RecipeError
from synthtune.evolve.loop import Evolution
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore
from synthtune.testing.arms_setting import write_setting


def test_bandit_moves_requests_to_the_arm_that_fits(tmp_path: Path) -> None:
    recipe = load_recipe(write_setting(tmp_path, evolve={"rounds": 4, "per_round": 60}))
    rounds = Evolution(recipe, tmp_path / "runs", quiet=True).run()
    assert [r.number for r in rounds] == [1, 2, 3, 4]
    first, last = rounds[0].allocation, rounds[-1].allocation
    assert first["triage"] == pytest.approx(15, abs=7)  # no knowledge yet: about even
    assert last["triage"] > 40 and min(last.values()) >= 1  # learned, still exploring
    # boilerplate replies are mostly rejected; the pool only grows
    arms = {a["arm"]: a for a in rounds[0].arms}
    assert arms["boilerplate"]["accepted"] < arms["boilerplate"]["requests"] / 2
    pools = [r.measures["pool"] for r in rounds]
    assert pools == sorted(pools) and pools[-1] == sum(r.accepted for r in rounds)
    assert all(r.measures["wasserstein"] is not None for r in rounds)


def test_resume_between_rounds_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    path = write_setting(tmp_path / "a", evolve={"rounds": 3, "per_round": 30})
    recipe = load_recipe(path)
    whole = Evolution(recipe, tmp_path / "whole", quiet=True).run()
    Evolution(recipe, tmp_path / "split", quiet=True).run(rounds=1)
    resumed = Evolution(recipe, tmp_path / "split", quiet=True).run(rounds=3)
    assert [r.allocation for r in resumed] == [r.allocation for r in whole]
    assert [r.measures for r in resumed] == [r.measures for r in whole]


def test_evolved_pool_feeds_the_pipeline_from_mix(tmp_path: Path) -> None:
    path = write_setting(tmp_path, evolve={"rounds": 2, "per_round": 30})
    recipe = load_recipe(path)
    Evolution(recipe, tmp_path / "runs", quiet=True).run()
    result = run_recipe(recipe, tmp_path / "runs", quiet=True, until="mix")
    status = {o.name: o.status for o in result.outcomes}
    assert status == {"generate": "skipped", "quality": "skipped", "mix": "ran"}
    mix = result.outcomes[-1].summary
    assert mix["splits"]["train"]["synthetic"] > 0 and mix["rounds"]


def test_evolve_cli_writes_the_report(tmp_path: Path) -> None:
    path = write_setting(tmp_path, evolve={"rounds": 2, "per_round": 20})
    result = CliRunner().invoke(app, ["evolve", str(path), "--out", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r" / "arms" / "report.html").read_text(encoding="utf-8")
    assert "Self-evolving rounds" in html and "requests per arm" in html


def test_unknown_arm_template_is_a_recipe_error(tmp_path: Path) -> None:
    path = write_setting(tmp_path, evolve={"templates": ["triage", "nope"]})
    with pytest.raises(RecipeError, match=r"evolve\.templates\.1: unknown template 'nope'"):
        Evolution(load_recipe(path), tmp_path / "runs")


def test_review_rejections_between_rounds_reach_pool_and_bandit(tmp_path: Path) -> None:
    from synthtune.decisions import Decision
    from synthtune.evolve.bandit import Bandit
    from synthtune.store import ReviewStore

    recipe = load_recipe(write_setting(tmp_path, evolve={"rounds": 2, "per_round": 30}))
    runs = tmp_path / "runs"
    Evolution(recipe, runs, quiet=True).run()
    run_dir = runs / "arms"
    state = json.loads((run_dir / "evolve" / "state.json").read_text())
    before = Bandit.from_state(state["bandit"]).stats
    quality = {r.id: r for r in RunStore(run_dir).read_table("quality", "dataset")}
    victim = quality[state["pool"][0]]
    assert victim.status == "accepted"  # the published dataset is what the review app shows
    arm = victim.lineage["evolve_arm"]
    store = ReviewStore(run_dir)
    store.save(Decision(record_id=victim.id, decision="reject", reason="wrong advice"))
    store.close()
    Evolution(recipe, runs, quiet=True).run(rounds=2)  # no new round: reviews still apply
    state = json.loads((run_dir / "evolve" / "state.json").read_text())
    after = Bandit.from_state(state["bandit"]).stats
    assert victim.id not in state["pool"]
    assert after[arm].accepted == before[arm].accepted - 1
    assert after[arm].reward < before[arm].reward
    assert state["review"][arm] == {"reviewed": 1, "rejected": 1}
    Evolution(recipe, runs, quiet=True).run(rounds=2)  # applied once, not again
    again = json.loads((run_dir / "evolve" / "state.json").read_text())
    assert Bandit.from_state(again["bandit"]).stats[arm] == after[arm]


def test_rerun_with_nothing_new_keeps_downstream_results(tmp_path: Path) -> None:
    recipe = load_recipe(write_setting(tmp_path, evolve={"rounds": 1, "per_round": 20}))
    Evolution(recipe, tmp_path / "runs", quiet=True).run()
    run_recipe(recipe, tmp_path / "runs", quiet=True, until="mix")
    run_dir = tmp_path / "runs" / "arms"
    before = {p.name: p.read_bytes() for p in (run_dir / "mix").glob("*.parquet")}
    state = json.loads((run_dir / "state.json").read_text())["stages"]
    Evolution(recipe, tmp_path / "runs", quiet=True).run()  # nothing to do
    after = {p.name: p.read_bytes() for p in (run_dir / "mix").glob("*.parquet")}
    assert set(before) == {"train.parquet", "val.parquet", "test.parquet"}
    assert after == before  # byte-equal: mix was neither invalidated nor rewritten
    assert json.loads((run_dir / "state.json").read_text())["stages"] == state
    again = run_recipe(recipe, tmp_path / "runs", quiet=True, until="mix")
    assert [o.status for o in again.outcomes] == ["skipped", "skipped", "skipped"]


def test_policy_comes_from_the_recipe_on_resume(tmp_path: Path) -> None:
    path = write_setting(tmp_path, evolve={"rounds": 1, "per_round": 40})
    Evolution(load_recipe(path), tmp_path / "runs", quiet=True).run()
    changed = load_recipe(path).model_copy(deep=True)
    changed.evolve.policy = "uniform"
    changed.evolve.rounds = 2
    rounds = Evolution(changed, tmp_path / "runs", quiet=True).run()
    assert sorted(rounds[-1].allocation.values()) == [10, 10, 10, 10]


def test_doc_qa_cannot_be_an_arm(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text("A contract between two parties. " * 20, encoding="utf-8")
    strategies = [{"type": "template-fill"}, {"type": "doc-qa", "documents": ["doc.txt"]}]
    path = write_setting(tmp_path, evolve={"strategies": strategies})
    with pytest.raises(RecipeError, match="doc-qa cannot be an arm"):
        Evolution(load_recipe(path), tmp_path / "runs")


def _hidden_defect_run(tmp_path: Path, feedback: bool) -> dict:
    """Round 1, a simulated expert reviews half of the accepted records, round 2."""
    from synthtune.testing.arms_setting import simulate_review

    evolve = {
        "rounds": 2,
        "per_round": 60,
        "distance_weight": 0.0,  # acceptance only: overdose looks as good as triage
        "review_feedback": feedback,
    }
    recipe = load_recipe(write_setting(tmp_path, evolve=evolve, hidden_defect=True))
    runs = tmp_path / "runs"
    Evolution(recipe, runs, quiet=True).run(rounds=1)
    first = RunStore(runs / "arms").read_table("evolve", "round-01")
    simulate_review(runs / "arms", [r for r in first if r.status == "accepted"], 0.5, 0.0, 1)
    Evolution(recipe, runs, quiet=True).run(rounds=2)
    return json.loads((runs / "arms" / "evolve" / "state.json").read_text())


def test_expert_rejections_steer_the_next_round_only_with_review_feedback(tmp_path: Path) -> None:
    from synthtune.testing.arms_setting import truly_bad

    on = _hidden_defect_run(tmp_path / "on", True)
    off = _hidden_defect_run(tmp_path / "off", False)
    assert on["rounds"][0]["allocation"] == off["rounds"][0]["allocation"]  # same seeds
    assert on["review"]["overdose"]["rejected"] >= 3 and "review" not in off
    # the arm the experts rejected gets the minimum next round, unless ignored
    assert on["rounds"][1]["allocation"]["overdose"] == 1
    assert off["rounds"][1]["allocation"]["overdose"] > 10
    from synthtune.store import review_decisions

    for run, state in (("on", on), ("off", off)):
        rejected = {
            k
            for k, d in review_decisions(tmp_path / run / "runs" / "arms").items()
            if d.decision == "reject"
        }
        assert rejected
        # with feedback every record the expert rejected left the pool; without, they stay
        assert bool(rejected & set(state["pool"])) == (run == "off")
    round_one = RunStore(tmp_path / "on" / "runs" / "arms").read_table("evolve", "round-01")
    assert {r.id for r in round_one if truly_bad(r) and r.status == "accepted"} >= rejected


def test_reviewers_edits_become_the_next_rounds_few_shot_examples(tmp_path: Path) -> None:
    from synthtune.decisions import Decision
    from synthtune.store import ReviewStore

    recipe = load_recipe(write_setting(tmp_path, evolve={"rounds": 2, "per_round": 20}))
    runs = tmp_path / "runs"
    Evolution(recipe, runs, quiet=True).run(rounds=1)
    first = RunStore(runs / "arms").read_table("evolve", "round-01")
    edited = next(r for r in first if r.status == "accepted" and r.lineage["template"] == "triage")
    store = ReviewStore(runs / "arms")
    store.save(Decision(record_id=edited.id, decision="edit", edited_reply="Corrected note."))
    store.close()
    Evolution(recipe, runs, quiet=True).run(rounds=2)
    (shots,) = (runs / "arms" / "evolve").glob("few-shot-*.jsonl")
    rows = [json.loads(line) for line in shots.read_text(encoding="utf-8").splitlines()]
    assert rows == [
        {
            "id": edited.id,
            "template": "triage",
            "user": edited.payload.messages[-2].content,
            "assistant": "Corrected note.",
        }
    ]
    second = RunStore(runs / "arms").read_table("evolve", "round-02")
    for record in second:  # the edit is a triage example: shown to triage requests only
        shown = record.lineage.get("few_shot")
        assert shown == ([edited.id] if record.lineage["template"] == "triage" else None)
    assert any(r.lineage["template"] == "triage" for r in second)

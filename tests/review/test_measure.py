"""Review measurements on simulated reviews: precision/recall intervals cover the truth, the
batch rule's wrong-accept rate stays within its risk, agreement matches scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from synthtune.review.measure import (
    ACCEPTED,
    Stratum,
    alpha,
    batch_decision,
    kappa,
    sequential_decision,
    tier_quality,
    trust_warning,
)

# tier outcome -> (records in the population, true share of bad records)
POPULATION = {ACCEPTED: (4000, 0.05), "fluency": (600, 0.6), "rules": (400, 0.85)}


def _simulate(rng: np.random.Generator, reviewer_error: float, per_stratum: int):  # type: ignore[no-untyped-def]
    truth: dict[str, np.ndarray] = {}
    strata = {}
    for name, (size, share) in POPULATION.items():
        bad = rng.random(size) < share
        truth[name] = bad
        sample = rng.choice(size, per_stratum, replace=False)
        seen = bad[sample] ^ (rng.random(per_stratum) < reviewer_error)  # the reviewer errs
        strata[name] = Stratum(size, per_stratum, int(seen.sum()))
    all_bad = sum(int(t.sum()) for t in truth.values())
    true = {}
    for tier in ("fluency", "rules"):
        true[tier] = (truth[tier].mean(), truth[tier].sum() / all_bad)
    rejected = np.concatenate([truth["fluency"], truth["rules"]])
    true["all"] = (rejected.mean(), rejected.sum() / all_bad)
    return strata, true


@pytest.mark.parametrize("reviewer_error", [0.0, 0.05])
def test_precision_and_recall_intervals_cover_the_truth(reviewer_error: float) -> None:
    rng = np.random.default_rng(7)
    covered = {(t, m): 0 for t in ("fluency", "rules", "all") for m in ("precision", "recall")}
    runs = 200
    for run in range(runs):
        strata, true = _simulate(rng, reviewer_error, per_stratum=60)
        estimates = tier_quality(strata, reviewer_error=reviewer_error, seed=run, draws=2000)
        for (tier, metric), _ in covered.items():
            estimate = estimates[tier][metric]
            value = true[tier][0 if metric == "precision" else 1]
            covered[(tier, metric)] += estimate.low <= value <= estimate.high
    shares = {key: n / runs for key, n in covered.items()}
    assert all(share >= 0.9 for share in shares.values()), shares


def test_point_estimates_weigh_strata_back_to_the_population() -> None:
    strata = {
        ACCEPTED: Stratum(900, 30, 3),  # 10 % bad of 900 kept: 90 bad
        "fluency": Stratum(100, 30, 27),  # 90 % bad of 100 rejected: 90 bad
    }
    est = tier_quality(strata)
    assert est["fluency"]["precision"].value == pytest.approx(0.9)
    assert est["fluency"]["recall"].value == pytest.approx(0.5)  # 90 of the 180 bad
    assert est["all"]["recall"].value == pytest.approx(0.5)
    assert est["fluency"]["recall"].low < 0.5 < est["fluency"]["recall"].high
    with pytest.raises(ValueError, match="reviewer_error"):
        tier_quality(strata, reviewer_error=0.5)


def test_the_batch_rule_wrongly_accepts_within_its_risk() -> None:
    rng = np.random.default_rng(3)
    aql, risk = 0.05, 0.05
    wrong = accepted_good = 0
    for _ in range(1000):
        p = rng.uniform(0.05, 0.15)  # every one of these batches is worse than the AQL
        decision = sequential_decision(lambda k, p=p: int(rng.binomial(k, p)), aql, risk, 25, 300)
        wrong += decision.decision == "accept"
    assert wrong / 1000 <= risk
    for _ in range(200):  # and good batches do get accepted
        decision = sequential_decision(lambda k: int(rng.binomial(k, 0.005)), aql, risk, 25, 300)
        accepted_good += decision.decision == "accept"
    assert accepted_good / 200 >= 0.7


def test_a_batch_decision_states_its_bound() -> None:
    clean = batch_decision(0, 100, aql=0.05, risk=0.05)
    assert clean.decision == "accept"
    assert clean.bound[1] == pytest.approx(1 - 0.05 ** (1 / 100))  # 2.95 %
    assert "defect rate <= 0.030 with 95 % confidence" in clean.as_dict()["statement"]
    assert batch_decision(20, 100, aql=0.05, risk=0.05).decision == "reject"
    assert batch_decision(4, 100, aql=0.05, risk=0.05).decision == "review more"


def test_kappa_is_scikit_learns_with_an_interval() -> None:
    rng = np.random.default_rng(0)
    expert = rng.choice(["accept", "reject"], 300, p=[0.7, 0.3])
    judge = np.where(rng.random(300) < 0.15, rng.choice(["accept", "reject"], 300), expert)
    est = kappa(list(expert), list(judge))
    assert est.value == pytest.approx(cohen_kappa_score(expert, judge))
    assert est.low < est.value < est.high and est.high - est.low < 0.25
    assert trust_warning("judge", est) is None
    noisy = kappa(list(expert), list(rng.choice(["accept", "reject"], 300)))
    warning = trust_warning("judge", noisy)
    assert warning is not None and "do not trust" in warning


def test_alpha_handles_missing_ratings() -> None:
    perfect = alpha([["a", "b", "a", None], ["a", "b", "a", "b"]])
    assert perfect.value == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    truth = rng.choice(["a", "b"], 200)
    raters = [
        [t if rng.random() > 0.1 else ("b" if t == "a" else "a") for t in truth] for _ in range(3)
    ]
    est = alpha(raters)
    assert 0.5 < est.value < 0.8  # three raters, 10 % errors each
    assert est.low <= est.value <= est.high


def test_review_stats_prints_each_tiers_measures_from_the_runs_reviews(
    run_copy, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import yaml
    from typer.testing import CliRunner

    from synthtune.cli import app
    from synthtune.decisions import Decision
    from synthtune.review.app import sampled_records
    from synthtune.review.measure import measure_reviews
    from synthtune.store import ReviewStore, RunStore, review_decisions

    lock = run_copy / "recipe.lock.yaml"
    locked = yaml.safe_load(lock.read_text(encoding="utf-8"))
    locked["recipe"]["quality"]["review"]["aql"] = 0.2
    lock.write_text(yaml.safe_dump(locked, allow_unicode=True), encoding="utf-8")
    sample = sampled_records(run_copy)
    outcomes = {r.quality["review"]["outcome"] for r in sample}
    assert "accepted" in outcomes and len(outcomes) >= 2  # rejected records are sampled too
    store = ReviewStore(run_copy)
    # the expert agrees with every rejection and finds every accepted record fine
    for record in sample:
        verdict = "accept" if record.status == "accepted" else "reject"
        store.save(Decision(record_id=record.id, decision=verdict, reason="x", reviewer="ann"))
    store.close()
    records = RunStore(run_copy).read_table("quality", "dataset")
    measured = measure_reviews(records, review_decisions(run_copy), aql=0.2)
    for metrics in measured["tiers"].values():
        assert metrics["precision"]["value"] == 1.0  # every rejection was right
        assert metrics["recall"]["ci"][0] > 0
    assert measured["batch"]["bad"] == 0
    result = CliRunner().invoke(app, ["review-stats", str(run_copy)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "the tiers, measured by the reviews" in output
    assert "100% (" in output  # precision with its interval
    assert "batch: " in output and "aql 0.2" in output


def test_judge_agreement_with_the_experts_is_kappa_on_pass_and_fail() -> None:
    from synthtune.decisions import Decision
    from synthtune.records import Message, Payload, Record
    from synthtune.review.measure import measure_reviews

    records, decisions, judge, expert = [], {}, [], []
    rng = np.random.default_rng(2)
    for i in range(120):
        payload = Payload(
            messages=[
                Message(role="user", content=f"question {i}"),
                Message(role="assistant", content=f"answer {i}"),
            ]
        )
        record = Record.create("synthetic", payload)
        good = rng.random() < 0.7
        score = 4 if (good if rng.random() < 0.9 else not good) else 2  # 10 % disagreement
        record.quality["judge"] = {"score": score, "reason": "r"}
        if score < 3:
            record.reject(f"judge: score {score} below 3 (r)")
        records.append(record)
        verdict = "accept" if good else "reject"
        decisions[record.id] = Decision(record_id=record.id, decision=verdict, reason="x")
        judge.append(score >= 3)
        expert.append(good)
    measured = measure_reviews(records, decisions, judge_min_score=3)
    agreement = measured["judge_agreement"]
    assert agreement["items"] == 120
    assert agreement["kappa"]["value"] == pytest.approx(cohen_kappa_score(judge, expert), abs=1e-4)
    assert agreement["warning"] is None  # ~0.75: substantial
    judge_tier = measured["tiers"]["judge"]
    assert judge_tier["precision"]["value"] == pytest.approx(
        sum(not e for j, e in zip(judge, expert, strict=True) if not j) / judge.count(False),
        abs=1e-4,
    )


def test_refit_finds_the_cut_with_the_target_precision_at_the_highest_recall() -> None:
    from synthtune.review.measure import refit_threshold

    # perplexities of reviewed records: bad ones run high, a few good ones too
    scores = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    bad = [False, False, False, False, True, False, True, True, True, True]
    fit = refit_threshold(scores, bad, [1.0] * 10, target_precision=0.8)
    # reject above 40: 5 of 6 bad (83 %), every bad one caught
    assert fit["cut"] == 40 and fit["precision"] == pytest.approx(5 / 6)
    assert fit["recall"] == pytest.approx(1.0)
    strict = refit_threshold(scores, bad, [1.0] * 10, target_precision=1.0)
    assert strict["cut"] == 60 and strict["recall"] == pytest.approx(0.8)
    # weights move it: the good record at 60 stands for 10 records
    weighted = refit_threshold(scores, bad, [1.0] * 5 + [10.0] + [1.0] * 4, 0.8)
    assert weighted["cut"] == 60
    judge = refit_threshold(
        [1, 2, 3, 4, 5], [True, True, False, False, False], [1.0] * 5, 0.9, False
    )
    assert judge["cut"] == 3  # reject below 3: min_score 3
    assert len(judge["curve"]) == 5


def test_review_stats_writes_a_patch_that_one_command_applies(run_copy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import yaml
    from typer.testing import CliRunner

    from synthtune.cli import app
    from synthtune.config import load_recipe
    from synthtune.decisions import Decision
    from synthtune.review.app import sampled_records
    from synthtune.store import ReviewStore

    sample = [r for r in sampled_records(run_copy) if "perplexity" in r.quality]
    ranked = sorted(sample, key=lambda r: r.quality["perplexity"])
    store = ReviewStore(run_copy)
    for i, record in enumerate(ranked):  # the expert finds the least fluent third bad
        verdict = "reject" if i >= 2 * len(ranked) // 3 else "accept"
        store.save(Decision(record_id=record.id, decision=verdict, reason="x"))
    store.close()
    from synthtune.report.html import build_report

    html = build_report(run_copy).read_text(encoding="utf-8")
    assert "The tiers, measured by the reviews" in html
    assert 'alt="precision and recall of each perplexity cut-off' in html
    patch = tmp_path / "patch.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["review-stats", str(run_copy), "--patch", str(patch)])
    assert result.exit_code == 0, result.output
    refitted = yaml.safe_load(patch.read_text())["quality"]["perplexity"]
    assert refitted["mode"] == "absolute"
    cut = ranked[2 * len(ranked) // 3 - 1].quality["perplexity"]
    assert refitted["max"] == pytest.approx(cut)
    from tests.conftest import write_recipe

    (tmp_path / "r").mkdir()
    recipe = write_recipe(tmp_path / "r")
    result = runner.invoke(app, ["patch", str(recipe), str(patch)])
    assert result.exit_code == 0, result.output
    assert load_recipe(recipe).quality.perplexity.max == pytest.approx(cut)
    assert (tmp_path / "r" / "recipe.yaml.bak").exists()
    bad = tmp_path / "bad.yaml"  # a patch that makes the recipe invalid changes nothing
    bad.write_text("quality: {perplexity: {max: -1}}\n")
    result = runner.invoke(app, ["patch", str(recipe), str(bad)])
    assert result.exit_code == 2 and "quality.perplexity.max" in " ".join(result.output.split())
    assert load_recipe(recipe).quality.perplexity.max == pytest.approx(cut)  # left as it was


def test_two_reviewers_are_kept_apart_and_their_agreement_is_measured(run_copy) -> None:  # type: ignore[no-untyped-def]
    import httpx
    from typer.testing import CliRunner

    from synthtune.cli import app
    from synthtune.review.app import ReviewServer, create_app, sampled_records
    from synthtune.review.measure import expert_agreement
    from synthtune.store import review_decisions, reviewer_decisions

    sample = sampled_records(run_copy)
    for reviewer in ("ann", "bob"):
        with ReviewServer(create_app(run_copy, "t", ["template"], 0.2, reviewer)) as server:
            headers = {"X-Review-Token": "t"}
            items = httpx.get(f"{server.url}/api/items", headers=headers).json()
            assert all(i["decision"] is None for i in items)  # bob does not see ann's
            for n, record in enumerate(sample):
                # bob disagrees with ann on every fourth record
                good = record.status == "accepted"
                if reviewer == "bob" and n % 4 == 0:
                    good = not good
                body = {"record_id": record.id, "decision": "accept" if good else "reject"}
                if not good:
                    body["reason"] = "bad"
                answer = httpx.post(f"{server.url}/api/decisions", json=body, headers=headers)
                assert answer.status_code == 200 and answer.json()["saved"]["reviewer"] == reviewer
    both = reviewer_decisions(run_copy)
    assert sorted(both) == ["ann", "bob"] and all(len(d) == len(sample) for d in both.values())
    assert len(review_decisions(run_copy)) == len(sample)  # the mix applies the latest one
    measured = expert_agreement(both)
    assert measured is not None and measured["shared_items"] == len(sample)
    (pair,) = measured["pairs"]
    ann = [both["ann"][r.id].decision == "accept" for r in sample]
    bob = [both["bob"][r.id].decision == "accept" for r in sample]
    assert pair["kappa"]["value"] == pytest.approx(cohen_kappa_score(ann, bob), abs=1e-4)
    result = CliRunner().invoke(app, ["review-stats", str(run_copy)])
    output = " ".join(result.output.split())
    assert result.exit_code == 0 and "ann vs bob on" in output and "Krippendorff's alpha" in output


def test_a_team_splits_the_sample_with_a_shared_overlap(run_copy) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from synthtune.cli import app
    from synthtune.review.app import assigned

    ids = [f"record-{i}" for i in range(3000)]
    shares = [{r for r in ids if assigned(r, member, 3, 0.2)} for member in range(3)]
    everyone = shares[0] & shares[1] & shares[2]
    assert set().union(*shares) == set(ids)  # every record goes to someone
    assert len(everyone) / len(ids) == pytest.approx(0.2, abs=0.03)  # the overlap, to all
    for a in range(3):
        for b in range(a + 1, 3):
            assert shares[a] & shares[b] == everyone  # outside it, one member each
        assert len(shares[a] - everyone) / len(ids) == pytest.approx(0.8 / 3, abs=0.03)
    assert all(assigned(r, 0, 1, 0.0) for r in ids)  # alone: everything
    import httpx

    from synthtune.review.app import ReviewServer, create_app, sampled_records

    sample = sampled_records(run_copy)
    seen = []
    for member in range(2):
        team = (member, 2, 0.0)
        with ReviewServer(create_app(run_copy, "t", ["template"], 0.2, "x", team)) as server:
            items = httpx.get(f"{server.url}/api/items", headers={"X-Review-Token": "t"}).json()
        seen.append({i["id"] for i in items})
    assert seen[0] | seen[1] == {r.id for r in sample} and not seen[0] & seen[1]
    result = CliRunner().invoke(app, ["review", str(run_copy), "--team", "4/3"])
    assert result.exit_code == 2 and "MEMBER/SIZE" in " ".join(result.output.split())

"""examples/contract-clauses end to end through the real CLI, made small: the legal rule pack
rejects exactly the drafts that miss a clause, and training and evaluation run."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.store import RunStore
from tests.conftest import ROOT, TINY_TRAINING, _merge

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "contract-clauses"
# The clause each value of the agreement template's `omit` slot drops -> the rule that fails.
OMITTED_RULE = {
    "payment": "rules: contract-payment",
    "liability": "rules: contract-liability",
    "dispute": "rules: contract-dispute-resolution",
    "signature": "rules: contract-signature",
}
SMALL = {"generate": {"n": 64}, **TINY_TRAINING}


@pytest.fixture(scope="module")
def contract_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("contracts")
    shutil.copytree(EXAMPLE / "data", folder / "data")
    recipe = yaml.safe_load((EXAMPLE / "recipe.yaml").read_text(encoding="utf-8"))
    _merge(recipe, SMALL)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(folder / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    return folder / "runs" / "contract-clauses", result.output


def test_the_legal_pack_rejects_exactly_the_incomplete_contracts(contract_run) -> None:
    records = RunStore(contract_run[0]).read_table("quality", "dataset")
    omissions = {r.id: r.lineage["slots"].get("omit", "letter") for r in records}
    assert {"none", "letter"} <= set(omissions.values())
    assert len(set(omissions.values())) >= 4  # some agreements drop a clause at this size
    for record in records:
        rule_reasons = {x for x in record.reasons if x.startswith("rules: ")}
        omitted = omissions[record.id]
        if omitted == "none":
            assert not rule_reasons, (record.id, record.reasons)
        elif omitted == "letter":  # no liability, dispute or signature clause
            assert rule_reasons == {
                OMITTED_RULE["liability"],
                OMITTED_RULE["dispute"],
                OMITTED_RULE["signature"],
            }
            assert record.status == "rejected"
        else:
            assert rule_reasons == {OMITTED_RULE[omitted]}, (omitted, record.reasons)
            assert record.status == "rejected"


def test_the_cli_summary_names_the_clause_rules(contract_run) -> None:
    _, output = contract_run
    assert "rules: contract-signature" in output
    assert "perplexity on the real test split: base" in output


def test_train_and_evaluate_ran_on_real_legal_text(contract_run) -> None:
    run_dir, _ = contract_run
    stages = RunStore(run_dir).state()["stages"]
    for stage in ("generate", "quality", "mix", "train", "evaluate", "export"):
        assert stages[stage]["status"] == "complete", stage
    assert stages["train"]["summary"]["steps"] > 0
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    ppl = metrics["suites"]["perplexity"]
    assert ppl["base"] > 0 and ppl["tuned"] > 0
    test = RunStore(run_dir).read_table("mix", "test")
    assert test and all(r.source == "real" for r in test)
    assert metrics["n_test"] == len(test)
    train = RunStore(run_dir).read_table("mix", "train")
    accepted = {r.id for r in train if r.source != "real"}
    assert accepted, "no generated contract reached the training split"
    assert all("rules: " not in " ".join(r.reasons) for r in train)

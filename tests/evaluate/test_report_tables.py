"""The report shows every suite's models side by side, quantized included when present."""

from synthtune.report.html import _ENV

RULES = {
    "per_rule": {"no-antipyretic": {"applicable": 4, "passed": 3, "compliance": 0.75}},
    "replies": {"applicable": 4, "passed": 3, "compliance": 0.75},
    "checks": {"applicable": 4, "passed": 3, "compliance": 0.75},
}
SCORES = {"exact_match": 0.25, "rouge_l": 0.5, "chrf": 41.5, "bleu": 12.3}
METRICS = {
    "n_test": 10,
    "quantized": "int8 via torch-ao-dynamic (cpu)",
    "suites": {
        "perplexity": {
            "base": 20.0,
            "tuned": 10.0,
            "change_pct": -50.0,
            "quantized": 10.1,
            "quantized_change_pct": 1.0,
        },
        "generation": {
            "n": 4,
            "prompts": "templates",
            "base": SCORES,
            "tuned": {**SCORES, "chrf": 77.7},
            "quantized": SCORES,
        },
        "rules": {"n": 4, "prompts": "templates", "base": RULES, "tuned": RULES},
        "lm_eval": {"tuned": {"toy": {"acc,none": 0.5}}},
    },
}


def test_suite_tables_render_side_by_side() -> None:
    html = _ENV.get_template("report.html").render(
        evaluate=METRICS, ppl=METRICS["suites"]["perplexity"], plots={}
    )
    assert "quantized (int8 via torch-ao-dynamic (cpu))" in html and "1.0 % vs tuned" in html
    generation = html.split("Evaluation: generation")[1].split("</table>")[0]
    assert generation.count("<tr><td>") == 3 and "77.7" in generation
    rules = html.split("rule compliance")[1].split("</table>")[0]
    assert '<th class="num">tuned</th>' in rules and "quantized" not in rules
    assert rules.count("3 / 4 (75 %)") == 4  # one rule and the overall row, two models
    assert "acc,none" in html


def test_no_evaluation_no_tables() -> None:
    html = _ENV.get_template("report.html").render(plots={})
    assert "Evaluation" not in html

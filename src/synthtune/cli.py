"""The ``synthtune`` command line: parses arguments and calls library functions, nothing more."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from synthtune import __version__
from synthtune.cli_common import console, out
from synthtune.cli_common import fail as _fail
from synthtune.errors import SynthtuneError
from synthtune.federated.cli import federated_app

app = typer.Typer(
    name="synthtune",
    help="Generate a domain dataset with an LLM, filter it, mix it with real data and "
    "fine-tune a model on it - from one YAML recipe.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _guard_output() -> None:
    """Every command: stdout and stderr pass through the secrets redactor (synthtune.secrets),
    so a key a server echoed into an error never reaches the terminal or a piped log."""
    from synthtune.secrets import RedactingStream

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))


RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder holding run directories.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo every stage.")]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Bypass the generation response cache.")
]
FromOpt = Annotated[str | None, typer.Option("--from", help="Redo this stage and every later one.")]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where the stages' data-parallel work runs: local (this process) or ray "
        "(synthtune[ray]; docs/scale.md). Same results either way.",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="The Ray cluster for --executor ray (default: RAY_ADDRESS, else a local Ray).",
    ),
]


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    # bitsandbytes (imported by peft when installed) warns at import about an optional
    # hub-downloaded CPU kernel we deliberately do not use
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # transformers reads these when (and only if) a stage imports it: importing it here just
    # to quiet it cost a generation-only run 0.9 s
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already loaded (e.g. by a caller): quiet it now
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def _summary_table(result: Any) -> Table:
    table = Table(title=f"run {result.run_dir}")
    for column in ("stage", "status", "in", "out", "seconds"):
        table.add_column(column)
    for o in result.outcomes:
        s = o.summary
        table.add_row(
            o.name,
            o.status,
            str(s.get("records_in", "")),
            str(s.get("records_out", "")),
            f"{o.seconds:.1f}",
        )
    return table


def _print_usage(result: Any) -> None:
    generate = next((o for o in result.outcomes if o.name == "generate"), None)
    usage = generate.summary.get("usage") if generate and generate.status == "ran" else None
    if usage:
        out.print(
            f"generate: {usage['requests']} requests ({usage['cached']} cached, "
            f"{usage['failed']} failed, {usage['retried']} retries), tokens in "
            f"{usage['tokens_in_total']:,} / out {usage['tokens_out_total']:,}, "
            f"cost ${usage['cost_usd']:.4f}",
            soft_wrap=True,
        )
        reasons = usage.get("retry_reasons") or {}
        if reasons:
            shown = ", ".join(f"{why} x{n}" for why, n in reasons.items())
            out.print(f"generate: retries by cause: {shown}", soft_wrap=True)
        if usage.get("pauses"):
            out.print(
                f"generate: server refusing: paused {usage['pauses']} time(s), "
                f"{usage['paused_s']:g} s in all",
                soft_wrap=True,
            )


def _print_training(result: Any) -> None:
    train = next((o for o in result.outcomes if o.name == "train"), None)
    s = train.summary if train and train.status == "ran" else {}
    if not s.get("tokens_per_second"):
        return
    line = (
        f"train: {s['steps']} steps, {s['tokens_per_second']:,.0f} tokens/s, "
        f"{s['samples_per_second']:,.1f} samples/s over {s['train_seconds']:.1f} s of steps"
    )
    if "mfu" in s:
        line += (
            f", MFU {s['mfu']:.0%} of this machine's fp32 matmul peak "
            f"({s['matmul_peak_gflops']:,.0f} GFLOP/s)"
        )
    out.print(line, soft_wrap=True)


def _print_funnel(result: Any) -> None:
    quality = next((o for o in result.outcomes if o.name == "quality"), None)
    funnel = quality.summary.get("funnel") if quality else None
    if funnel:
        steps = " -> ".join(f"{f['tier']} {f['remaining']}" for f in funnel)
        out.print(f"quality funnel: {steps}", soft_wrap=True)


def _print_reasons(result: Any) -> None:
    """Rejection reasons one per line: they are too long for a table column."""
    for o in result.outcomes:
        for reason, count in (o.summary.get("rejected_reasons") or {}).items():
            out.print(f"  {o.name} rejected {count}: {reason}", soft_wrap=True)


def _print_classification(run_dir: Path) -> None:
    """Base, tuned and the TF-IDF baseline on the test split, with their intervals."""
    import json

    metrics = run_dir / "evaluate" / "metrics.json"
    if not metrics.exists():
        return
    suite = json.loads(metrics.read_text(encoding="utf-8"))["suites"]["classification"]
    boot = suite.get("bootstrap", {})
    intervals = (
        f", {boot.get('confidence', 0.95):.0%} intervals" if boot.get("resamples", 1) else ""
    )
    out.print(f"classification on the test split ({suite['n']} rows){intervals}:")
    names = {"base": "base", "tuned": "tuned", "quantized": "int8", "baseline": "TF-IDF"}
    for column, name in names.items():
        scores = suite.get(column)
        if not isinstance(scores, dict) or "accuracy" not in scores:
            continue
        ci = scores.get("ci", {})
        cells = [
            f"{metric} {scores[metric]:.3f}"
            + (f" [{ci[metric][0]:.3f}, {ci[metric][1]:.3f}]" if metric in ci else "")
            for metric in ("accuracy", "macro_f1")
        ]
        out.print(f"  {name:7} {'   '.join(cells)}")


def _run(
    recipe_path: Path,
    runs: Path,
    quiet: bool,
    executor: str = "local",
    ray_address: str | None = None,
    **kwargs: Any,
) -> None:
    from synthtune.config import load_recipe
    from synthtune.executor import make_executor
    from synthtune.pipeline import run_recipe
    from synthtune.report.html import build_report

    try:
        recipe = load_recipe(recipe_path)
        _quiet_libraries()
        engine = make_executor(executor, ray_address)
        try:
            result = run_recipe(
                recipe, runs, quiet=quiet, console=console, executor=engine, **kwargs
            )
        finally:
            engine.close()
        report = build_report(result.run_dir)
    except (SynthtuneError, KeyboardInterrupt) as exc:
        raise _fail(exc) from None
    out.print(_summary_table(result))
    _print_usage(result)
    _print_training(result)
    _print_funnel(result)
    _print_reasons(result)
    if all(o.status == "skipped" for o in result.outcomes):
        out.print("every stage already complete: nothing to do (use --force or --from to redo)")
    evaluate = next((o for o in result.outcomes if o.name == "evaluate"), None)
    ppl = evaluate.summary.get("perplexity") if evaluate else None
    if evaluate and "classification" in evaluate.summary:
        _print_classification(result.run_dir)
    if ppl and "base" in ppl:
        out.print(
            f"perplexity on the real test split: base {ppl['base']:.2f} -> tuned "
            f"{ppl['tuned']:.2f} ({ppl['change_pct']:+.1f} %)"
        )
    out.print(f"report: {report}", soft_wrap=True)


@app.command()
def run(
    recipe: RecipeArg,
    runs: OutOpt = Path("runs"),
    from_stage: FromOpt = None,
    force: ForceOpt = False,
    no_cache: NoCacheOpt = False,
    quiet: QuietOpt = False,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Run every stage of RECIPE in order, skipping the stages already complete."""
    _run(
        recipe,
        runs,
        quiet,
        executor,
        ray_address,
        from_stage=from_stage,
        force=force,
        no_cache=no_cache,
    )


@app.command()
def evolve(
    recipe: RecipeArg,
    rounds: Annotated[
        int | None, typer.Option("--rounds", min=1, help="Rounds (default: evolve.rounds).")
    ] = None,
    runs: OutOpt = Path("runs"),
    quiet: QuietOpt = False,
) -> None:
    """Generate -> filter -> measure -> regenerate for N rounds, a bandit steering the arms.

    Resumable between rounds (and within one, like generate). Afterwards `synthtune run`
    continues at mix with the evolved pool.
    """
    from synthtune.config import load_recipe
    from synthtune.evolve.loop import Evolution
    from synthtune.pipeline import check_recipe
    from synthtune.report.html import build_report

    try:
        loaded = load_recipe(recipe)
        check_recipe(loaded)
        _quiet_libraries()
        evolution = Evolution(loaded, runs, quiet=quiet)
        evolution.ctx.console = console
        outcomes = evolution.run(rounds)
        report = build_report(evolution.store.root)
    except (SynthtuneError, KeyboardInterrupt) as exc:
        raise _fail(exc) from None
    table = Table("round", "generated", "accepted", "pool", "distance", "requests per arm")
    for o in outcomes:
        table.add_row(
            str(o.number),
            str(o.generated),
            str(o.accepted),
            str(o.measures.get("pool")),
            str(o.measures.get("wasserstein")),
            ", ".join(f"{arm} {n}" for arm, n in o.allocation.items()),
        )
    out.print(table)
    out.print(f"report: {report}", soft_wrap=True)


@app.command()
def ablate(
    recipe: RecipeArg,
    runs: Annotated[
        Path, typer.Option("--runs", "--out", "-o", help="Folder holding run directories.")
    ] = Path("runs"),
    seeds: Annotated[
        int | None, typer.Option("--seeds", min=1, help="Seeds 0..N-1 (default: ablate.seeds).")
    ] = None,
    variants: Annotated[
        str | None, typer.Option("--variants", help="Comma-separated subset of the variants.")
    ] = None,
    quiet: QuietOpt = False,
    brief: Annotated[
        bool, typer.Option("--brief", help="One line per run, no stage progress.")
    ] = False,
) -> None:
    """Run the recipe's ablate variants x training seeds, sharing common stages, and say
    with 95 % intervals what made a difference (docs/ablations.md). Resumable."""
    from synthtune.ablate.report import summary_header, summary_rows
    from synthtune.ablate.runner import run_ablation
    from synthtune.config import load_recipe

    try:
        loaded = load_recipe(recipe)
        _quiet_libraries()
        names = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
        echo = (
            None if quiet else lambda text, end="\n": console.print(text, end=end, highlight=False)
        )
        result = run_ablation(
            loaded, runs, seeds=seeds, variants=names, echo=echo, stage_logs=not (quiet or brief)
        )
    except (SynthtuneError, KeyboardInterrupt) as exc:
        raise _fail(exc) from None
    reference = result.stats["reference"]
    table = Table(
        *summary_header(result.stats),
        title=f"ablation {result.folder}",
        caption=f"mean ± 95 % CI over seeds; Δ vs {reference}, paired by seed [95 % CI]",
    )
    for row in summary_rows(result.stats):
        table.add_row(*row)
    out.print(table)
    for variant, c in result.contamination.items():
        out.print(
            f"contamination {variant}: {c['ngram_rows']}/{c['test_rows']} test rows share an "
            f"n-gram with synthetic training records, {c['exact_duplicates']} exact duplicates",
            soft_wrap=True,
        )
    for line in result.stats["verdicts"] + result.stats["baseline"]:
        out.print(escape(line), soft_wrap=True)
    out.print(f"results: {result.files['markdown']}", soft_wrap=True)


@app.command()
def demo(runs: OutOpt = Path("runs"), force: ForceOpt = False, quiet: QuietOpt = False) -> None:
    """Run the embedded offline demo (examples/medical-qa) into ./runs/ (or --out)."""
    from synthtune.examples import example_recipe

    try:
        path = example_recipe()
    except SynthtuneError as exc:
        raise _fail(exc) from None
    _run(path, runs, quiet, force=force)


@app.command()
def validate(recipe: RecipeArg) -> None:
    """Check RECIPE (fields, templates, rules, files) without doing any work. Exit 2 if bad."""
    from synthtune.config import load_recipe
    from synthtune.pipeline import check_recipe

    try:
        loaded = load_recipe(recipe)
        check_recipe(loaded)
    except SynthtuneError as exc:
        raise _fail(exc) from None
    data = (
        f"{loaded.generate.n} records to generate"
        if loaded.generate is not None
        else "real data only"
    )
    out.print(f"[green]ok[/]: {recipe} (name {loaded.name!r}, {data})")


def _stage_command(stage: str, help_text: str) -> None:
    def command(
        recipe: RecipeArg,
        runs: OutOpt = Path("runs"),
        force: ForceOpt = False,
        no_cache: NoCacheOpt = False,
        quiet: QuietOpt = False,
        executor: ExecutorOpt = "local",
        ray_address: RayAddressOpt = None,
    ) -> None:
        _run(
            recipe,
            runs,
            quiet,
            executor,
            ray_address,
            until=stage,
            from_stage=stage if force else None,
            no_cache=no_cache,
        )

    command.__doc__ = help_text
    app.command(name="filter" if stage == "quality" else stage)(command)


for _name, _help in (
    ("quality", "Run the quality tiers (dedup, perplexity, rules) and the review sample."),
    ("mix", "Mix accepted synthetic records with real data into train/val/test."),
    ("evaluate", "Compare base and tuned models on the real test split."),
    ("export", "Export the mix in the configured dataset formats."),
):
    _stage_command(
        _name,
        _help + " Earlier stages run first when they are not complete yet. "
        "--force redoes this stage.",
    )


def _print_estimate(recipe_path: Path, runs: Path) -> None:
    import torch

    from synthtune.config import load_recipe
    from synthtune.train.advisor import base_config
    from synthtune.train.estimate import estimate_run

    _quiet_libraries()
    try:
        recipe = load_recipe(recipe_path)
        config = base_config(recipe, runs / recipe.name)
        cuda = torch.cuda.is_available()
        est = estimate_run(config, recipe.train, recipe.train.max_length, cuda=cuda)
    except SynthtuneError as exc:
        raise _fail(exc) from None
    table = Table(
        title=f"{recipe.train.method} on {recipe.train.base}: batch "
        f"{recipe.train.batch_size} x {recipe.train.max_length} tokens"
    )
    table.add_column("item")
    table.add_column("value")
    table.add_row("parameters", f"{est['parameters']:,}")
    table.add_row("trainable", f"{est['trainable']:,} ({est['trainable'] / est['parameters']:.2%})")
    for part, size in est["memory_bytes"].items():
        table.add_row(f"memory: {part}", f"{size / 1024**2:,.0f} MiB")
    table.add_row("memory: total", f"{est['memory_total_bytes'] / 1024**2:,.0f} MiB")
    table.add_row("fp32 matmul peak", f"{est['matmul_peak_gflops']} GFLOP/s")
    table.add_row("expected throughput", f"{est['expected_tokens_per_second']:,} tokens/s")
    out.print(table)


def _print_advice(recipe_path: Path, runs: Path) -> None:
    from synthtune.config import load_recipe
    from synthtune.train.advisor import Hardware, advise, recipe_facts, recommended

    _quiet_libraries()
    try:
        loaded = load_recipe(recipe_path)
        facts = recipe_facts(loaded, runs / loaded.name)
    except SynthtuneError as exc:
        raise _fail(exc) from None
    hardware = Hardware.detect()
    table = Table(
        title=f"{facts.base} ({facts.model_type}, {facts.parameters / 1e6:.1f}M parameters), "
        f"task {facts.task}, {facts.examples} examples ({facts.examples_from}), "
        f"{hardware.device} with {hardware.memory_bytes / 1024**3:.0f} GiB"
    )
    for column in ("method", "runs", "fits", "memory (GiB)", "trainable", "why"):
        table.add_column(column)
    rows = advise(facts.examples, facts.parameters, hardware, facts.task, facts.unsupported)
    for row in rows:
        table.add_row(
            row["method"],
            "yes" if row["runs"] else "no",
            "yes" if row["fits"] else "no",
            f"{row['memory_gib']:.2f}",
            row["trainable"],
            row["why"],
        )
    out.print(table)
    best = recommended(rows)
    out.print(f"recommended: {best}" if best else "no method both runs and fits this machine")


@app.command()
def train(
    recipe: RecipeArg,
    runs: OutOpt = Path("runs"),
    force: ForceOpt = False,
    advise_only: Annotated[
        bool, typer.Option("--advise", help="Recommend a training method; train nothing.")
    ] = False,
    estimate_only: Annotated[
        bool, typer.Option("--estimate", help="Memory and throughput estimate; train nothing.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune the base model on the mix (--advise: which method fits; --estimate: memory
    and throughput before training)."""
    if estimate_only:
        _print_estimate(recipe, runs)
        return
    if advise_only:
        _print_advice(recipe, runs)
        return
    _run(recipe, runs, quiet, until="train", from_stage="train" if force else None)


@app.command()
def generate(
    recipe: RecipeArg,
    runs: OutOpt = Path("runs"),
    force: ForceOpt = False,
    no_cache: NoCacheOpt = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print requests, tokens and cost; send nothing.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Generate records from the recipe's templates (resumable; --dry-run to estimate)."""
    if not dry_run:
        _run(
            recipe,
            runs,
            quiet,
            until="generate",
            from_stage="generate" if force else None,
            no_cache=no_cache,
        )
        return
    from synthtune.config import load_recipe
    from synthtune.generate.dryrun import estimate
    from synthtune.pipeline import check_recipe
    from synthtune.store import RunStore

    try:
        loaded = load_recipe(recipe)
        check_recipe(loaded)
        plan = estimate(loaded, RunStore(runs / loaded.name))
    except SynthtuneError as exc:
        raise _fail(exc) from None
    table = Table(title=f"dry run: {plan['strategy']} on {plan['model']} (nothing sent)")
    columns = (
        "template",
        "items",
        "calls",
        "prompt_tokens",
        "max_completion_tokens",
        "max_cost_usd",
        *(("max_batch_cost_usd",) if plan["batch_priced"] else ()),
    )
    for column in columns:
        table.add_column(column)
    for row in [*plan["rows"], {"template": "total", **plan["totals"]}]:
        table.add_row(*(str(row.get(c) if row.get(c) is not None else "-") for c in columns))
    out.print(table)
    if plan["already_done"]:
        out.print(f"{plan['already_done']} items already done in {runs / loaded.name}")
    if plan["batch_priced"]:
        mode = "batch" if plan["batch_mode"] else "sync"
        out.print(
            "max_cost_usd at the listed price, max_batch_cost_usd at the Batch API price "
            f"(batch_*_per_1m, else half); this recipe runs in {mode} mode"
        )
    if not plan["priced"]:
        out.print(f"no price for model {plan['model']!r} in generate.prices: cost not estimated")
    elif plan["budget_usd"] is not None:
        out.print(f"budget: ${plan['budget_usd']:g}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Write RUN_DIR/report.html from what the stages recorded."""
    from synthtune.report.html import build_report

    try:
        out.print(f"report: {build_report(run_dir)}")
    except SynthtuneError as exc:
        raise _fail(exc) from None


rules_app = typer.Typer(help="Check records against rules; list the built-in rule packs.")
app.add_typer(rules_app, name="rules")
app.add_typer(federated_app, name="federated")


def _payload_from_json(path: Path) -> Any:
    """A record dump, a payload ({messages, label}) or {prompt, response[, label]}."""
    import json

    from synthtune.records import Payload

    data = json.loads(path.read_text(encoding="utf-8"))
    if "payload" in data:
        data = data["payload"]
    if "messages" not in data:
        messages = [{"role": "user", "content": data.get("prompt", "")}]
        messages.append({"role": "assistant", "content": data.get("response", "")})
        data = {"messages": messages, "label": data.get("label")}
    return Payload.model_validate(data)


@rules_app.command("check")
def rules_check(
    rules: Annotated[str, typer.Argument(help="Rules YAML file or pack:NAME.")],
    record: Annotated[Path, typer.Argument(help="JSON: a record, a payload or prompt/response.")],
) -> None:
    """Explain each rule's outcome on RECORD; exit 1 when an error-severity rule fails."""
    from pydantic import ValidationError

    from synthtune.rules import check_rules, load_rule_sources

    try:
        loaded = load_rule_sources([rules])
        payload = _payload_from_json(record)
    except SynthtuneError as exc:
        raise _fail(exc) from None
    except (OSError, ValueError, ValidationError) as exc:
        console.print(f"[bold red]error[/]: {record}: {exc}")
        raise typer.Exit(2) from None
    table = Table(title=f"{rules} on {record}")
    for column in ("rule", "result", "severity", "why"):
        table.add_column(column)
    failed = False
    for o in check_rules(loaded, payload):
        result = (
            "[green]pass[/]"
            if o.ok and o.applicable
            else ("[dim]n/a[/]" if o.ok else "[red]FAIL[/]")
        )
        failed |= not o.ok and o.severity == "error"
        table.add_row(o.rule, result, o.severity, o.why)
    out.print(table)
    if failed:
        raise typer.Exit(1)


@rules_app.command("packs")
def rules_packs() -> None:
    """List the rule packs (built-in and installed plugins') and their rules."""
    from synthtune.rules import load_rule_sources, pack_names

    for name in pack_names():
        out.print(f"[bold]pack:{name}[/]")
        try:
            rules = load_rule_sources([f"pack:{name}"])
        except SynthtuneError as exc:  # a broken plugin pack: said, the others still listed
            out.print(f"  [red]cannot load: {exc}[/]")
            continue
        for rule in rules:
            out.print(f"  {rule.id}: {rule.description}")


RunDirArg = Annotated[Path, typer.Argument(help="A run directory (runs/<name>).")]


def _review_settings(run_dir: Path) -> tuple[list[str], float]:
    """Strata and flag threshold from the run's locked recipe, once quality has run."""
    from synthtune.review.stats import review_settings

    lock = run_dir / "recipe.lock.yaml"
    if not (run_dir / "quality" / "dataset.parquet").exists() or not lock.exists():
        raise SynthtuneError(f"{run_dir}: no quality results; run the recipe's filter stage first")
    return review_settings(run_dir)


@app.command()
def review(
    run_dir: RunDirArg,
    host: Annotated[
        str, typer.Option(help="Interface to bind (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port).")] = 8765,
    token: Annotated[
        str | None, typer.Option(help="Access token (default: a new random one).")
    ] = None,
    reviewer: Annotated[
        str,
        typer.Option(
            help="Who reviews: each reviewer's decisions are kept apart, so two experts "
            "reviewing the same records measure their agreement (review-stats)."
        ),
    ] = "reviewer",
    team: Annotated[
        str | None,
        typer.Option(
            help="Split the sample in a team: MEMBER/SIZE, e.g. 2/3 for the second of "
            "three reviewers; each record goes to one member, and --overlap of them to all."
        ),
    ] = None,
    overlap: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="With --team: share reviewed by every member."),
    ] = 0.2,
) -> None:
    """Serve the review app for RUN_DIR's review sample (accept / reject / edit)."""
    from synthtune.review.app import ReviewServer, create_app, new_token

    try:
        strata, flag = _review_settings(run_dir)
    except SynthtuneError as exc:
        raise _fail(exc) from None
    split = None
    if team is not None:
        member, _, size = team.partition("/")
        if not (member.isdigit() and size.isdigit() and 1 <= int(member) <= int(size)):
            raise typer.BadParameter(f"{team!r}: write MEMBER/SIZE, e.g. 2/3", param_hint="--team")
        split = (int(member) - 1, int(size), overlap)
    secret = token or new_token()
    app_ = create_app(run_dir, secret, strata, flag, reviewer, split)
    server = ReviewServer(app_, host, port)
    out.print(f"review app: {server.url}/?token={secret}  (Ctrl-C to stop)", soft_wrap=True)
    server.serve_forever()


@app.command("review-stats")
def review_stats_command(
    run_dir: RunDirArg,
    patch: Annotated[
        Path | None,
        typer.Option(
            "--patch",
            help="Write the thresholds refitted from the reviews as a recipe patch (YAML); "
            "apply it with `synthtune patch RECIPE PATCH`.",
        ),
    ] = None,
    target_precision: Annotated[
        float,
        typer.Option(
            "--target-precision",
            min=0.01,
            max=1.0,
            help="Refitted thresholds reject records that are at least this often bad.",
        ),
    ] = 0.9,
    few_shot: Annotated[
        Path | None,
        typer.Option(
            "--few-shot",
            help="Write the reviewers' edits as few-shot examples (JSONL) for the next "
            "generation round: point generate.few_shot.file at it.",
        ),
    ] = None,
    rules_out: Annotated[
        Path | None,
        typer.Option(
            "--rules-out",
            help="Write the rules proposed from clustered rejection reasons to this rules "
            "file; with --patch, the patch adds it to quality.rules.",
        ),
    ] = None,
) -> None:
    """Acceptance per stratum (Wilson 95 % CI), remainder defect rate, flagged strata; each
    tier's precision and recall from the reviews, judge agreement and the batch decision;
    each rule's precision, and rules proposed from the reviewers' rejection reasons."""
    from synthtune.review.stats import review_stats
    from synthtune.store import RunStore, review_decisions

    try:
        strata, flag = _review_settings(run_dir)
    except SynthtuneError as exc:
        raise _fail(exc) from None
    records = RunStore(run_dir).read_table("quality", "dataset")
    decisions = review_decisions(run_dir)
    stats = review_stats(records, decisions, strata, flag)
    table = Table(title=f"review of {run_dir}: {stats['reviewed']} reviewed")
    for column in ("stratum", "records", "reviewed", "acceptance", "95 % CI", "flag"):
        table.add_column(column)
    for row in stats["strata"]:
        low, high = row["ci95"]
        table.add_row(
            row["stratum"],
            str(row["records"]),
            str(row["reviewed"]),
            "-" if row["acceptance"] is None else f"{row['acceptance']:.0%}",
            f"{low:.0%}-{high:.0%}",
            "regenerate" if row["flagged"] else "",
        )
    out.print(table)
    rate = stats["remainder_defect_rate"]
    if rate is not None:
        out.print(f"estimated defect rate of the {stats['unreviewed']} unreviewed: {rate:.1%}")
    _print_tier_measures(run_dir, records, decisions)
    rules_fragment = _print_feedback(run_dir, records, decisions, target_precision, rules_out)
    if few_shot is not None:
        import json

        from synthtune.review.feedback import few_shot_rows

        rows = few_shot_rows(records, decisions)
        few_shot.write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
        )
        out.print(f"few-shot: {len(rows)} edited records -> {few_shot}", soft_wrap=True)
    if patch is not None:
        _write_refit(records, decisions, patch, target_precision, rules_fragment)


def _print_feedback(
    run_dir: Path,
    records: list[Any],
    decisions: dict[str, Any],
    target: float,
    rules_out: Path | None,
) -> dict[str, Any]:
    """Each rule's precision from the reviews and the rules proposed from clustered
    rejection reasons (written to ``rules_out``); returns the rules part of the refit."""
    import yaml

    from synthtune.review.feedback import propose_rules, rule_precision, rules_patch
    from synthtune.rules import load_rule_sources

    quality = yaml.safe_load((run_dir / "recipe.lock.yaml").read_text(encoding="utf-8"))["recipe"][
        "quality"
    ]
    current = list(quality.get("rules") or [])
    existing_ids = [r.id for r in load_rule_sources(current)] if current else []
    precision = rule_precision(records, decisions, target)
    if precision:
        table = Table(title="rules, measured by the reviews (weighted, 95 % CI)")
        table.add_column("rule", overflow="fold")  # an id is read whole, even when long
        for column in ("failed & reviewed", "bad", "precision", "proposal"):
            table.add_column(column)
        for row in precision:
            low, high = row["ci"]
            table.add_row(
                row["rule"],
                str(row["reviewed"]),
                str(row["bad"]),
                f"{row['precision']:.0%} ({low:.0%}-{high:.0%})",
                "report only" if row["report_only"] else "",
            )
        out.print(table)
    proposals = propose_rules(records, decisions, existing_ids=existing_ids)
    for proposal in proposals:
        rule = proposal["rule"]
        out.print(
            f"proposed rule {rule['id']}: forbid /{rule['forbid']['regex']}/ — in "
            f"{proposal['records']} rejections the tiers missed ("
            + ", ".join(f"{reason!r} {n}" for reason, n in proposal["reasons"].items())
            + f"), {proposal['false_fires']}/{proposal['reviewed_good']} records the experts "
            f"accepted; would reject {proposal['accepted_fires']} records now accepted",
            soft_wrap=True,
        )
    if rules_out is not None:
        rules_out.write_text(
            yaml.safe_dump([p["rule"] for p in proposals], allow_unicode=True, sort_keys=False),
            encoding="utf-8",
        )
        out.print(f"proposed rules: {len(proposals)} -> {rules_out}", soft_wrap=True)
    return rules_patch(
        precision,
        proposals,
        current,
        str(rules_out.resolve()) if rules_out is not None else None,
        quality.get("rules_report_only") or [],
    )


def _write_refit(
    records: list[Any],
    decisions: dict[str, Any],
    path: Path,
    target: float,
    rules_fragment: dict[str, Any],
) -> None:
    import yaml

    from synthtune.ablate.variants import deep_merge
    from synthtune.review.measure import refit_patch

    refit = refit_patch(records, decisions, target)
    if rules_fragment:
        refit["patch"] = deep_merge(refit["patch"], {"quality": rules_fragment})
    for tier, fit in refit["fits"].items():
        if fit["cut"] is None:
            out.print(f"{tier}: no cut-off reaches precision {target:g} on these reviews")
        else:
            out.print(
                f"{tier}: cut-off {fit['cut']:g} rejects records bad {fit['precision']:.0%} of "
                f"the time and catches {fit['recall']:.0%} of the bad ones (reviews weighted)"
            )
    path.write_text(yaml.safe_dump(refit["patch"], sort_keys=False), encoding="utf-8")
    out.print(f"patch: {path} (apply: synthtune patch RECIPE {path})", soft_wrap=True)


@app.command("patch")
def patch_command(
    recipe: RecipeArg,
    patch: Annotated[Path, typer.Argument(help="A recipe patch (YAML), merged key by key.")],
) -> None:
    """Merge PATCH into RECIPE (the recipe is validated first; the old file is kept as
    RECIPE.bak; YAML comments are not carried over)."""
    import shutil

    import yaml

    from synthtune.ablate.variants import deep_merge
    from synthtune.config import load_recipe
    from synthtune.errors import RecipeError

    try:
        loaded = []
        for path in (recipe, patch):
            try:
                loaded.append(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
            except (OSError, yaml.YAMLError) as exc:
                raise RecipeError(str(path), [f"cannot read: {exc}"]) from None
            if not isinstance(loaded[-1], dict):
                raise RecipeError(str(path), ["must be a mapping of recipe sections"])
        merged = deep_merge(loaded[0], loaded[1])
        candidate = recipe.with_name(f".{recipe.name}.patched")
        candidate.write_text(
            yaml.safe_dump(merged, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        try:
            load_recipe(candidate)  # paths resolve beside the recipe, as they will
        except SynthtuneError:
            candidate.unlink()
            raise
        shutil.copy(recipe, recipe.with_name(recipe.name + ".bak"))
        candidate.replace(recipe)
    except SynthtuneError as exc:
        raise _fail(exc) from None
    out.print(f"patched {recipe} (previous version: {recipe.name}.bak)")


AGREEMENT_NAMES = {"kappa": "Cohen's kappa", "alpha": "Krippendorff's alpha"}


def _print_agreement(who: str, found: dict[str, Any], key: str) -> None:
    """One agreement line: ``found[key]`` is ``{value, ci}``, ``found`` maybe has a
    ``warning``."""
    value, (low, high) = found[key]["value"], found[key]["ci"]
    out.print(f"{who}: {AGREEMENT_NAMES[key]} {value:.2f} (95 % CI {low:.2f}-{high:.2f})")
    if found.get("warning"):
        out.print(f"[yellow]warning: {found['warning']}[/]")


def _print_tier_measures(run_dir: Path, records: list[Any], decisions: dict[str, Any]) -> None:
    """Each tier's precision and recall from the reviews, agreement and the batch decision."""
    from synthtune.review.measure import expert_agreement, measure_run
    from synthtune.store import reviewer_decisions

    measured = measure_run(run_dir, records, decisions)
    if "tiers" in measured:
        table = Table(title="the tiers, measured by the reviews (95 % CI, weighted to all records)")
        for column in ("tier", "reviewed / records", "precision", "recall"):
            table.add_column(column)
        for tier, metrics in measured["tiers"].items():
            size = measured["strata"].get(tier, {})
            cells = []
            for metric in ("precision", "recall"):
                value, (low, high) = metrics[metric]["value"], metrics[metric]["ci"]
                shown = "-" if value is None else f"{value:.0%}"
                cells.append(f"{shown} ({low:.0%}-{high:.0%})")
            counts = f"{size.get('reviewed', '-')} / {size.get('records', '-')}" if size else "-"
            table.add_row(tier, counts, *cells)
        out.print(table)
    else:
        out.print("tier precision/recall: review some accepted and some rejected records first")
    experts = expert_agreement(reviewer_decisions(run_dir))
    if experts is not None:
        for pair in experts["pairs"]:
            a, b = pair["reviewers"]
            _print_agreement(f"{a} vs {b} on {pair['items']} records", pair, "kappa")
        if "alpha" in experts:
            who = f"the {len(experts['reviewers'])} reviewers on {experts['shared_items']} shared"
            _print_agreement(f"{who} records", experts, "alpha")
    judge = measured.get("judge_agreement")
    if judge is not None:
        _print_agreement(f"LLM judge vs experts on {judge['items']} records", judge, "kappa")
    batch = measured.get("batch")
    if batch is not None:
        out.print(f"batch: {batch['decision']} ({batch['statement']}; aql {batch['aql']:g})")


class ExportFormat(str, Enum):
    labelstudio = "labelstudio"
    argilla = "argilla"


class ImportFormat(str, Enum):
    auto = "auto"
    labelstudio = "labelstudio"
    argilla = "argilla"


@app.command("review-export")
def review_export(
    run_dir: RunDirArg,
    out_path: Annotated[
        Path,
        typer.Argument(help="Label Studio tasks JSON, or a new folder for --format argilla."),
    ],
    format: Annotated[
        ExportFormat, typer.Option("--format", help="labelstudio or argilla.")
    ] = ExportFormat.labelstudio,
) -> None:
    """Export the review sample as Label Studio tasks (+ OUT_PATH.config.xml), or as an Argilla
    dataset folder (load it with rg.Dataset.from_disk(OUT_PATH, client=...))."""
    import json

    from synthtune.review.app import sampled_records
    from synthtune.store import atomic_write_text

    records = sampled_records(run_dir)
    if format is ExportFormat.argilla:
        from synthtune.review.argilla_io import export_dataset

        try:
            strata, _ = _review_settings(run_dir)
            export_dataset(records, strata, out_path, f"synthtune-review-{run_dir.name}")
        except SynthtuneError as exc:
            raise _fail(exc) from None
        out.print(
            f"{len(records)} records -> {out_path} (load: rg.Dataset.from_disk)", soft_wrap=True
        )
        return
    from synthtune.review.labelstudio import LABEL_CONFIG, export_tasks

    tasks = export_tasks(records)
    atomic_write_text(out_path, json.dumps(tasks, ensure_ascii=False, indent=1))
    atomic_write_text(out_path.with_suffix(".config.xml"), LABEL_CONFIG)
    out.print(
        f"{len(tasks)} tasks -> {out_path} (labelling config {out_path.with_suffix('.config.xml')})"
    )


def _import_argilla(run_dir: Path, in_path: Path) -> None:
    from synthtune.review.argilla_io import (
        decisions_from_argilla,
        read_argilla_export,
        save_changed,
    )
    from synthtune.store import RunStore

    known = {r.id for r in RunStore(run_dir).read_table("quality", "dataset")}
    result = decisions_from_argilla(read_argilla_export(in_path), known)
    saved, unchanged = save_changed(run_dir, result.decisions)
    out.print(f"imported {saved} decisions into {run_dir} ({unchanged} unchanged)", soft_wrap=True)
    if result.not_submitted:
        out.print(f"{len(result.not_submitted)} records have no submitted response (skipped)")
    if result.unknown_ids:
        shown = escape(", ".join(result.unknown_ids[:10]))
        console.print(
            f"[yellow]{len(result.unknown_ids)} record ids are not records of this run "
            f"(not imported)[/]: {shown}",
            soft_wrap=True,
        )
    for problem in result.problems:
        console.print(f"[yellow]not imported[/]: {escape(problem)}", soft_wrap=True)


@app.command("review-import")
def review_import(
    run_dir: RunDirArg,
    in_path: Annotated[
        Path,
        typer.Argument(
            help="Label Studio JSON export; or an Argilla to_disk folder / records JSON(L)."
        ),
    ],
    format: Annotated[
        ImportFormat,
        typer.Option(
            "--format",
            help="auto: Argilla for a folder, JSONL or Argilla records, else Label Studio.",
        ),
    ] = ImportFormat.auto,
) -> None:
    """Import Label Studio or Argilla annotations as review decisions (they flow into the mix).

    Argilla: only submitted responses count; re-importing the same export changes nothing;
    record ids that are not in this run are listed, not imported.
    """
    import json

    from pydantic import ValidationError

    from synthtune.review.argilla_io import looks_like_argilla
    from synthtune.review.labelstudio import import_annotations
    from synthtune.store import ReviewStore

    if format is ImportFormat.argilla or (
        format is ImportFormat.auto and looks_like_argilla(in_path)
    ):
        try:
            _import_argilla(run_dir, in_path)
        except SynthtuneError as exc:
            raise _fail(exc) from None
        return
    try:
        decisions = import_annotations(json.loads(in_path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, ValidationError) as exc:
        console.print(f"[bold red]error[/]: {in_path}: {exc}")
        raise typer.Exit(2) from None
    store = ReviewStore(run_dir)
    for decision in decisions:
        store.save(decision)
    store.close()
    out.print(f"imported {len(decisions)} decisions into {run_dir}")


@app.command()
def serve(
    model_or_run: Annotated[
        str,
        typer.Argument(
            help="Model folder, hub id, or run directory (serves its trained model).",
            show_default=False,
        ),
    ],
    host: Annotated[
        str, typer.Option(help="Interface to bind (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port).")] = 8000,
    adapter: Annotated[
        list[str] | None,
        typer.Option(help="LoRA adapter served as model NAME: NAME=PATH (repeatable)."),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the API key clients must send."),
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Cap (and default) for max_tokens.")] = 256,
    max_prompt_tokens: Annotated[int, typer.Option(help="Longest prompt, in tokens.")] = 2048,
    max_concurrent: Annotated[
        int, typer.Option(help="Requests queued or running at most; more get HTTP 429.")
    ] = 64,
    max_batch: Annotated[
        int, typer.Option(help="Queued requests generated together at most (1 = no batching).")
    ] = 16,
) -> None:
    """Serve a model with an OpenAI-compatible API (/v1/models, chat, completions, SSE)."""
    _quiet_libraries()
    from synthtune.serve import ServeLimits, parse_adapters
    from synthtune.serve import serve as serve_models

    try:
        serve_models(
            model_or_run,
            host,
            port,
            parse_adapters(adapter or []),
            api_key_env,
            ServeLimits(
                max_tokens=max_tokens,
                max_prompt_tokens=max_prompt_tokens,
                max_concurrent=max_concurrent,
                max_batch=max_batch,
            ),
            announce=out.print,
        )
    except (SynthtuneError, KeyboardInterrupt) as exc:
        raise _fail(exc) from None


@app.command()
def schema() -> None:
    """Print the recipe's JSON Schema (for editor completion and validation)."""
    import json

    from synthtune.config import Recipe

    out.print_json(json.dumps(Recipe.model_json_schema()))


@app.command()
def doctor() -> None:
    """Show versions and the compute device found (CPU/GPU)."""
    import torch

    from synthtune.store import package_versions

    table = Table(title=f"synthtune {__version__}")
    table.add_column("component")
    table.add_column("version / state")
    for name, version in package_versions().items():
        table.add_row(name, version)
    table.add_row("cuda", str(torch.cuda.is_available()))
    table.add_row("cpu threads", str(torch.get_num_threads()))
    out.print(table)


def main() -> None:  # pragma: no cover - console script alias
    app()

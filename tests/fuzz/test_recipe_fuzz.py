"""Fuzzing the recipe: every example recipe mutated at every kind of field with hostile values
(a fixed corpus of >= 300 cases, plus hypothesis' random values at random paths). Each case must
end as a valid recipe or a RecipeError naming a field or file -- never another exception --
within 5 s, and write nothing; a sample runs through the real CLI (exit 2, no traceback)."""

from __future__ import annotations

import contextlib
import copy
import math
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthtune.config import load_recipe
from synthtune.errors import SynthtuneError
from synthtune.pipeline import check_recipe
from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*/recipe.yaml"))
HOSTILE: list[Any] = [
    -1,
    0,
    10**30,
    -(10**30),
    1e308,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x" * 20_000,
    True,
    [],
    {},
    None,
    [[[[[]]]]],
    {"type": "nope"},
    "/dev/zero",
    "../../../../etc/passwd",
    "{{ 1/0 }}",
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "\x00\x01\ufffe",
    "(a|aa)+$",
    "pack:nope",
]
CASES_PER_EXAMPLE = 40


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path of the YAML tree (mappings, lists and leaves)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node[:3]):
            out += _paths(value, (*prefix, i))
    return out


def _set(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    mutated = copy.deepcopy(tree)
    node = mutated
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    node[path[-1]] = value
    return mutated


def _corpus() -> list[tuple[Path, tuple[Any, ...], Any]]:
    rng = random.Random(20261203)
    cases = []
    for example in EXAMPLES:
        tree = yaml.safe_load(example.read_text(encoding="utf-8"))
        paths = _paths(tree)
        for _ in range(CASES_PER_EXAMPLE):
            cases.append((example, rng.choice(paths), rng.choice(HOSTILE)))
    return cases


CORPUS = _corpus()


def _write(folder: Path, example: Path, tree: Any) -> Path:
    """The mutated recipe beside a copy of the example's files (relative paths resolve)."""
    for item in example.parent.iterdir():
        target = folder / item.name
        if item.name != "recipe.yaml" and not target.exists():
            target.symlink_to(item)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def _validate(path: Path) -> str:
    """ "ok" or the RecipeError's text; any other exception fails the test."""
    started = time.perf_counter()
    try:
        check_recipe(load_recipe(path))
        outcome = "ok"
    except SynthtuneError as exc:
        assert getattr(exc, "exit_code", 2) == 2 or "recipe" in str(exc), exc
        outcome = str(exc)
    assert time.perf_counter() - started < 5, f"{path}: validation took over 5 s"
    return outcome


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    """Each example validated once first: one-time imports (faker's locales, jinja) are not
    a case's time."""
    for example in EXAMPLES:  # (one whose packaged model is not installed fails: fine)
        with contextlib.suppress(SynthtuneError):
            check_recipe(load_recipe(example))


def test_the_corpus_is_large_and_covers_every_example() -> None:
    assert len(CORPUS) >= 300
    assert {example for example, _, _ in CORPUS} == set(EXAMPLES)


@pytest.mark.parametrize("batch", range(8))
def test_hostile_values_at_every_kind_of_field(tmp_path: Path, batch: int) -> None:
    cases = CORPUS[batch::8]
    errors = 0
    for n, (example, path, value) in enumerate(cases):
        tree = yaml.safe_load(example.read_text(encoding="utf-8"))
        folder = tmp_path / f"case-{n}"
        folder.mkdir()
        recipe = _write(folder, example, _set(tree, path, value))
        outcome = _validate(recipe)
        errors += outcome != "ok"
        if outcome != "ok":
            assert "Traceback" not in outcome
            assert "invalid recipe" in outcome or "error" in outcome.lower(), outcome
        leftovers = {p.name for p in folder.iterdir()} - {p.name for p in example.parent.iterdir()}
        assert leftovers <= {"recipe.yaml"}, f"{example} {path}={value!r} wrote {leftovers}"
    assert errors >= len(cases) // 3  # most hostile values are refused


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=120,
    deadline=5000,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), value=JSONISH)
def test_random_values_at_random_paths(tmp_path: Path, data: st.DataObject, value: Any) -> None:
    example = data.draw(st.sampled_from(EXAMPLES))
    tree = yaml.safe_load(example.read_text(encoding="utf-8"))
    path = data.draw(st.sampled_from(_paths(tree)))
    folder = tmp_path / f"h-{time.perf_counter_ns()}"
    folder.mkdir()
    _validate(_write(folder, example, _set(tree, path, value)))


CLI_SAMPLE = [
    ("medical-qa", ("generate", "n"), math.inf, "generate.n"),
    ("medical-qa", ("seed",), -1, "seed"),
    ("financial-sentiment", ("train", "task"), "magic", "train.task"),
    ("medical-qa", ("train", "lora", "r"), 10**9, "train.lora.r"),
    ("medical-qa", ("generate", "backend"), {"type": "nope"}, "generate.backend"),
    ("medical-qa", ("evaluate", "suites"), ["perplexity", "nope"], "evaluate.suites.1"),
    ("contract-clauses", ("quality", "rules"), ["pack:nope"], "pack:nope"),
    ("health-outlets", ("mix", "real", "train"), "/dev/zero", "/dev/zero"),
    ("health-outlets", ("mix", "real", "test"), "../../../../etc/passwd", "passwd"),
]


@pytest.mark.parametrize(("example", "path", "value", "named"), CLI_SAMPLE)
def test_the_cli_exits_2_naming_the_field(
    tmp_path: Path, example: str, path: tuple[Any, ...], value: Any, named: str
) -> None:
    source = ROOT / "examples" / example / "recipe.yaml"
    tree = yaml.safe_load(source.read_text(encoding="utf-8"))
    recipe = _write(tmp_path, source, _set(tree, path, value))
    result = subprocess.run(
        [sys.executable, "-m", "synthtune", "validate", str(recipe)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert named in output.replace("\n", " ").replace("  ", " "), output
    assert "Traceback" not in output
    assert not (tmp_path / "runs").exists()

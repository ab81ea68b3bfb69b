"""Hostile recipe and rules files: a clear RecipeError naming the file, never a traceback or
a hang (issue 20: non-UTF-8 files, directories, deep nesting, alias bombs)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthtune.config import load_recipe
from synthtune.config.yamlio import MAX_VALUES, read_yaml
from synthtune.errors import RecipeError
from synthtune.rules import load_rules

BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    + ["name: *a9"]
)


def _problem(path: Path, what: str = "recipe") -> str:
    started = time.perf_counter()
    with pytest.raises(RecipeError) as caught:
        read_yaml(path, what)
    assert time.perf_counter() - started < 5
    assert caught.value.path == str(path) and len(caught.value.problems) == 1
    return caught.value.problems[0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name: café\n".encode("latin-1"), "line 1: byte 0xe9 is not UTF-8"),
        ("name: x\n".encode("utf-16"), "is UTF-16 text; save the file as UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file, not a YAML recipe"),
        (("[" * 80 + "]" * 80).encode(), "line 1: nested more than 50 levels deep"),
        (("[" * 100_000 + "]" * 100_000).encode(), "nested too deeply to read"),
        (BOMB.encode(), "expands to more than"),
        (b"a: &a [1, *a]\n", "line 1: an alias refers to a value it is part of"),
        (b"name: [unclosed\n", "not valid YAML"),
    ],
    ids=["latin-1", "utf-16", "binary", "deep", "very-deep", "alias-bomb", "cycle", "syntax"],
)
def test_hostile_files_get_one_clear_problem(tmp_path: Path, content: bytes, expected: str):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(content)
    assert expected in _problem(path)


def test_a_directory_a_missing_file_and_a_huge_file(tmp_path: Path) -> None:
    assert _problem(tmp_path) == "is a directory, not a recipe file"
    assert _problem(tmp_path / "nope.yaml") == "recipe file not found"
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"# " + b"x" * (11 * 1024 * 1024))
    assert "a recipe file may hold 10,485,760 at most" in _problem(huge)


def test_shared_aliases_within_the_limit_still_load(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text("base: &b {x: 1, y: [1, 2]}\none: *b\ntwo: *b\n", encoding="utf-8")
    assert read_yaml(path) == {
        "base": {"x": 1, "y": [1, 2]},
        "one": {"x": 1, "y": [1, 2]},
        "two": {"x": 1, "y": [1, 2]},
    }
    assert MAX_VALUES >= 100_000  # real recipes (hundreds of values) are far below it


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_bytes("name: 心电图\n".encode("utf-8-sig"))
    assert read_yaml(path) == {"name": "心电图"}


def test_load_recipe_and_load_rules_use_the_limits(tmp_path: Path) -> None:
    recipe, rules = tmp_path / "recipe.yaml", tmp_path / "rules.yaml"
    recipe.write_bytes(BOMB.encode())
    with pytest.raises(RecipeError, match="expands to more than"):
        load_recipe(recipe)
    rules.write_bytes('- id: r\n  when: "x"\n  message: é\n'.encode("cp1252"))
    with pytest.raises(RecipeError, match="is not UTF-8"):
        load_rules(rules)


def test_the_cli_exits_2_with_the_message(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    proc = subprocess.run(
        [sys.executable, "-m", "synthtune", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    output = proc.stdout + proc.stderr
    assert "is not UTF-8" in output and "Traceback" not in output

"""A hostile server that echoes the API key (in a 401 body, a header, a reply) leaves the key
in no file of the run and nowhere in the CLI's output (issue 20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from synthtune.secrets import REDACTED, redact, redact_value, register_secret
from synthtune.store import read_records
from synthtune.testing.fake_openai import FakeOpenAI
from tests.conftest import write_recipe

KEY = "sk-hostile-echo-0123456789"


def test_redact_replaces_every_registered_secret() -> None:
    register_secret("short")  # under MIN_LENGTH: ordinary words stay
    register_secret("tok-abcdef-123")
    register_secret("tok-abcdef-123-longer")
    text = "a tok-abcdef-123-longer b tok-abcdef-123 c short"
    assert redact(text) == f"a {REDACTED} b {REDACTED} c short"
    nested = {"k": ["tok-abcdef-123", ("x", "tok-abcdef-123")], "tok-abcdef-123": 1}
    assert redact_value(nested) == {"k": [REDACTED, ("x", REDACTED)], REDACTED: 1}


def test_an_echoing_server_leaves_the_key_nowhere(tmp_path: Path) -> None:
    fake = FakeOpenAI(retry_after_s=0.01)
    with fake as url:
        recipe = write_recipe(
            tmp_path,
            {
                "generate": {
                    "n": 8,
                    "backend": {
                        "type": "openai",
                        "base_url": url,
                        "model": "fake",
                        "max_retries": 1,
                        "api_key_env": "SYNTHTUNE_HOSTILE_KEY",
                        "backoff_s": 0.01,
                        "timeout_s": 5,
                    },
                }
            },
        )
        raw = yaml.safe_load(recipe.read_text(encoding="utf-8"))
        for template in raw["generate"]["templates"]:
            template["prompt"] += " {{ 'leak:401' if age % 2 else 'leak:200' }}"
        recipe.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        env = {**os.environ, "SYNTHTUNE_HOSTILE_KEY": KEY}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "synthtune",
                "generate",
                str(recipe),
                "-o",
                str(tmp_path / "runs"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    # the key did reach the server, and came back in both ways
    assert any(a.authorization == f"Bearer {KEY}" for a in fake.attempts)
    assert {a.status for a in fake.attempts} >= {200, 401}
    assert KEY not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
        if path.suffix == ".parquet":
            rows = [r.model_dump(mode="json") for r in read_records(path)]
            assert KEY not in json.dumps(rows, ensure_ascii=False), path
    dataset = read_records(tmp_path / "runs" / "medical-qa" / "generate" / "dataset.parquet")
    replies = " ".join(r.payload.text() + " ".join(r.reasons) for r in dataset)
    assert REDACTED in replies  # the echoed key was there, and was replaced

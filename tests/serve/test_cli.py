"""``synthtune serve`` from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
from typer.testing import CliRunner

from synthtune.cli import app


def test_cli_reports_a_missing_key_variable_and_a_bad_path(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {k: v for k, v in os.environ.items() if k != "SYNTHTUNE_NO_SUCH_KEY"}
    result = runner.invoke(
        app, ["serve", str(tmp_path), "--api-key-env", "SYNTHTUNE_NO_SUCH_KEY"], env=env
    )
    assert result.exit_code == 1
    assert "SYNTHTUNE_NO_SUCH_KEY" in result.output
    result = runner.invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 1 and "neither a model folder" in " ".join(result.output.split())


def test_cli_serves_a_model_with_an_adapter_and_a_key(tiny_model_dir: Path, lora_dir: Path) -> None:
    env = {**os.environ, "SERVE_TEST_KEY": "sk-cli-key", "COLUMNS": "400"}
    command = [
        sys.executable,
        "-m",
        "synthtune",
        "serve",
        str(tiny_model_dir),
        "--port",
        "0",
        "--adapter",
        f"clinic={lora_dir}",
        "--api-key-env",
        "SERVE_TEST_KEY",
        "--max-tokens",
        "16",
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the socket listens
        assert line.startswith("serving "), proc.stderr.read() if proc.poll() is not None else line
        url = line.split(" at ")[1].split()[0]
        client = openai.OpenAI(base_url=url, api_key="sk-cli-key", max_retries=0, timeout=60)
        names = [m.id for m in client.models.list().data]
        assert names == [tiny_model_dir.resolve().name, "clinic"]
        reply = client.chat.completions.create(
            model="clinic", messages=[{"role": "user", "content": "Patient 1"}]
        )
        assert reply.usage.completion_tokens <= 16
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "sk-cli-key" not in proc.stdout.read() + proc.stderr.read()

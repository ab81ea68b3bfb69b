"""The architecture holds (docs/architecture.md): the import-linter contracts in pyproject
(layers; the stages independent; the core below everything), one runner writing completion
marks, and no stage switching on the task's name."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SRC = ROOT / "src" / "synthtune"
STAGE_FILES = sorted(SRC.glob("*/stage.py"))


def test_import_linter_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "import-linter is a dev dependency (pip install -e '.[dev]')"
    result = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def test_only_the_runner_marks_stages_complete() -> None:
    writers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if re.search(r"\.mark_complete\(", path.read_text(encoding="utf-8"))
    )
    assert writers == ["pipeline.py"]


def test_no_stage_switches_on_the_task_or_modality() -> None:
    assert len(STAGE_FILES) == 6
    switch = re.compile(
        r"""(task|\.type|space)\s*(==|!=|in)\s*\(?["'](causal_lm|classification|clip|image|"""
        r"""procedural|diffusers|pixels)["']"""
    )
    found = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in STAGE_FILES
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if switch.search(line)
    ]
    assert found == []

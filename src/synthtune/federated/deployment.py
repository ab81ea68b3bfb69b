"""SecAgg+ across machines: Flower's Deployment Engine, driven by ``federated server/client``.

SecAgg+ needs Flower's Message API, whose deployment is a SuperLink (the server side), one
SuperNode per party, and a run submitted with ``flwr run`` (the apps: ``flower_app.py``).
These functions start those Flower processes with the right flags and configs, so a party
still types one ``synthtune`` command:

* server: ``flower-superlink`` at ``federated.address`` (TLS from ``federated.
  tls_certificates``), then ``flwr run`` of a one-file app folder pointing at
  ``synthtune.federated.flower_app``, with the recipe and run folder as run config; the
  run's status is read back with ``flwr ls`` (``flwr run`` exits 0 even when the ServerApp
  fails), then the SuperLink is stopped. Results land in the run folder as with gRPC.
* client: ``flower-supernode`` connected to the server, with this party's recipe, run folder
  and base as node config; it serves until stopped (Ctrl-C), as a SuperNode does.

Flower's configuration (``FLWR_HOME``) and logs stay under ``<run>/federated/flower/``;
runtime dependency installation is off (the apps are synthtune's, already installed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synthtune.config import Recipe
from synthtune.errors import RecipeError, StageError

Log = Callable[[str], None]
CONNECTION = "synthtune"  # the SuperLink connection name in FLWR_HOME/config.toml

APP_TOML = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "synthtune-federation"
version = "1.0.0"
description = "synthtune federated fine-tuning with SecAgg+"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "synthtune"

[tool.flwr.app.components]
serverapp = "synthtune.federated.flower_app:server_app"
clientapp = "synthtune.federated.flower_app:client_app"

[tool.flwr.app.config]
recipe = ""
run-dir = ""
"""


def check_secure_deployment(recipe: Recipe, paths: list[Path]) -> None:
    """What a SecAgg+ deployment needs before any process starts."""
    secure = recipe.federated.secure_aggregation
    problems = []
    if secure is not None and secure.max_weight is None:
        problems.append(
            "federated.secure_aggregation.max_weight: required across machines (the server "
            "cannot see the parties' sizes); set it to the largest party's training records"
        )
    for path in paths:
        if "'" in str(path) or '"' in str(path):
            problems.append(f"{path}: quotes in a path cannot pass through Flower's configs")
    if problems:
        raise RecipeError(str(recipe.source), problems)


def flower_bin(name: str) -> str:
    """A Flower command of this interpreter's environment (an installed venv may not be on
    PATH; the SuperLink also looks its helper ``flower-superexec`` up on PATH)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise StageError(f"federated: `{name}` not found; install synthtune[federated]")
    return found


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP (kill, systemctl stop, a closed terminal) raise KeyboardInterrupt while
    Flower processes run, so the ``finally`` that stops them runs too: they live in their own
    session and would otherwise outlive synthtune, keeping the port and the rounds going."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may take signals (an embedding program's own business)
        return
    saved = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def flower_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["FLWR_HOME"] = str(home)
    return env


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise StageError(f"federated: address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def local_host(host: str) -> str:
    """Where this machine reaches a server bound to ``host`` (a wildcard: loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _wait_listening(host: str, port: int, process: subprocess.Popen[Any], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StageError(f"federated: flower-superlink exited: {log_tail(log_path)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        time.sleep(0.2)  # polling a port another process opens; no event to wait on
    raise StageError(f"federated: flower-superlink not listening after 60 s: {log_tail(log_path)}")


def log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tls_args(recipe: Recipe) -> list[str]:
    paths = recipe.federated.tls_certificates
    if not paths:
        return ["--insecure"]
    ca, cert, key = (str(Path(p).resolve()) for p in paths)
    return ["--ssl-ca-certfile", ca, "--ssl-certfile", cert, "--ssl-keyfile", key]


def _write_home(home: Path, host: str, port: int, ca: str | None) -> None:
    """Flower's CLI config: one connection to our SuperLink (TOML strings written as JSON
    strings, which TOML reads the same, so a path needs no escaping by hand)."""
    home.mkdir(parents=True, exist_ok=True)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    security = f"root-certificates = {json.dumps(ca)}" if ca else "insecure = true"
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f"address = {json.dumps(where)}\n{security}\n",
        encoding="utf-8",
    )


def serve_secure(
    recipe: Recipe, recipe_path: Path, run_dir: Path, address: str, log: Log = print
) -> dict[str, Any]:
    """Run the federation as a SuperLink + one ``flwr run``; returns its summary."""
    from synthtune.store import RunStore

    recipe_path, run_dir = recipe_path.resolve(), run_dir.resolve()
    check_secure_deployment(recipe, [recipe_path, run_dir])
    flower = run_dir / "federated" / "flower"
    app, home, logs = flower / "app", flower / "home", flower / "logs"
    for folder in (app, logs):
        folder.mkdir(parents=True, exist_ok=True)
    (app / "pyproject.toml").write_text(APP_TOML, encoding="utf-8")
    host, port = _host_port(address)
    reach = local_host(host)
    paths = recipe.federated.tls_certificates
    _write_home(home, reach, port, str(Path(paths[0]).resolve()) if paths else None)
    env = flower_env(home)
    link_log = logs / "superlink.log"
    command = [
        flower_bin("flower-superlink"),
        *("--host", host, "--port", str(port)),
        "--disable-runtime-dependency-installation",
        *_tls_args(recipe),
    ]
    run_config = f"recipe='{recipe_path}' run-dir='{run_dir}'"
    submit = [flower_bin("flwr"), "run", str(app), CONNECTION, "--stream"]
    log(f"federated: starting a Flower SuperLink (SecAgg+) on {host}:{port}; log {link_log}")
    with stopped_by_signals(), link_log.open("ab") as sink:
        superlink = subprocess.Popen(
            command,
            env=env,
            cwd=flower,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_listening(reach, port, superlink, link_log)
            submitted = subprocess.run(
                [*submit, "--run-config", run_config], env=env, cwd=flower, check=False
            )
            if submitted.returncode != 0:
                code, tail = submitted.returncode, log_tail(link_log)
                raise StageError(f"federated: `flwr run` failed (exit {code}): {tail}")
            status = _last_run_status(env, flower)
        finally:
            _stop(superlink)
    if status.get("status") != "finished:completed":
        raise StageError(
            f"federated: the Flower run ended {status.get('status')!r}: "
            f"{status.get('status-details') or log_tail(link_log)}"
        )
    summary: dict[str, Any] = RunStore(run_dir).read_json("federated", "summary.json")
    return summary


def _last_run_status(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    listed = subprocess.run(
        [flower_bin("flwr"), "ls", CONNECTION, "--format", "json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        runs = json.loads(listed.stdout).get("runs", [])
    except json.JSONDecodeError:
        return {"status": "unknown", "status-details": listed.stdout + listed.stderr}
    # newest first; this SuperLink's in-memory state only ever holds our one run
    return dict(runs[0]) if runs else {"status": "unknown", "status-details": "no run listed"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def supernode_command(
    recipe: Recipe,
    recipe_path: Path,
    run_dir: Path,
    base: str,
    server: str,
    root_certificates: Path | None,
) -> list[str]:
    """The ``flower-supernode`` command of one party (its own runtime port)."""
    recipe_path, run_dir = recipe_path.resolve(), run_dir.resolve()
    check_secure_deployment(recipe, [recipe_path, run_dir, Path(base)])
    security = (
        ["--root-certificates", str(root_certificates.resolve())]
        if root_certificates
        else ["--insecure"]
    )
    return [
        flower_bin("flower-supernode"),
        "--superlink",
        server,
        "--port",
        str(free_port()),
        *security,
        "--node-config",
        f"recipe='{recipe_path}' run-dir='{run_dir}' base='{base}'",
    ]


def start_supernode(command: list[str], run_dir: Path) -> subprocess.Popen[Any]:
    """Start a SuperNode in its own process group (stop it with ``stop_supernode``)."""
    logs = run_dir / "federated" / "flower"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "supernode.log").open("ab") as sink:
        return subprocess.Popen(
            command,
            env=flower_env(logs / "home"),
            cwd=logs,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_supernode(process: subprocess.Popen[Any]) -> None:
    _stop(process)

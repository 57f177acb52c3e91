"""Shared helpers for the Helm chart and Dockerfile tests: where things are,
helm-sdkpy through tests/blackbox/helm_tool.py in a child process, and
checkov from its own venv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "latchkey"
HELM_TOOL = Path(__file__).with_name("helm_tool.py")
SHAPES = {"default": "values.yaml", "sqlite": "values-sqlite.yaml", "postgres": "values-postgres.yaml"}
TOOL_TIMEOUT = 180


def chart_copy(dest: Path, values_file: str) -> Path:
    """A copy of the chart whose values.yaml is `values_file` (helm-sdkpy's
    lint reads only the chart's own values)."""
    target = dest / "latchkey"
    shutil.copytree(CHART, target)
    shutil.copyfile(CHART / values_file, target / "values.yaml")
    return target


def helm_tool(*args: str, log: Path) -> tuple[int, dict]:
    """Runs helm_tool.py; returns (exit status, its JSON). Helm's own chatter
    goes to `log`."""
    with open(log, "wb") as err:
        try:
            p = subprocess.run(
                [sys.executable, str(HELM_TOOL), *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                timeout=TOOL_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"helm_tool.py {' '.join(args)} timed out after {TOOL_TIMEOUT}s; log: {tail(log)}")
    try:
        return p.returncode, json.loads(p.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"helm_tool.py {' '.join(args)} printed no JSON (exit {p.returncode}):\n"
            f"{p.stdout.decode(errors='replace')[-2000:]}\n--- log ---\n{tail(log)}"
        )


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def require_helm_sdkpy() -> None:
    try:
        import helm_sdkpy  # noqa: F401
    except ImportError:
        pytest.fail(
            "helm-sdkpy is not installed in this venv: run scripts/test.sh, or "
            "`pip install --ignore-requires-python helm-sdkpy==0.1.32`"
        )


class Rendered:
    """The manifests of one `helm install`, hooks included."""

    def __init__(self, release: dict):
        self.release = release
        self.docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
        self.hook_docs = [yaml.safe_load(h["manifest"]) for h in release["hooks"]]

    @property
    def all(self) -> list[dict]:
        return self.docs + self.hook_docs

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.all)

    def one(self, kind: str) -> dict:
        found = [d for d in self.all if d["kind"] == kind]
        assert len(found) == 1, f"expected one {kind}, got {len(found)}: {self.kinds()}"
        return found[0]

    def maybe(self, kind: str) -> dict | None:
        found = [d for d in self.all if d["kind"] == kind]
        return found[0] if found else None

    def service(self, headless: bool = False) -> dict:
        found = [d for d in self.all if d["kind"] == "Service"
                 and (d["spec"].get("clusterIP") == "None") == headless]
        assert len(found) == 1, [d["metadata"]["name"] for d in self.all if d["kind"] == "Service"]
        return found[0]

    def toml(self) -> str:
        return self.one("ConfigMap")["data"]["latchkey.toml"]

    def server(self) -> dict:
        containers = self.one("Deployment")["spec"]["template"]["spec"]["containers"]
        return next(c for c in containers if c["name"] == "latchkey")


def render(chart: Path, log: Path, values: dict | None = None, apis: tuple[str, ...] = ()) -> tuple[Rendered | None, str]:
    """(the rendered release, "") or (None, Helm's error)."""
    args = ["render", str(chart)]
    if values:
        args += ["--values", json.dumps(values)]
    for api in apis:
        args += ["--api", api]
    status, out = helm_tool(*args, log=log)
    if "error" in out:
        assert status != 0
        return None, out["error"]
    assert status == 0, out
    return Rendered(out), ""


def checkov_exe() -> str:
    exe = os.environ.get("CHECKOV") or shutil.which("checkov")
    default = Path.home() / ".cache" / "latchkey-checkov-venv" / "bin" / "checkov"
    if not exe and default.is_file():
        exe = str(default)
    if not exe:
        pytest.fail("checkov not found: set CHECKOV or run scripts/test.sh (it makes ~/.cache/latchkey-checkov-venv)")
    return exe


def checkov(directory: Path, framework: str) -> dict:
    """checkov's JSON report for one framework. --skip-download keeps it off
    the network, and the proxy variables make sure of it: any request it
    still tried would go to a closed port on this machine."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        BC_SKIP_MAPPING="TRUE",
        LOG_LEVEL="WARNING",
    )
    p = subprocess.run(
        [checkov_exe(), "-d", str(directory), "--framework", framework, "-o", "json",
         "--compact", "--skip-download"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        env=env,
    )
    try:
        report = json.loads(p.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON (exit {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    reports = report if isinstance(report, list) else [report]
    (found,) = [r for r in reports if r.get("check_type") == framework]
    assert found["summary"]["parsing_errors"] == 0, found["summary"]
    assert found["summary"]["resource_count"] > 0, found["summary"]
    return found

"""The Dockerfile agrees with the binary and the Helm chart. No Docker
engine runs here, so the image is not built: the file is read, its
ENTRYPOINT and CMD are parsed by the built binary, and checkov scans it.

- the entrypoint is the `latchkey` binary the build stage compiles;
- CMD's subcommand and flags are ones `latchkey` accepts;
- the ports it exposes and listens on are the chart's;
- it runs as the non-root user the chart's securityContext names, on a
  distroless runtime, and its data directory is the chart's;
- the build context (.dockerignore) keeps what cargo needs.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from chart import CHART, ROOT, checkov

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined."""
    out, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        assert result, f"{ins} before the first FROM"
        result[-1].append(ins)
    return result


def exec_form(stage: list[tuple[str, str]], name: str) -> list[str]:
    (args,) = [a for i, a in stage if i == name]
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{name} must be exec form: {args}"
    return value


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def run(latchkey_bin: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(latchkey_bin), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def runtime() -> list[tuple[str, str]]:
    return stages()[-1]


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_multi_stage_rust_build_then_distroless_runtime():
    all_stages = stages()
    assert len(all_stages) >= 2
    build_from = all_stages[0][0][1]
    m = re.match(r"rust:(\d+)\.(\d+)(\S*)\s+AS\s+(\w+)$", build_from, re.I)
    assert m, f"the first stage builds with an official rust image: FROM {build_from}"
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    need = tuple(int(x) for x in manifest["package"]["rust-version"].split(".")[:2])
    assert (int(m.group(1)), int(m.group(2))) >= need, f"{build_from} is older than rust-version {need}"
    runtime_from = all_stages[-1][0][1]
    assert re.match(r"gcr\.io/distroless/cc-debian\d+:nonroot$", runtime_from), runtime_from
    # glibc of the builder (Debian bookworm = 12) matches the runtime's.
    assert "bookworm" in build_from and "debian12" in runtime_from


def test_entrypoint_is_the_built_latchkey_binary(runtime):
    entrypoint = exec_form(runtime, "ENTRYPOINT")
    assert entrypoint == ["/usr/local/bin/latchkey"]
    build = " ".join(a for i, a in stages()[0] if i == "RUN")
    assert "cargo build --release --locked --bin latchkey" in build
    assert "target/release/latchkey /out/usr/local/bin/latchkey" in build
    copies = [a for i, a in runtime if i == "COPY"]
    assert any(c.endswith("/out/usr/local/bin/latchkey /usr/local/bin/latchkey") for c in copies), copies
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert {"name": "latchkey", "path": "src/main.rs"} in manifest["bin"]


def test_cmd_is_accepted_by_the_binary(runtime, latchkey_bin):
    cmd = exec_form(runtime, "CMD")
    top = run(latchkey_bin, "--help")
    assert top.returncode == 0
    assert re.search(rf"^\s+{re.escape(cmd[0])}\s", top.stdout, re.M), f"`{cmd[0]}` is not a subcommand:\n{top.stdout}"
    # clap parses up to --help and refuses any flag it does not know.
    p = run(latchkey_bin, *cmd, "--help")
    assert p.returncode == 0, f"latchkey {' '.join(cmd)}: {p.stderr}"
    for f in [a for a in cmd if a.startswith("--")]:
        assert f in p.stdout, f"{f} is not in `latchkey {cmd[0]} --help`"
    assert run(latchkey_bin, *cmd, "--no-such-flag", "--help").returncode != 0


def test_chart_commands_are_subcommands_of_the_image(latchkey_bin):
    """The chart replaces CMD with `serve …` and `migrate …` (test_helm.py
    runs its full argument lists); both are subcommands of the entrypoint."""
    text = "\n".join((CHART / "templates" / name).read_text() for name in ("deployment.yaml", "migrate-job.yaml"))
    for sub in ("serve", "migrate"):
        assert re.search(rf"args:\n\s+- {sub}\n", text), f"the chart never runs `{sub}`"
        assert run(latchkey_bin, sub, "--help").returncode == 0


def test_ports_match_the_chart(runtime, values):
    (exposed,) = [a for i, a in runtime if i == "EXPOSE"]
    ports = sorted(int(p.split("/")[0]) for p in exposed.split())
    chart_ports = sorted([values["service"]["grpcPort"], values["service"]["httpPort"]])
    assert ports == chart_ports == [8080, 50051]
    cmd = exec_form(runtime, "CMD")
    assert flag(cmd, "--grpc-addr") == f"0.0.0.0:{values['service']['grpcPort']}"
    assert flag(cmd, "--http-addr") == f"0.0.0.0:{values['service']['httpPort']}"


def test_runs_as_the_charts_non_root_user(runtime, values):
    users = [a for i, a in runtime if i == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]} must be a numeric non-root uid (runAsNonRoot checks it)"
    assert int(uid) == values["securityContext"]["runAsUser"] == values["podSecurityContext"]["runAsUser"]
    assert gid and int(gid) == values["securityContext"]["runAsGroup"]


def test_data_dir_matches_the_chart(runtime):
    cmd = exec_form(runtime, "CMD")
    data_dir = flag(cmd, "--data-dir")
    # The chart's data directory: its mount path and latchkey.toml's data_dir.
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    m = re.search(r'define "latchkey\.dataDir" -}}(.+?){{', helpers)
    assert m and m.group(1) == data_dir, (m and m.group(1), data_dir)
    uid = [a for i, a in runtime if i == "USER"][-1]
    owned = [a for i, a in runtime if i == "COPY" and a.endswith(f" {data_dir}")]
    assert owned and f"--chown={uid}" in owned[0], f"{data_dir} must belong to {uid}: {owned}"


def test_build_context_keeps_what_cargo_needs():
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "the context starts empty and lists what it keeps"
    kept = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert kept == {"Cargo.toml", "Cargo.lock", "build.rs", "proto", "src"}, kept
    # build.rs compiles proto/ only; nothing outside the kept paths is read.
    build_rs = (ROOT / "build.rs").read_text()
    for path in re.findall(r'"((?:proto|src|tests|bench|helm|deploy|scripts)/[^"]*)"', build_rs):
        assert path.split("/")[0] in kept, f"build.rs reads {path}, which .dockerignore leaves out"


def test_checkov_finds_nothing(tmp_path):
    (tmp_path / "Dockerfile").write_text(DOCKERFILE.read_text())
    report = checkov(tmp_path, "dockerfile")
    failed = [f"{c['check_id']} {c['check_name']}" for c in report["results"]["failed_checks"]]
    assert not failed, "checkov on the Dockerfile:\n" + "\n".join(failed)
    passed = {c["check_id"] for c in report["results"]["passed_checks"]}
    # USER set (not root), no :latest, HEALTHCHECK stated.
    assert {"CKV_DOCKER_3", "CKV_DOCKER_7", "CKV_DOCKER_2", "CKV_DOCKER_8"} <= passed, sorted(passed)

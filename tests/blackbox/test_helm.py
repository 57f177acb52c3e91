"""The Helm chart in helm/latchkey, through Helm's own Go library (PyPI
helm-sdkpy) with no cluster:

- `helm lint` of each value shape, each as a copy of the chart with that
  values file as values.yaml (helm-sdkpy's lint reads only values.yaml);
- the manifests Helm would apply, from a real `helm install` against the
  fake API server in helm_tool.py (helm-sdkpy has no `template` action and
  no dry-run), validated with kubernetes-validate (strict: unknown fields are
  errors) and scanned with checkov;
- on those manifests: the native gRPC probes, the restrictive
  securityContext, Secrets by reference only, migrations before the pods,
  the NetworkPolicy, and the shapes the chart refuses;
- the rendered latchkey.toml, checked by the built binary
  (`latchkey config check`), and the container arguments, parsed by it.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from chart import CHART, SHAPES, Rendered, chart_copy, checkov, helm_tool, render, require_helm_sdkpy
from test_tls import Pki

# Kubernetes versions the manifests must be valid for: the chart's
# kubeVersion floor (native gRPC probes are GA from 1.27) and the newest
# schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.27.0", kubernetes_validate.utils.latest_version() + ".0"]

# checkov findings the chart accepts, and why. Everything else fails the test.
CHECKOV_ACCEPTED = {
    # The image is built from this repository's Dockerfile and has no
    # published digest yet; image.digest pins one (test_image_digest_pins_the_image).
    "CKV_K8S_43": "Image should use digest",
    # Latchkey reads its secrets from the environment only
    # (LATCHKEY_MASTER_KEY, LATCHKEY_DATABASE_URL, LATCHKEY_BOOTSTRAP_ADMIN_TOKEN):
    # there is no *_FILE variant to mount them as files.
    "CKV_K8S_35": "Prefer using secrets as files over secrets as environment variables",
    # IfNotPresent with versioned tags (or a digest); `Always` is one value away.
    "CKV_K8S_15": "Image Pull Policy should be Always",
}

SECRET_ENV = {
    "LATCHKEY_MASTER_KEY",
    "LATCHKEY_DATABASE_URL",
    "LATCHKEY_BOOTSTRAP_ADMIN_TOKEN",
    "LATCHKEY_REDIS_URL",
}


@pytest.fixture(scope="session", autouse=True)
def _helm_sdkpy():
    require_helm_sdkpy()


@pytest.fixture(scope="session")
def shape_charts(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("charts")
    charts = {}
    for shape, values_file in SHAPES.items():
        (base / shape).mkdir()
        charts[shape] = chart_copy(base / shape, values_file)
    return charts


@pytest.fixture(scope="session")
def rendered(shape_charts, tmp_path_factory) -> dict[str, Rendered]:
    logs = tmp_path_factory.mktemp("helm-logs")
    out = {}
    for shape, chart in shape_charts.items():
        release, error = render(chart, logs / f"{shape}.log")
        assert release is not None, f"helm install of the {shape} shape failed: {error}"
        out[shape] = release
    return out


def render_with(tmp_path: Path, values: dict, shape: str = "default", apis: tuple[str, ...] = ()):
    chart = chart_copy(tmp_path, SHAPES[shape])
    return render(chart, tmp_path / "helm.log", values, apis)


def pod_specs(r: Rendered) -> list[tuple[str, dict]]:
    specs = []
    for d in r.all:
        if d["kind"] in ("Deployment", "Job"):
            specs.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
    return specs


def containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers") or []) + list(spec["containers"])


def run_binary(latchkey_bin: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(latchkey_bin), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
    )


# ---------------------------------------------------------------------------
# helm lint


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_lint_passes(shape_charts, tmp_path, shape):
    status, result = helm_tool("lint", str(shape_charts[shape]), log=tmp_path / "lint.log")
    assert status == 0, result
    assert result["linted"] == 1, result
    bad = [m for m in result["messages"] if m["severity"] in ("WARNING", "ERROR", "UNKNOWN")]
    assert not bad and result["errors"] == 0, f"helm lint of the {shape} shape: {result}"


def test_lint_fails_on_a_misspelt_value(tmp_path):
    """The lint above can fail: values.schema.json refuses unknown keys."""
    chart = chart_copy(tmp_path, "values.yaml")
    values = yaml.safe_load((chart / "values.yaml").read_text())
    values["replicaCont"] = 1
    values["config"]["keys"] = {"prefx": "bk"}
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    status, result = helm_tool("lint", str(chart), log=tmp_path / "lint.log")
    assert result["errors"] > 0, result
    assert {"severity": "ERROR", "path": "values.yaml"} in result["messages"], result


def test_shape_files_define_every_value():
    """Each shape file is a whole values.yaml (the lint copies use it as one)."""

    def paths(tree, prefix=""):
        out = set()
        if isinstance(tree, dict):
            for k, v in tree.items():
                if prefix == "config." or (prefix.startswith("config.") and prefix.count(".") > 1):
                    continue
                out.add(prefix + k)
                if isinstance(v, dict) and v:
                    out |= paths(v, f"{prefix}{k}.")
        return out

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert yaml.safe_load((CHART / "values-sqlite.yaml").read_text()) == defaults, "the SQLite shape is the defaults"
    base = paths(defaults)
    for values_file in ("values-sqlite.yaml", "values-postgres.yaml"):
        shape = paths(yaml.safe_load((CHART / values_file).read_text()))
        assert shape == base, f"{values_file}: missing {sorted(base - shape)}, extra {sorted(shape - base)}"


# ---------------------------------------------------------------------------
# What each shape renders


def test_sqlite_shape_resources(rendered):
    for shape in ("default", "sqlite"):
        r = rendered[shape]
        assert r.kinds() == sorted(
            ["ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Service", "Service", "ServiceAccount"]
        ), (shape, r.kinds())
        dep = r.one("Deployment")
        assert dep["spec"]["replicas"] == 1
        assert dep["spec"]["strategy"]["type"] == "Recreate"
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == r.one("PersistentVolumeClaim")["metadata"]["name"]
        assert "database_url" not in r.toml()


def test_postgres_shape_resources(rendered):
    r = rendered["postgres"]
    assert r.kinds() == sorted(
        ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "NetworkPolicy",
         "PodDisruptionBudget", "Service", "Service", "ServiceAccount"]
    ), r.kinds()
    dep = r.one("Deployment")
    assert "replicas" not in dep["spec"], "the HorizontalPodAutoscaler owns the replica count"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = r.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    spread = dep["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread and all(c["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"] for c in spread)
    env = {e["name"]: e for e in r.server()["env"]}
    assert env["LATCHKEY_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "latchkey-database", "key": "database-url"}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_manifests_are_valid_kubernetes(rendered, shape):
    for version in KUBE_VERSIONS:
        for doc in rendered[shape].all:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{shape}: {doc['kind']}/{doc['metadata']['name']} is not valid Kubernetes {version}: {e.message} at {list(e.path)}")


def test_validation_can_fail():
    """kubernetes-validate in strict mode does refuse a misspelt field."""
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": 1}], "selectr": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize("shape", ["sqlite", "postgres"])
def test_checkov_finds_nothing_unaccepted(rendered, tmp_path, shape):
    for i, doc in enumerate(rendered[shape].all):
        (tmp_path / f"{i:02d}-{doc['kind'].lower()}.yaml").write_text(yaml.safe_dump(doc))
    report = checkov(tmp_path, "kubernetes")
    failed = report["results"]["failed_checks"]
    unaccepted = [f"{c['check_id']} {c['check_name']} ({c['resource']})" for c in failed if c["check_id"] not in CHECKOV_ACCEPTED]
    assert not unaccepted, f"checkov on the {shape} shape:\n" + "\n".join(unaccepted)
    passed = {c["check_id"] for c in report["results"]["passed_checks"]}
    # The checks for what this chart promises ran, and passed.
    for check in ("CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_37",
                  "CKV_K8S_38", "CKV_K8S_31", "CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_11", "CKV_K8S_13"):
        assert check in passed, f"{check} did not pass on the {shape} shape"


# ---------------------------------------------------------------------------
# Probes, securityContext, resources


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_native_grpc_probes(rendered, shape):
    server = rendered[shape].server()
    grpc_port = next(p["containerPort"] for p in server["ports"] if p["name"] == "grpc")
    for probe in ("startupProbe", "readinessProbe"):
        spec = server[probe]
        # grpc.health.v1 on the gRPC port, overall service "" (Latchkey sets
        # it NOT_SERVING while the store is unreachable and while draining).
        assert spec["grpc"] == {"port": grpc_port}, (probe, spec)
        assert not ({"httpGet", "tcpSocket", "exec"} & set(spec)), (probe, spec)
    # Liveness asks for the service that stays SERVING through a store
    # outage (tests/it/observe.rs checks the server side): an outage takes
    # pods out of rotation, it never restarts them.
    liveness = server["livenessProbe"]
    assert liveness["grpc"] == {"port": grpc_port, "service": "latchkey.liveness"}, liveness
    assert not ({"httpGet", "tcpSocket", "exec"} & set(liveness)), liveness
    service = rendered[shape].service()
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"grpc": 50051, "http": 8080}
    # The headless Service: one DNS record per ready pod, gRPC only, for
    # Envoy's STRICT_DNS cluster and client-side balancing.
    headless = rendered[shape].service(headless=True)
    assert headless["metadata"]["name"] == service["metadata"]["name"] + "-headless"
    assert [(p["name"], p["port"]) for p in headless["spec"]["ports"]] == [("grpc", 50051)]
    assert headless["spec"]["selector"] == service["spec"]["selector"]
    assert not headless["spec"].get("publishNotReadyAddresses")


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_restrictive_security_context(rendered, shape):
    r = rendered[shape]
    assert pod_specs(r)
    for where, spec in pod_specs(r):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, (where, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (where, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (where, c["name"])
            assert sc["privileged"] is False, (where, c["name"])
            assert sc["capabilities"] == {"drop": ["ALL"]}, (where, c["name"])
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, (where, c["name"])
            res = c["resources"]
            assert res["requests"]["cpu"] and res["requests"]["memory"], (where, c["name"])
            assert res["limits"]["cpu"] and res["limits"]["memory"], (where, c["name"])
    assert r.one("ServiceAccount")["automountServiceAccountToken"] is False


def test_security_context_cannot_be_loosened(tmp_path):
    for i, values in enumerate((
        {"securityContext": {"readOnlyRootFilesystem": False}},
        {"securityContext": {"allowPrivilegeEscalation": True}},
        {"podSecurityContext": {"runAsNonRoot": False}},
    )):
        release, error = render_with(tmp_path / str(i), values)
        assert release is None, f"{values} was accepted"
        assert "values don't meet the specifications of the schema" in error or "schema" in error, error


def test_image_digest_pins_the_image(tmp_path):
    digest = "sha256:" + "ab" * 32
    release, error = render_with(tmp_path, {"image": {"repository": "registry.example/latchkey", "digest": digest}})
    assert release, error
    for _, spec in pod_specs(release):
        for c in containers(spec):
            assert c["image"] == f"registry.example/latchkey@{digest}"


# ---------------------------------------------------------------------------
# Secrets only by reference; the config file


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_no_secret_in_values_or_configmap(rendered, shape):
    r = rendered[shape]
    assert "Secret" not in r.kinds(), "the chart creates no Secret: it references existing ones"
    toml = r.toml()
    assert not re.search(r"postgres(ql)?://|redis://|master_key|bootstrap|password", toml, re.I), toml
    for _, spec in pod_specs(r):
        for c in containers(spec):
            for e in c.get("env") or []:
                if e["name"] in SECRET_ENV:
                    assert "value" not in e and set(e["valueFrom"]) == {"secretKeyRef"}, (c["name"], e)


def test_every_secret_is_a_reference(tmp_path):
    values = {
        "bootstrapAdminToken": {"existingSecret": "lk-admin", "key": "token"},
        "redis": {"existingSecret": "lk-redis", "key": "url"},
    }
    release, error = render_with(tmp_path, values, shape="postgres")
    assert release, error
    env = {e["name"]: e for e in release.server()["env"]}
    assert set(env) >= SECRET_ENV
    assert env["LATCHKEY_BOOTSTRAP_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "lk-admin", "key": "token"}
    assert env["LATCHKEY_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "lk-redis", "key": "url"}
    assert env["LATCHKEY_MASTER_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "latchkey-master-key", "key": "master-key"}
    for e in env.values():
        if e["name"] in SECRET_ENV:
            assert "value" not in e


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_rendered_config_passes_config_check(rendered, latchkey_bin, tmp_path, shape):
    path = tmp_path / "latchkey.toml"
    path.write_text(rendered[shape].toml())
    p = run_binary(latchkey_bin, "config", "check", str(path))
    assert p.returncode == 0, f"latchkey config check refused the {shape} shape's file:\n{path.read_text()}\n{p.stderr}"
    assert "grpc 0.0.0.0:50051 http 0.0.0.0:8080" in p.stdout, p.stdout
    assert "database sqlite:///var/lib/latchkey/latchkey.db" in p.stdout, p.stdout


# A value for every key values.schema.json allows under `config`, each one a
# valid non-default. If the schema gains a key, this table must too, and the
# binary must accept it: the schema offers only real keys of latchkey.toml.
EVERY_CONFIG_KEY = {
    "log_format": "text",
    "shutdown_grace_seconds": 15,
    "health_interval_ms": 1500,
    "usage_flush_interval_ms": 4000,
    "keys": {"prefix": "bk", "default_ttl_days": 30, "max_ttl_days": 365,
             "default_overlap_seconds": 3600, "max_overlap_days": 7},
    "check": {"require_auth": True, "trusted_proxies": ["10.0.0.0/8", "192.0.2.1"], "store_header": "x-beep-store-id"},
    "cache": {"max_entries": 5000, "ttl_seconds": 30, "negative_ttl_seconds": 2},
    "store_statement_timeout_ms": 3000,
    "store_max_connections": 12,
    "store_min_connections": 4,
    "limits": {"max_list_items": 50, "max_message_bytes": 65536, "http_header_timeout_ms": 5000,
               "http_body_timeout_ms": 5000, "http_max_body_bytes": 32768},
    "tls": {"min_version": "1.3", "reload_interval_ms": 5000},
    "ext_authz": {"api_key_header": "x-key", "query_param": "api_key", "strip_credential": True,
                  "header_prefix": "x-auth-", "public_routes": ["GET /v2/status", "POST /v2/hooks/**"],
                  "trusted_hops": 1, "dynamic_metadata": False},
    "tokens": {"issuer": "https://auth.example.com", "audience": "api", "algorithm": "ES256",
               "access_ttl_seconds": 1800, "refresh_ttl_seconds": 86400, "code_ttl_seconds": 30,
               "exchange_ttl_seconds": 600, "leeway_seconds": 10, "user_header": "x-user"},
    "plans": [{"name": "basic", "permissions": ["feedback.read"]},
              {"name": "pro", "extends": "basic", "permissions": ["feedback.*"]}],
    "roles": {"reader": ["feedback.read"], "writer": ["feedback.read", "feedback.write"]},
    "signing": {"tolerance_seconds": 120, "url_validity_days": 7, "default_overlap_seconds": 600,
                "max_overlap_days": 3, "webhook_headers": ["x-hook-signature"],
                "webhook_secret_header": "x-hook-secret", "request_header": "x-signature",
                "reveal_ttl_seconds": 600, "reveal_base_url": "https://auth.example.com",
                "feed_path_prefix": "/feeds/"},
}


def test_every_schema_config_key_is_a_real_key(latchkey_bin, tmp_path):
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]

    def schema_paths(s, prefix=""):
        out = set()
        for k, sub in (s.get("properties") or {}).items():
            out.add(prefix + k)
            if sub.get("type") == "object" and "properties" in sub:
                out |= schema_paths(sub, f"{prefix}{k}.")
        return out

    def value_paths(v, prefix=""):
        out = set()
        for k, sub in v.items():
            out.add(prefix + k)
            if isinstance(sub, dict) and k != "roles":
                out |= value_paths(sub, f"{prefix}{k}.")
        return out

    assert schema["additionalProperties"] is False
    assert schema_paths(schema) == value_paths(EVERY_CONFIG_KEY)
    release, error = render_with(tmp_path, {"config": copy.deepcopy(EVERY_CONFIG_KEY), "terminationGracePeriodSeconds": 30})
    assert release, error
    path = tmp_path / "latchkey.toml"
    path.write_text(release.toml())
    p = run_binary(latchkey_bin, "config", "check", str(path))
    assert p.returncode == 0, f"{path.read_text()}\n{p.stderr}"
    assert "plans [basic, pro] key prefix `bk`" in p.stdout, p.stdout
    # Integers stay integers (Helm reads YAML numbers as floats).
    assert "max_message_bytes = 65536\n" in release.toml()


def test_config_check_can_fail(latchkey_bin, tmp_path):
    path = tmp_path / "latchkey.toml"
    path.write_text('grpc_addr = "0.0.0.0:50051"\nshutdown_grace_seconds = 20.0\n')
    assert run_binary(latchkey_bin, "config", "check", str(path)).returncode != 0


@pytest.mark.parametrize("key", ["database_url", "grpc_addr", "migrate_on_start", "data_dir"])
def test_chart_owned_config_keys_are_refused(tmp_path, key):
    release, error = render_with(tmp_path, {"config": {key: "postgres://u:p@db/x" if key == "database_url" else "x"}})
    assert release is None and key in error, error


# ---------------------------------------------------------------------------
# Migrations and the container arguments


def test_postgres_migrates_in_a_pre_install_and_pre_upgrade_hook(rendered):
    r = rendered["postgres"]
    (hook,) = r.release["hooks"]
    assert sorted(hook["events"]) == ["pre-install", "pre-upgrade"] and hook["phase"] == "Succeeded", hook
    job = r.one("Job")
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["migrate"]
    assert {e["name"] for e in c["env"]} == {"LATCHKEY_DATABASE_URL"}
    # Hooks run before the release's own ServiceAccount and ConfigMap exist.
    spec = job["spec"]["template"]["spec"]
    assert "serviceAccountName" not in spec
    assert all("configMap" not in v for v in spec["volumes"])
    assert "initContainers" not in r.one("Deployment")["spec"]["template"]["spec"]
    # Helm applied the hook before the release's resources.
    created = [c["kind"] for c in r.release["created"] if c["method"] == "POST"]
    assert created.index("Job") < created.index("Deployment"), created


@pytest.mark.parametrize("shape", ["default", "sqlite"])
def test_sqlite_migrates_in_an_init_container(rendered, shape):
    r = rendered[shape]
    assert not r.release["hooks"]
    (init,) = r.one("Deployment")["spec"]["template"]["spec"]["initContainers"]
    assert init["args"] == ["migrate", "--config", "/etc/latchkey/latchkey.toml"]
    assert {m["name"] for m in init["volumeMounts"]} >= {"config", "data"}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_server_never_migrates_on_start(rendered, shape):
    r = rendered[shape]
    assert "migrate_on_start = false" in r.toml().splitlines()
    assert r.server()["args"] == ["serve", "--config", "/etc/latchkey/latchkey.toml", "--no-migrate"]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_container_args_are_accepted_by_the_binary(rendered, latchkey_bin, shape):
    """clap parses the arguments up to `--help` and refuses any flag it does
    not know, so `<args> --help` exits 0 only if every flag is real."""
    for where, spec in pod_specs(rendered[shape]):
        for c in containers(spec):
            p = run_binary(latchkey_bin, *c["args"], "--help")
            assert p.returncode == 0, f"{where} {c['name']}: latchkey {' '.join(c['args'])}: {p.stderr}"
    p = run_binary(latchkey_bin, "serve", "--no-such-flag", "--help")
    assert p.returncode != 0


def test_metrics_listener_flags_are_accepted_by_the_binary(tmp_path, latchkey_bin):
    """metrics.enabled passes --metrics-addr, which `latchkey serve` must know."""
    release, error = render_with(tmp_path, {"metrics": {"enabled": True, "port": 9464}}, shape="postgres")
    assert release, error
    args = release.server()["args"]
    assert args[args.index("--metrics-addr") + 1] == "0.0.0.0:9464", args
    assert {p["name"]: p["containerPort"] for p in release.server()["ports"]}["metrics"] == 9464
    assert {p["name"]: p["port"] for p in release.service()["spec"]["ports"]}["metrics"] == 9464
    p = run_binary(latchkey_bin, *args, "--help")
    assert p.returncode == 0, f"latchkey {' '.join(args)}: {p.stderr}"


# ---------------------------------------------------------------------------
# The shapes the chart refuses


@pytest.mark.parametrize(
    "values, message",
    [
        ({"replicaCount": 2}, "store.type sqlite runs exactly one replica"),
        ({"autoscaling": {"enabled": True}}, "autoscaling.enabled must be false"),
        ({"migrations": {"strategy": "hook"}}, "store.type sqlite needs migrations.strategy initContainer"),
        ({"store": {"type": "postgres"}}, "store.type postgres needs store.postgres.existingSecret"),
        ({"terminationGracePeriodSeconds": 20}, "must exceed config.shutdown_grace_seconds (20)"),
        ({"config": {"shutdown_grace_seconds": 40}}, "terminationGracePeriodSeconds (30) must exceed config.shutdown_grace_seconds (40)"),
        ({"serviceMonitor": {"enabled": True}}, "serviceMonitor.enabled needs metrics.enabled"),
    ],
)
def test_refused_shapes(tmp_path, values, message):
    release, error = render_with(tmp_path, values)
    assert release is None, f"{values} rendered"
    assert message in error, error


def test_sqlite_shape_file_refuses_more_replicas(tmp_path):
    release, error = render_with(tmp_path, {"replicaCount": 3}, shape="sqlite")
    assert release is None and "exactly one replica" in error, error


def test_zero_shutdown_grace_needs_little_termination_grace(tmp_path):
    release, error = render_with(tmp_path, {"config": {"shutdown_grace_seconds": 0}, "terminationGracePeriodSeconds": 5})
    assert release, error
    assert "shutdown_grace_seconds = 0" in release.toml().splitlines()


def test_postgres_runs_many_replicas_without_autoscaling(tmp_path):
    release, error = render_with(tmp_path, {"autoscaling": {"enabled": False}, "replicaCount": 4}, shape="postgres")
    assert release, error
    assert release.one("Deployment")["spec"]["replicas"] == 4
    assert release.maybe("HorizontalPodAutoscaler") is None


# ---------------------------------------------------------------------------
# NetworkPolicy, metrics, ServiceMonitor


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_network_policy(rendered, shape):
    policy = rendered[shape].one("NetworkPolicy")["spec"]
    dep = rendered[shape].one("Deployment")
    assert policy["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress"]
    by_port = {}
    for rule in policy["ingress"]:
        assert rule.get("from") and rule.get("ports"), f"a rule open to all: {rule}"
        for port in rule["ports"]:
            by_port[port["port"]] = rule["from"]
    assert set(by_port) == {"grpc", "http"}
    assert by_port["grpc"] == [{"namespaceSelector": {"matchLabels": {"latchkey-grpc-client": "true"}}}]
    assert by_port["http"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]


def test_metrics_port_is_off_by_default_and_opt_in(rendered, tmp_path):
    for r in rendered.values():
        assert all(p["name"] != "metrics" for p in r.service()["spec"]["ports"])
        assert "--metrics-addr" not in r.server()["args"]
        assert r.maybe("ServiceMonitor") is None
    values = {"metrics": {"enabled": True}, "serviceMonitor": {"enabled": True}}
    release, error = render_with(tmp_path / "no-crd", values)
    assert release is None and "monitoring.coreos.com/v1 ServiceMonitor CRD" in error, error
    release, error = render_with(tmp_path / "crd", values, apis=("monitoring.coreos.com/v1/ServiceMonitor",))
    assert release, error
    assert {p["name"]: p["port"] for p in release.service()["spec"]["ports"]}["metrics"] == 9464
    assert release.server()["args"][-2:] == ["--metrics-addr", "0.0.0.0:9464"]
    monitor = release.one("ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    metrics_rule = [r for r in release.one("NetworkPolicy")["spec"]["ingress"] if r["ports"][0]["port"] == "metrics"]
    assert metrics_rule[0]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    for doc in release.all:
        if doc["kind"] != "ServiceMonitor":  # a CRD: not in kubernetes-validate's schemas
            kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)


def test_ingress_exposes_only_the_http_port(tmp_path):
    values = {"ingress": {"enabled": True, "className": "nginx",
                          "hosts": [{"host": "auth.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                          "tls": [{"hosts": ["auth.example.com"], "secretName": "auth-tls"}]}}
    release, error = render_with(tmp_path, values)
    assert release, error
    ingress = release.one("Ingress")
    backends = [p["backend"]["service"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert backends == [{"name": release.service()["metadata"]["name"], "port": {"name": "http"}}]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(ingress, version, strict=True)


# ---------------------------------------------------------------------------
# TLS from existing Secrets

TLS_VALUES = {"tls": {"existingSecret": "latchkey-tls", "certKey": "tls.crt", "keyKey": "tls.key",
                      "clientCa": {"existingSecret": "latchkey-client-ca", "key": "ca.crt"}},
              "config": {"tls": {"min_version": "1.3"}}}


def test_tls_is_off_by_default(rendered):
    for shape, r in rendered.items():
        assert "[tls]" not in r.toml(), shape
        spec = r.one("Deployment")["spec"]["template"]["spec"]
        assert not [v for v in spec["volumes"] if "secret" in v], shape


@pytest.mark.parametrize("shape", ["sqlite", "postgres"])
def test_tls_mounts_the_secrets_and_points_the_config_at_them(tmp_path, latchkey_bin, shape):
    release, error = render_with(tmp_path, copy.deepcopy(TLS_VALUES), shape=shape)
    assert release, error
    spec = release.one("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "latchkey-tls"
    assert {i["key"]: i["path"] for i in volumes["tls"]["secret"]["items"]} == {"tls.crt": "tls.crt", "tls.key": "tls.key"}
    assert volumes["tls-client-ca"]["secret"] == {"secretName": "latchkey-client-ca", "defaultMode": 0o440,
                                                  "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    server = release.server()
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    for name in ("tls", "tls-client-ca"):
        # Whole-volume mounts: a subPath mount would never see a rotated Secret.
        assert mounts[name]["readOnly"] is True and "subPath" not in mounts[name], mounts[name]
    toml = release.toml()
    tls_dir, ca_dir = mounts["tls"]["mountPath"], mounts["tls-client-ca"]["mountPath"]
    for line in (f'cert_file = "{tls_dir}/tls.crt"', f'key_file = "{tls_dir}/tls.key"',
                 f'client_ca_file = "{ca_dir}/ca.crt"', 'min_version = "1.3"'):
        assert line in toml.splitlines(), toml
    # The init container and the migration Job need no certificate.
    for where, pod in pod_specs(release):
        for c in containers(pod):
            if c["name"] != "latchkey":
                assert not {"tls", "tls-client-ca"} & {m["name"] for m in c.get("volumeMounts", [])}, where
    # The kubelet's gRPC probes cannot speak TLS: HTTPS probes of the HTTP port instead.
    for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert server[probe]["httpGet"] == {"path": path, "port": "http", "scheme": "HTTPS"}, server[probe]
        assert "grpc" not in server[probe]
    for version in KUBE_VERSIONS:
        for doc in release.all:
            kubernetes_validate.validate(doc, version, strict=True)
    # The rendered file is one the binary accepts, once the files exist where it points.
    certs = tmp_path / "certs"
    certs.mkdir()
    text = toml.replace(tls_dir, str(certs)).replace(ca_dir, str(certs))
    pki = Pki(certs)
    (certs / "tls.crt").write_bytes(Path(pki.path("server.pem")).read_bytes())
    (certs / "tls.key").write_bytes(Path(pki.path("server.key")).read_bytes())
    (certs / "ca.crt").write_bytes(Path(pki.path("client-ca.pem")).read_bytes())
    path = tmp_path / "latchkey.toml"
    path.write_text(text)
    p = run_binary(latchkey_bin, "config", "check", str(path))
    assert p.returncode == 0, f"{text}\n{p.stderr}"


def test_tls_without_a_client_ca_asks_for_no_client_certificates(tmp_path):
    values = {"tls": {"existingSecret": "latchkey-tls", "certKey": "cert.pem", "keyKey": "key.pem",
                      "clientCa": {"existingSecret": "", "key": "ca.crt"}}}
    release, error = render_with(tmp_path, values)
    assert release, error
    assert "client_ca_file" not in release.toml()
    volumes = {v["name"]: v for v in release.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert "tls-client-ca" not in volumes
    assert {i["key"]: i["path"] for i in volumes["tls"]["secret"]["items"]} == {"cert.pem": "tls.crt", "key.pem": "tls.key"}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"tls": {"existingSecret": "", "certKey": "tls.crt", "keyKey": "tls.key",
                  "clientCa": {"existingSecret": "ca", "key": "ca.crt"}}}, "tls.clientCa.existingSecret (mTLS) needs tls.existingSecret"),
        # The files are the chart's to set (values.schema.json offers only the other keys).
        ({"config": {"tls": {"cert_file": "/x.pem"}}}, "additional properties 'cert_file' not allowed"),
        ({"config": {"tls": {"client_ca_file": "/x.pem"}}}, "additional properties 'client_ca_file' not allowed"),
        ({"config": {"tls": {"min_version": "1.1"}}}, "min_version"),
    ],
)
def test_tls_shapes_the_chart_refuses(tmp_path, values, message):
    release, error = render_with(tmp_path, values)
    assert release is None, f"{values} rendered"
    assert message in error, error

"""Helm's own Go library (PyPI `helm-sdkpy`) on the Latchkey chart, with no
cluster: `lint`, and `render`, which obtains the manifests Helm would apply.

helm-sdkpy has no `template` action and its install has no dry-run or
client-only mode. So `render` runs a real `helm install` (wait off, release
storage in memory: HELM_DRIVER=memory) against a small fake Kubernetes API
server on 127.0.0.1 that this module starts: it answers discovery (so the
chart sees the API versions a cluster would have), records what Helm creates,
and reports every Job done at once, so the pre-install migration hook
"succeeds". The release Helm returns carries the rendered manifest and hooks,
produced by Helm's own template engine, schema check and `fail`s.

Run as a script, in its own process (the Go runtime stays out of pytest's):

    python helm_tool.py lint CHART_DIR
    python helm_tool.py render CHART_DIR [--values JSON] [--api GROUP/VERSION/KIND ...]

Both print one JSON object on stdout: lint its messages, render
{"manifest": ..., "hooks": [...], "created": [...]} or {"error": "..."}
(exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

# What the fake cluster serves: group/version -> [(plural, kind, namespaced)].
API: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True),
        ("pods", "Pod", True),
        ("namespaces", "Namespace", False),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "networking.k8s.io/v1": [
        ("networkpolicies", "NetworkPolicy", True),
        ("ingresses", "Ingress", True),
    ],
}
# Optional APIs (CRDs) a test may add with --api group/version/Kind.
OPTIONAL = {
    "monitoring.coreos.com/v1/ServiceMonitor": ("servicemonitors", "ServiceMonitor", True),
}
KUBE_VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}


def _status(code: int, reason: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": reason, "code": code}


class FakeApiServer:
    """Just enough of a kube-apiserver for `helm install` to run to the end."""

    def __init__(self, api: dict[str, list[tuple[str, str, bool]]]):
        self.api = api
        self.objects: dict[str, dict] = {}  # URL path of the object -> object
        self.created: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def send(self, code: int, obj: object) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                server.get(self)

            def do_POST(self):  # noqa: N802
                server.post(self)

            def do_PUT(self):  # noqa: N802
                server.post(self)

            def do_PATCH(self):  # noqa: N802
                server.post(self)

            def do_DELETE(self):  # noqa: N802
                self.body()
                with server.lock:
                    gone = server.objects.pop(urlparse(self.path).path, None)
                if gone is None:
                    self.send(404, _status(404, "NotFound"))
                else:
                    self.send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def _prefix(gv: str) -> str:
        return ("api/" if gv == "v1" else "apis/") + gv

    def _plurals(self) -> set[str]:
        return {plural for resources in self.api.values() for plural, _, _ in resources}

    def get(self, h) -> None:
        u = urlparse(h.path)
        q = parse_qs(u.query)
        path = u.path.rstrip("/")
        parts = path.strip("/").split("/")
        if path == "/version":
            return h.send(200, KUBE_VERSION)
        if path == "/api":
            return h.send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            groups = []
            for gv in self.api:
                if "/" in gv:
                    g, v = gv.split("/")
                    version = {"groupVersion": gv, "version": v}
                    groups.append({"name": g, "versions": [version], "preferredVersion": version})
            return h.send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        gv = None
        if parts[0] == "api" and len(parts) == 2:
            gv = parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            gv = f"{parts[1]}/{parts[2]}"
        if gv is not None:
            if gv not in self.api:
                return h.send(404, _status(404, "NotFound"))
            resources = [
                {"name": p, "singularName": "", "namespaced": ns, "kind": k,
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                for p, k, ns in self.api[gv]
            ]
            return h.send(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
        if path == "/openapi/v3":
            return h.send(200, {"paths": {self._prefix(gv): {"serverRelativeURL": f"/openapi/v3/{self._prefix(gv)}?hash=0"} for gv in self.api}})
        if path.startswith("/openapi/v3/"):
            return h.send(200, self._openapi_v3(path[len("/openapi/v3/"):]))
        if "watch" in q:
            return self._watch(h, path, q)
        with self.lock:
            if path in self.objects:
                return h.send(200, self.objects[path])
            if parts[-1] in self._plurals():
                items = [o for p, o in self.objects.items() if p.rsplit("/", 1)[0] == path]
                return h.send(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
        h.send(404, _status(404, "NotFound"))

    def _openapi_v3(self, rel: str) -> dict:
        """A group-version document whose PATCH operations take the
        fieldValidation parameter: client-go then leaves validation to the
        server (here: kubernetes-validate, in the tests) instead of wanting
        the full OpenAPI schemas."""
        gv = rel.split("/", 1)[1]
        g, v = gv.split("/") if "/" in gv else ("", gv)
        paths = {}
        for plural, kind, _ in self.api.get(gv, []):
            paths[f"/{rel}/namespaces/{{namespace}}/{plural}/{{name}}"] = {
                "patch": {
                    "x-kubernetes-group-version-kind": {"group": g, "version": v, "kind": kind},
                    "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                    "responses": {},
                }
            }
        return {"openapi": "3.0.0", "info": {"title": "fake", "version": gv}, "paths": paths, "components": {"schemas": {}}}

    def _collection(self, path: str) -> tuple[str, str]:
        """(group/version, kind) of a collection URL such as
        /apis/batch/v1/namespaces/ns/jobs."""
        parts = path.strip("/").split("/")
        gv = parts[1] if parts[0] == "api" else f"{parts[1]}/{parts[2]}"
        for plural, kind, _ in self.api.get(gv, []):
            if plural == parts[-1]:
                return gv, kind
        return gv, ""

    def _watch(self, h, path: str, q: dict) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def event(obj: dict) -> None:
            data = (json.dumps(obj) + "\n").encode()
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        if q.get("sendInitialEvents") == ["true"]:
            with self.lock:
                items = [o for p, o in self.objects.items() if p.rsplit("/", 1)[0] == path]
            for obj in items:
                event({"type": "ADDED", "object": obj})
            gv, kind = self._collection(path)
            event({"type": "BOOKMARK", "object": {
                "kind": kind, "apiVersion": gv,
                "metadata": {"resourceVersion": "1", "annotations": {"k8s.io/initial-events-end": "true"}}}})
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    def post(self, h) -> None:
        u = urlparse(h.path)
        try:
            obj = json.loads(h.body())
        except json.JSONDecodeError:
            return h.send(400, _status(400, "BadRequest"))
        meta = obj.setdefault("metadata", {})
        name = meta.get("name", "")
        meta.update({"uid": f"uid-{name}", "resourceVersion": "1", "generation": 1})
        if obj.get("kind") == "Job":  # every Job has run, and succeeded
            obj["status"] = {
                "startTime": "2026-01-01T00:00:00Z",
                "completionTime": "2026-01-01T00:00:01Z",
                "succeeded": 1,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True"},
                    {"type": "Complete", "status": "True"},
                ],
            }
        path = u.path.rstrip("/")
        if h.command == "POST":
            path = f"{path}/{name}"
        with self.lock:
            self.objects[path] = obj
            self.created.append({"method": h.command, "path": path, "kind": obj.get("kind")})
        h.send(201 if h.command == "POST" else 200, obj)


def helm_env(home: str) -> dict[str, str]:
    """Helm's environment: release storage in memory, its homes in `home`,
    no kubeconfig of the machine's. The Go runtime copies the environment
    when the library loads, so it is set for a child process, not here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_") and k != "KUBECONFIG"}
    env["HELM_DRIVER"] = "memory"
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = os.path.join(home, var.lower())
    env["LATCHKEY_HELM_HOME"] = home
    return env


def lint(chart: str) -> dict:
    import helm_sdkpy

    result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration(namespace="default")).run(chart))
    # helm-sdkpy serializes each message's error as {} (a Go error has no
    # exported fields): only the severity and the file survive.
    names = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    messages = [
        {"severity": names.get(m.get("Severity"), str(m.get("Severity"))), "path": m.get("Path")}
        for m in result.get("Messages") or []
    ]
    return {"linted": result.get("TotalChartsLinted"), "messages": messages, "errors": len(result.get("Errors") or [])}


def render(chart: str, values: dict | None, extra_apis: list[str], home: str) -> dict:
    import helm_sdkpy

    api = {gv: list(resources) for gv, resources in API.items()}
    for name in extra_apis:
        gv = name.rsplit("/", 1)[0]
        api.setdefault(gv, []).append(OPTIONAL[name])
    with FakeApiServer(api) as server:
        kubeconfig = os.path.join(home, "kubeconfig")
        with open(kubeconfig, "w") as f:
            json.dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "latchkey"}}],
                "users": [{"name": "fake", "user": {}}],
            }, f)
        config = helm_sdkpy.Configuration(namespace="latchkey", kubeconfig=kubeconfig)
        try:
            release = asyncio.run(
                helm_sdkpy.Install(config).run("latchkey", chart, values=values, wait=False, timeout=30)
            )
        except helm_sdkpy.HelmError as e:
            return {"error": str(e)}
        return {
            "manifest": release.get("manifest", ""),
            "hooks": [{"name": h.get("name"), "kind": h.get("kind"), "events": h.get("events"),
                       "manifest": h.get("manifest", ""), "phase": (h.get("last_run") or {}).get("phase")}
                      for h in release.get("hooks") or []],
            "created": server.created,
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_lint = sub.add_parser("lint")
    p_lint.add_argument("chart")
    p_render = sub.add_parser("render")
    p_render.add_argument("chart")
    p_render.add_argument("--values", default="", help="JSON object of values over the chart's values.yaml")
    p_render.add_argument("--api", action="append", default=[], choices=sorted(OPTIONAL))
    args = parser.parse_args()
    home = os.environ.get("LATCHKEY_HELM_HOME")
    if not home or os.environ.get("HELM_DRIVER") != "memory":
        with tempfile.TemporaryDirectory(prefix="helm-home-") as home:
            return subprocess.run([sys.executable, *sys.argv], env=helm_env(home), check=False).returncode
    if args.cmd == "lint":
        out = lint(args.chart)
    else:
        out = render(args.chart, json.loads(args.values) if args.values else None, args.api, home)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())

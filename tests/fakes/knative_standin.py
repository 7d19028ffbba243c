"""Knative Serving's part, played against a real Kubernetes API server (there is no Knative
controller here): the `serving.knative.dev/v1` Service CRD, and a watcher that sets each Service's
status through the status subresource the way Knative reports it.

    from fakes.knative_standin import KnativeStandin, install_knative_crd

    install_knative_crd(admin_client)                    # once per API server
    with KnativeStandin(admin_client, "devcontainers") as knative:
        ...                                              # every new Service becomes Ready=True
        knative.outcome("octocat--hello-world", "False", "RevisionFailed", "Back-off pulling image")
        knative.hold()                                   # new Services stay Ready=Unknown
        knative.mark_ready("octocat--hello-world")       # ... until marked

`on_ready(name, service)` (optional) is called once per Service when the stand-in first reports
it Ready: where a test starts serving that workspace (e.g. a FakeUpstream). `seen` lists every
Service name the watch delivered. The CRD's schema is Knative Serving 1.23's own (the vendored
tests/schemas/knative-service.schema.json), so the API server prunes and rejects what Knative
would.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from kube import ApiError, KubeClient, kind_path

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "knative-service.schema.json"

READY_TRUE = ("True", "", "")
UNKNOWN = ("Unknown", "RevisionMissing", "Configuration \"{name}\" is waiting for a Revision to become ready.")


def _structural(node):
    """The vendored JSON Schema back in CRD form. It closes objects (`additionalProperties: false`
    beside `properties`), lists a few well-known keys of open maps (a CRD has one or the other),
    and spells absent defaults `default: null`, which a CRD refuses. Knative's `default: ""`
    (object references' names) goes too: Kubernetes 1.20 reads it as null and refuses the CRD; a
    list-map key whose default went is required instead (a CRD needs one or the other)."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    keys = node.get("x-kubernetes-list-map-keys")
    if keys and isinstance(node.get("items"), dict):
        items = node["items"]
        lacking = [k for k in keys if items.get("properties", {}).get(k, {}).get("default") in (None, "")]
        node = {**node, "items": {**items, "required": sorted(set(items.get("required", [])) | set(lacking))}}
    out = {}
    open_map = isinstance(node.get("additionalProperties"), dict)
    for key, value in node.items():
        # A map with a value schema (annotations) stays a map; the few keys it lists go.
        if key == "properties" and open_map:
            continue
        if key == "additionalProperties" and value is False:
            continue
        # int-or-string: 1.20 builds no OpenAPI model (server-side apply's) from the anyOf beside it.
        if key == "anyOf" and node.get("x-kubernetes-int-or-string"):
            continue
        if key == "default" and value in (None, ""):
            continue
        out[key] = value if key == "enum" else _structural(value)
    return out


def knative_service_crd() -> dict:
    """The Service CRD with Knative's schema for spec and status."""
    schema = _structural(json.loads(SCHEMA.read_text()))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "services.serving.knative.dev"},
        "spec": {
            "group": "serving.knative.dev",
            "names": {"kind": "Service", "plural": "services", "singular": "service",
                      "shortNames": ["kservice", "ksvc"], "categories": ["all", "knative", "serving"]},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": schema["properties"]["spec"],
                        "status": schema["properties"]["status"],
                    },
                }},
                "additionalPrinterColumns": [
                    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
                    {"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].reason"},
                ],
            }],
        },
    }


def install_crd(admin: KubeClient, crd: dict, timeout: float = 30.0) -> None:
    """Creates (or replaces by apply) a CRD and waits until the API server serves it."""
    admin.apply(crd)
    name = crd["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while True:
        got = admin.get(kind_path("CustomResourceDefinition", name=name))
        conditions = {c["type"]: c["status"] for c in (got.get("status") or {}).get("conditions") or []}
        if conditions.get("Established") == "True":
            break
        if conditions.get("NamesAccepted") == "False" or time.monotonic() > deadline:
            raise AssertionError(f"CRD {name} not established: {got.get('status')}")
        time.sleep(0.1)
    # Established can precede the first successful list by a moment.
    group = crd["spec"]["group"]
    version = crd["spec"]["versions"][0]["name"]
    plural = crd["spec"]["names"]["plural"]
    while True:
        try:
            admin.get(f"/apis/{group}/{version}/{plural}")
            return
        except ApiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def install_knative_crd(admin: KubeClient) -> None:
    install_crd(admin, knative_service_crd())


class KnativeStandin:
    """Watches Knative Services in `namespace` and reports them as Knative would."""

    def __init__(self, client: KubeClient, namespace: str, on_ready=None):
        self.client, self.namespace, self.on_ready = client, namespace, on_ready
        self._lock = threading.Lock()
        self._outcomes: dict[str, tuple[str, str, str]] = {}
        self._default: tuple[str, str, str] | None = READY_TRUE
        self._announced: set[str] = set()
        self.seen: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what each Service should report --------------------------------------------------------

    def ready_at_once(self) -> None:
        """New Services without an outcome of their own become Ready=True (the default)."""
        with self._lock:
            self._default = READY_TRUE

    def hold(self) -> None:
        """New Services without an outcome of their own stay Ready=Unknown (starting)."""
        with self._lock:
            self._default = None

    def outcome(self, name: str, status: str, reason: str = "", message: str = "") -> None:
        """What Service `name` reports from now on: Ready `status` ("True", "False", "Unknown")
        with `reason` and `message`. Applied at once if the Service exists."""
        with self._lock:
            self._outcomes[name] = (status, reason, message)
        current = self.client.get_or_none(kind_path("KnativeService", self.namespace, name))
        if current is not None:
            self._report(current)

    def mark_ready(self, name: str) -> None:
        self.outcome(name, *READY_TRUE)

    def mark_failed(self, name: str, reason: str, message: str) -> None:
        self.outcome(name, "False", reason, message)

    def clear(self) -> None:
        with self._lock:
            self._outcomes.clear()
            self._default = READY_TRUE
            self._announced.clear()
            self.seen.clear()

    # --- the watch ------------------------------------------------------------------------------

    def __enter__(self) -> "KnativeStandin":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="knative-standin", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        path = kind_path("KnativeService", self.namespace)
        while not self._stop.is_set():
            try:
                listing = self.client.get(path)
                for service in listing["items"]:
                    self._report(service)
                rv = listing["metadata"]["resourceVersion"]
                for event in self.client.watch(path, rv, timeout_seconds=30, stop=self._stop):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._report(event["object"])
            except Exception as e:  # keep playing Knative; the test sees `errors`
                self.errors.append(repr(e))
                self._stop.wait(0.5)

    def _wanted(self, name: str) -> tuple[str, str, str]:
        with self._lock:
            if name in self._outcomes:
                return self._outcomes[name]
            if self._default is not None:
                return self._default
        status, reason, message = UNKNOWN
        return status, reason, message.format(name=name)

    def _report(self, service: dict) -> None:
        meta = service["metadata"]
        name = meta["name"]
        if meta.get("deletionTimestamp"):
            return
        with self._lock:
            if name not in self.seen:
                self.seen.append(name)
        status, reason, message = self._wanted(name)
        generation = meta.get("generation", 1)
        host = f"{name}.{self.namespace}.svc.cluster.local"
        ready = {"type": "Ready", "status": status}
        if reason:
            ready["reason"] = reason
        if message:
            ready["message"] = message
        sub = "True" if status == "True" else status
        wanted = {
            "observedGeneration": generation,
            "conditions": [
                {"type": "ConfigurationsReady", "status": sub, **({"reason": reason} if reason else {})},
                ready,
                {"type": "RoutesReady", "status": sub, **({"reason": reason} if reason else {})},
            ],
            "url": f"http://{host}",
            "address": {"url": f"http://{host}"},
            "latestCreatedRevisionName": f"{name}-00001",
        }
        if status == "True":
            wanted["latestReadyRevisionName"] = f"{name}-00001"
            wanted["traffic"] = [{"revisionName": f"{name}-00001", "latestRevision": True, "percent": 100}]
        current = service.get("status") or {}
        if self._same(current, wanted):
            self._announce(name, service, status)
            return
        # Knative stamps lastTransitionTime; the comparison above ignores it.
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for condition in wanted["conditions"]:
            condition["lastTransitionTime"] = stamp
        try:
            self.client.merge_patch(kind_path("KnativeService", self.namespace, name, "status"),
                                    {"status": {**{k: None for k in current if k not in wanted}, **wanted}})
        except ApiError as e:
            if e.status != 404:
                raise
            return
        self._announce(name, service, status)

    def _announce(self, name: str, service: dict, status: str) -> None:
        if status != "True" or self.on_ready is None:
            return
        with self._lock:
            if name in self._announced:
                return
            self._announced.add(name)
        self.on_ready(name, service)

    @staticmethod
    def _same(current: dict, wanted: dict) -> bool:
        def strip(status: dict) -> dict:
            out = dict(status)
            out["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                 for c in status.get("conditions", [])]
            return out

        return strip(current) == strip(wanted)

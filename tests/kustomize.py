"""Renders the Kustomize install (istio/kustomization.yaml, istio/components/, overlays/) with
`kubectl kustomize`, as a mesh admin's `kubectl apply -k` would.

istio/settings.env has no cluster ranges (pod-cidr, service-cidr, node-cidr, api-server-cidr): an
install must not guess them, so as shipped nothing renders. Like an admin, the tests add them, to a
copy of the tree (the checkout's, or a release's kustomize/ folder): TEST_RANGES, kind's ranges,
unless a test names others."""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from harness import ROOT

ISTIO = ROOT / "istio"
OVERLAYS = ROOT / "overlays"
SETTINGS = ISTIO / "settings.env"
# kubectl's embedded kustomize must know components, replacements with delimiters and local-config
# (Kustomize 5; Debian's kubernetes-client 1.20 embeds kustomize 2, which knows none of them).
MIN_KUSTOMIZE = (5, 0)


@functools.cache
def kubectl() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl is needed to render the Kustomize install (kubectl kustomize); see .ci/run")
    out = subprocess.run([found, "version", "--client"], capture_output=True, text=True, timeout=60).stdout
    version = re.search(r"Kustomize Version: v(\d+)\.(\d+)", out)
    if not version or tuple(map(int, version.groups())) < MIN_KUSTOMIZE:
        raise RuntimeError(f"{found} embeds no Kustomize >= {MIN_KUSTOMIZE}: {out!r}")
    return found


# kind's ranges (tests/test_incluster_policy.py's "kind" cluster).
TEST_RANGES = {"pod-cidr": "10.244.0.0/16", "service-cidr": "10.96.0.0/16", "node-cidr": "172.18.0.0/16",
               "api-server-cidr": "172.18.0.2/32"}
# The placeholders of knative/workspace-namespace.yaml: what `make release` renders its manifests with.
PLACEHOLDER_RANGES = {"pod-cidr": "POD_CIDR", "service-cidr": "SERVICE_CIDR", "node-cidr": "NODE_CIDR",
                      "api-server-cidr": "API_SERVER_CIDR"}


def render_text(path: Path) -> str:
    result = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return result.stdout


def tree_root(path: Path) -> Path:
    """The folder holding istio/ and overlays/ that `path` is in: the checkout, or a release's
    kustomize/ folder."""
    for folder in (path, *path.parents):
        if (folder / "istio" / "settings.env").is_file() and (folder / "overlays").is_dir():
            return folder
    raise ValueError(f"{path} is not in a Kustomize tree")


@functools.cache
def _tree_with(root: str, ranges: tuple[tuple[str, str], ...]) -> Path:
    """A copy of the tree at `root` whose settings.env has the ranges, as an admin adds them."""
    copy = Path(tempfile.mkdtemp(prefix="dcgw-kustomize-tree-"))
    atexit.register(shutil.rmtree, copy, True)
    for part in ("istio", "overlays"):
        shutil.copytree(Path(root) / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    settings_env = copy / "istio" / "settings.env"
    settings_env.write_text(settings_env.read_text() + "".join(f"{k}={v}\n" for k, v in ranges))
    return copy


def with_ranges(path: Path, ranges: dict[str, str] | None = None) -> Path:
    """`path` in a copy of its tree with the cluster ranges set."""
    root = tree_root(path)
    return _tree_with(str(root), tuple(sorted((ranges or TEST_RANGES).items()))) / path.relative_to(root)


@functools.cache
def _render_cached(path: str) -> str:
    return render_text(Path(path))


def render(path: Path, ranges: dict[str, str] | None = None) -> list[dict]:
    """The objects `kubectl apply -k path` would apply once the cluster ranges (TEST_RANGES unless
    given) are set (rendered once per test run)."""
    return [d for d in yaml.safe_load_all(_render_cached(str(with_ranges(path, ranges)))) if d]


def overlays() -> list[Path]:
    return sorted(p for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").is_file())


def settings() -> dict[str, str]:
    """istio/settings.env as Kustomize reads it."""
    out = {}
    for line in SETTINGS.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


def render_with(changes: dict[str, str], components: list[str]) -> list[dict]:
    """An admin's own overlay: the base (with TEST_RANGES), a component of theirs changing settings,
    then `components` (paths below istio/), then components/settings last."""
    with tempfile.TemporaryDirectory(prefix="dcgw-kustomize-") as tmp:
        here = Path(tmp)
        up = Path(os.path.relpath(with_ranges(ISTIO), here))
        (here / "mine").mkdir()
        (here / "mine" / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
            "configMapGenerator": [{"name": "devcontainer-gateway-settings", "behavior": "merge",
                                    "literals": [f"{k}={v}" for k, v in changes.items()]}],
        }))
        (here / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": [str(up)],
            "components": ["mine", *[str(up / c) for c in components], str(up / "components" / "settings")],
        }))
        return [d for d in yaml.safe_load_all(render_text(here)) if d]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one_of(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]

"""Renders the Kustomize install (istio/kustomization.yaml, istio/components/, overlays/) with
`kubectl kustomize`, as a mesh admin's `kubectl apply -k` would."""

from __future__ import annotations

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


def render_text(path: Path) -> str:
    result = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return result.stdout


@functools.cache
def _render_cached(path: str) -> str:
    return render_text(Path(path))


def render(path: Path) -> list[dict]:
    """The objects `kubectl apply -k path` would apply (rendered once per test run)."""
    return [d for d in yaml.safe_load_all(_render_cached(str(path))) if d]


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
    """An admin's own overlay: the base, a component of theirs changing settings, then
    `components` (paths below istio/), then components/settings last."""
    with tempfile.TemporaryDirectory(prefix="dcgw-kustomize-") as tmp:
        here = Path(tmp)
        up = Path(os.path.relpath(ISTIO, here))
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

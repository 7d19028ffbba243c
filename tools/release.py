#!/usr/bin/env python3
"""`make release`: everything a mesh admin installs, in one folder, byte for byte the same on
every run from the same sources and module:

    devcontainer-gateway-<version>/
      oci/devcontainer-gateway/            the OCI image layout (push: skopeo copy oci:…:<version> …)
      oci/devcontainer-gateway-<version>.tar   the same as an OCI archive
      devcontainer_gateway.wasm            the module itself (for the EnvoyFilter form)
      kustomize/istio/, kustomize/overlays/    the Kustomize install, settings.env pinned to the
                                           image's tag and manifest digest (and the plain
                                           WasmPlugin/TrafficExtension files with it)
      manifests/<overlay>.yaml             each overlay rendered (kubectl kustomize), pinned, with
                                           the cluster ranges as the placeholders POD_CIDR, ...
      sbom.cdx.json                        CycloneDX SBOM of the crates in the module (tools/sbom.py)
      SHA256SUMS                           sha256sum -c of every other file

    tools/release.py --version 0.1.0 --out target/release-bundle/devcontainer-gateway-0.1.0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import oci_image  # noqa: E402
import sbom  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMAGE_NAME = "devcontainer-gateway"
# The files of the plain (non-Kustomize) install that carry the digest; settings.env carries it for
# every overlay.
PINNED_FILES = ["wasmplugin.yaml", "host-mode/wasmplugin.yaml", "components/traffic-extension/trafficextension.yaml"]
EMPTY_SHA = re.compile(r'^(\s*)sha256: ""$', re.M)
# No release can know a cluster's ranges, and settings.env leaves them out so that the Kustomize
# install renders nothing until an admin adds them. The rendered manifests carry the placeholders of
# knative/workspace-namespace.yaml instead, to be filled with the sed line in its header (the API
# server refuses workspace-egress until they are).
PLACEHOLDER_RANGES = {"pod-cidr": "POD_CIDR", "service-cidr": "SERVICE_CIDR", "node-cidr": "NODE_CIDR",
                      "api-server-cidr": "API_SERVER_CIDR"}


def kubectl() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not found:
        raise SystemExit("kubectl (with Kustomize 5) is needed to render the overlays")
    return found


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def set_setting(text: str, key: str, value: str) -> str:
    pattern = re.compile(rf"^{re.escape(key)}=.*$", re.M)
    if not pattern.search(text):
        raise SystemExit(f"settings.env has no {key}=")
    return pattern.sub(f"{key}={value}", text, count=1)


def pin(istio: Path, version: str, digest_hex: str) -> None:
    settings = istio / "settings.env"
    text = settings.read_text()
    image = re.search(r"^image=(.*)$", text, re.M).group(1)
    repository = image.rsplit(":", 1)[0] if ":" in image.removeprefix("oci://") else image
    text = set_setting(text, "image", f"{repository}:{version}")
    settings.write_text(set_setting(text, "image-sha256", digest_hex))
    for name in PINNED_FILES:
        path = istio / name
        pinned, count = EMPTY_SHA.subn(rf'\1sha256: "{digest_hex}"', path.read_text())
        if count != 1:
            raise SystemExit(f"{name}: expected one empty sha256 to pin, found {count}")
        path.write_text(pinned.replace(image, f"{repository}:{version}"))


def render_overlays(kustomize: Path, out: Path) -> list[str]:
    out.mkdir(parents=True)
    names = sorted(p.name for p in (kustomize / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
    with tempfile.TemporaryDirectory(prefix="dcgw-release-") as tmp:
        scratch = Path(tmp)
        for part in ("istio", "overlays"):
            shutil.copytree(kustomize / part, scratch / part)
        settings = scratch / "istio" / "settings.env"
        settings.write_text(settings.read_text() + "".join(f"{k}={v}\n" for k, v in PLACEHOLDER_RANGES.items()))
        for name in names:
            result = subprocess.run([kubectl(), "kustomize", str(scratch / "overlays" / name)],
                                    capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise SystemExit(f"overlays/{name}: {result.stderr}")
            (out / f"{name}.yaml").write_text(result.stdout)
    return names


def checksums(folder: Path) -> str:
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(folder).as_posix()}")
    return "\n".join(lines) + "\n"


def normalise(folder: Path) -> None:
    """Modes do not depend on the umask or on how the sources were checked out."""
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    folder.chmod(0o755)


def release(version: str, wasm: Path, out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    image = oci_image.build(wasm, out / "oci" / IMAGE_NAME, version)
    digest = image["manifest_digest"].removeprefix("sha256:")
    shutil.copyfile(wasm, out / "devcontainer_gateway.wasm")

    kustomize = out / "kustomize"
    copy_tree(ROOT / "istio", kustomize / "istio")
    copy_tree(ROOT / "overlays", kustomize / "overlays")
    pin(kustomize / "istio", version, digest)
    overlays = render_overlays(kustomize, out / "manifests")

    (out / "sbom.cdx.json").write_text(json.dumps(sbom.sbom(sbom.cargo_metadata(), sbom.lock_checksums()), indent=2) + "\n")
    normalise(out)
    (out / "SHA256SUMS").write_text(checksums(out))
    (out / "SHA256SUMS").chmod(0o644)
    return {"folder": str(out), "version": version, "manifest_digest": image["manifest_digest"],
            "wasm_sha256": image["wasm_sha256"], "overlays": overlays}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--wasm", type=Path, default=ROOT / "target/wasm32-wasip1/release/devcontainer_gateway.wasm")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    json.dump(release(args.version, args.wasm, args.out), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

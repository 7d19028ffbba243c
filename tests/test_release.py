"""`make release` (tools/release.py): one folder with the OCI image, the module, the Kustomize install
and every overlay rendered, all pinned to the image's manifest digest, a CycloneDX SBOM of the crates
in the module and SHA256SUMS; two runs give the same bytes."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tomllib

import pytest
import yaml

from harness import ROOT, WASM
from kustomize import OVERLAYS, PLACEHOLDER_RANGES, by_kind, render
from test_manifests import manifest_errors

TOOL = ROOT / "tools" / "release.py"
VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]


def run(out) -> dict:
    result = subprocess.run([sys.executable, str(TOOL), "--version", VERSION, "--wasm", str(WASM), "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    base = tmp_path_factory.mktemp("release")
    first, second = base / "a" / f"devcontainer-gateway-{VERSION}", base / "b" / f"devcontainer-gateway-{VERSION}"
    summary = run(first)
    run(second)
    return summary, first, files(first), files(second)


def test_two_runs_give_the_same_bytes(releases):
    _, _, first, second = releases
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_the_folder_holds_what_an_admin_installs(releases):
    summary, folder, content, _ = releases
    names = set(content)
    assert {"SHA256SUMS", "sbom.cdx.json", "devcontainer_gateway.wasm", f"oci/devcontainer-gateway-{VERSION}.tar",
            "oci/devcontainer-gateway/index.json", "oci/devcontainer-gateway/oci-layout",
            "kustomize/istio/kustomization.yaml", "kustomize/istio/settings.env"} <= names
    overlays = sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").is_file())
    assert summary["overlays"] == overlays
    assert {f"manifests/{o}.yaml" for o in overlays} <= names
    assert content["devcontainer_gateway.wasm"] == WASM.read_bytes()


def test_checksums_cover_every_file(releases):
    _, folder, content, _ = releases
    listed = {}
    for line in content["SHA256SUMS"].decode().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    assert set(listed) == set(content) - {"SHA256SUMS"}
    assert all(hashlib.sha256(content[n]).hexdigest() == d for n, d in listed.items())
    assert subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=folder, timeout=60).returncode == 0


def test_everything_is_pinned_to_the_images_manifest_digest(releases):
    summary, folder, content, _ = releases
    index = json.loads(content["oci/devcontainer-gateway/index.json"])
    [manifest] = index["manifests"]
    assert manifest["digest"] == summary["manifest_digest"]
    assert manifest["annotations"]["org.opencontainers.image.ref.name"] == VERSION
    digest = summary["manifest_digest"].removeprefix("sha256:")
    assert f"image-sha256={digest}\n" in content["kustomize/istio/settings.env"].decode()
    for name in (n for n in content if n.startswith("manifests/")):
        objects = [d for d in yaml.safe_load_all(content[name]) if d]
        errors = [e for o in objects for e in manifest_errors(o, name)]
        assert not errors, errors
        [extension] = by_kind(objects, "WasmPlugin") + by_kind(objects, "TrafficExtension")
        wasm = extension["spec"]["wasm"] if extension["kind"] == "TrafficExtension" else extension["spec"]
        assert wasm["sha256"] == digest, name
        assert wasm["url"].endswith(f":{VERSION}"), name


def test_released_overlays_render_as_shipped(releases):
    """The pinned Kustomize tree renders to the released manifests (with the cluster ranges as the
    placeholders of knative/workspace-namespace.yaml), and the plain files agree."""
    _, folder, content, _ = releases
    for overlay in (folder / "kustomize" / "overlays").iterdir():
        assert yaml.safe_dump_all(render(overlay, PLACEHOLDER_RANGES)) == yaml.safe_dump_all(
            [d for d in yaml.safe_load_all(content[f"manifests/{overlay.name}.yaml"]) if d])
    # The released settings.env sets no ranges either: the admin adds theirs.
    assert "\npod-cidr=" not in content["kustomize/istio/settings.env"].decode()
    plain = yaml.safe_load(content["kustomize/istio/wasmplugin.yaml"])
    [rendered] = by_kind(render(folder / "kustomize" / "istio"), "WasmPlugin")
    assert plain == rendered


def test_sbom_lists_exactly_the_crates_in_the_module(releases):
    _, _, content, _ = releases
    bom = json.loads(content["sbom.cdx.json"])
    assert (bom["bomFormat"], bom["specVersion"], bom["version"]) == ("CycloneDX", "1.6", 1)
    assert bom["serialNumber"].startswith("urn:uuid:")
    assert bom["metadata"]["component"]["purl"] == f"pkg:cargo/devcontainer-gateway@{VERSION}"
    tree = subprocess.run(["cargo", "tree", "--locked", "--target", "wasm32-wasip1", "-e", "normal", "--prefix", "none",
                           "--format", "{p}"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True).stdout
    crates = {tuple(line.split()[:2]) for line in tree.splitlines() if line.strip()}
    crates = {(name, version.removeprefix("v")) for name, version in crates} - {("devcontainer-gateway", VERSION)}
    assert {(c["name"], c["version"]) for c in bom["components"]} == crates
    lock = {(p["name"], p["version"]): p.get("checksum") for p in tomllib.loads((ROOT / "Cargo.lock").read_text())["package"]}
    for c in bom["components"]:
        assert c["purl"] == f"pkg:cargo/{c['name']}@{c['version']}"
        assert c["hashes"] == [{"alg": "SHA-256", "content": lock[(c["name"], c["version"])]}]
        [licence] = c["licenses"]
        assert licence["expression"] and "/" not in licence["expression"], c  # SPDX: "MIT OR Apache-2.0"
    refs = {c["bom-ref"] for c in bom["components"]} | {bom["metadata"]["component"]["bom-ref"]}
    assert {d["ref"] for d in bom["dependencies"]} == refs
    assert all(set(d["dependsOn"]) <= refs for d in bom["dependencies"])
    module = [d for d in bom["dependencies"] if d["ref"] == bom["metadata"]["component"]["bom-ref"]][0]
    assert any(r.startswith("pkg:cargo/sha2@") for r in module["dependsOn"])


def test_the_image_archive_is_the_layout(releases):
    _, folder, content, _ = releases
    with tarfile.open(fileobj=io.BytesIO(content[f"oci/devcontainer-gateway-{VERSION}.tar"])) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for name, data in content.items():
            if name.startswith("oci/devcontainer-gateway/"):
                inner = name.removeprefix("oci/devcontainer-gateway/")
                assert tar.extractfile(members[inner]).read() == data
        assert all(m.mtime == 0 and m.uid == 0 and m.mode in (0o644, 0o755) for m in members.values())

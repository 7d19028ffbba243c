"""The OCI image Istio pulls for `WasmPlugin.spec.url: oci://…`: the "OCI compat" shape of the
contract (one gzip'd tar layer holding plugin.wasm), reproducible, readable by skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile

import pytest

from harness import ROOT, WASM

TOOL = ROOT / "tools" / "oci_image.py"


def build(out, tag="0.1.0") -> dict:
    result = subprocess.run([sys.executable, str(TOOL), "--wasm", str(WASM), "--out", str(out), "--tag", tag],
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def blob(layout, digest: str) -> bytes:
    algo, hexdigest = digest.split(":")
    data = (layout / "blobs" / algo / hexdigest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexdigest, digest
    return data


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    out = tmp_path_factory.mktemp("oci") / "devcontainer-gateway"
    return out, build(out)


def test_layout_holds_the_filter_as_plugin_wasm(image):
    layout, result = image
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    [descriptor] = index["manifests"]
    assert descriptor["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert descriptor["annotations"]["org.opencontainers.image.ref.name"] == "0.1.0"
    assert descriptor["digest"] == result["manifest_digest"]
    manifest_bytes = blob(layout, descriptor["digest"])
    assert len(manifest_bytes) == descriptor["size"]
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    *_, last = manifest["layers"]
    assert last["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    layer = blob(layout, last["digest"])
    tar_bytes = gzip.decompress(layer)
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar_bytes).hexdigest()}"]}
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        [member] = tar.getmembers()
        assert member.name == "plugin.wasm" and member.isfile()
        wasm = tar.extractfile(member).read()
    assert wasm.startswith(b"\0asm")
    assert wasm == WASM.read_bytes()


def test_build_is_reproducible(image, tmp_path):
    _, first = image
    again = build(tmp_path / "devcontainer-gateway")
    assert again["manifest_digest"] == first["manifest_digest"]


def test_oci_archive_is_the_layout(image):
    layout, result = image
    with tarfile.open(result["archive"]) as tar:
        names = set(tar.getnames())
    assert {"oci-layout", "index.json"} <= names
    assert f"blobs/sha256/{result['manifest_digest'].split(':')[1]}" in names


def test_skopeo_reads_the_image(image, tmp_path):
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is missing: apt-get install skopeo (.ci/run installs it)"
    layout, result = image
    raw = subprocess.run([skopeo, "inspect", "--raw", f"oci:{layout}:0.1.0"], capture_output=True, timeout=60, check=True).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == result["manifest_digest"]
    # A registry push goes through the same copy; a local dir: target stands in for the registry.
    copy = subprocess.run([skopeo, "copy", "--quiet", f"oci:{layout}:0.1.0", f"dir:{tmp_path / 'copy'}"],
                          capture_output=True, text=True, timeout=60)
    assert copy.returncode == 0, copy.stderr
    assert (tmp_path / "copy" / "manifest.json").exists()

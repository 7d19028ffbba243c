#!/usr/bin/env python3
"""Packs the filter into an OCI image that Istio's WasmPlugin can pull (`url: oci://…`).

The image is the "OCI compat" shape Istio's agent accepts: an OCI manifest whose last (only) layer
is a gzip'd tar holding `plugin.wasm`. The output is an OCI image layout directory (and a tarball of
it, an "OCI archive"); push it with `skopeo copy oci:<dir>:<tag> docker://<registry>/<repo>:<tag>`.
The build is reproducible: fixed tar metadata and gzip header, so equal wasm gives equal digests.
Pin `WasmPlugin.spec.sha256` to the printed manifest digest.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def layer_tar(wasm: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        info.mode = 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return out.getvalue()


def build(wasm_path: Path, out_dir: Path, tag: str) -> dict:
    wasm = wasm_path.read_bytes()
    if not wasm.startswith(b"\0asm"):
        raise SystemExit(f"{wasm_path} is not a wasm module")
    tar = layer_tar(wasm)
    layer = gzip.compress(tar, compresslevel=9, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(tar)}"]},
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": f"sha256:{sha256(config)}", "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": f"sha256:{sha256(layer)}", "size": len(layer)}],
            "annotations": {"module.wasm.image/variant": "compat"},
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": MANIFEST_TYPE,
                    "digest": f"sha256:{sha256(manifest)}",
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            ],
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()

    if out_dir.exists():
        shutil.rmtree(out_dir)
    blobs = out_dir / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (layer, config, manifest):
        (blobs / sha256(blob)).write_bytes(blob)
    (out_dir / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (out_dir / "index.json").write_bytes(index)

    archive = out_dir.with_name(f"{out_dir.name}-{tag}.tar")
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as tar_out:
        for path in sorted(out_dir.rglob("*")):
            info = tar_out.gettarinfo(str(path), arcname=str(path.relative_to(out_dir)))
            info.mtime = 0
            info.mode = 0o644 if path.is_file() else 0o755  # not the umask's
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_file():
                with path.open("rb") as f:
                    tar_out.addfile(info, f)
            else:
                tar_out.addfile(info)
    return {
        "layout": str(out_dir),
        "archive": str(archive),
        "tag": tag,
        "manifest_digest": f"sha256:{sha256(manifest)}",
        "wasm_sha256": sha256(wasm),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wasm", type=Path, default=Path("target/wasm32-wasip1/release/devcontainer_gateway.wasm"))
    parser.add_argument("--out", type=Path, default=Path("target/oci/devcontainer-gateway"))
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    result = build(args.wasm, args.out, args.tag)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The filter's software bill of materials: a CycloneDX 1.6 JSON document of the crates compiled
into the wasm module (`cargo metadata` for wasm32-wasip1, normal dependencies reachable from the
library; no dev- or build-only crates), with their versions, licences, package URLs, the SHA-256
of each crate from Cargo.lock, and who depends on whom.

Reproducible: no timestamp, a serial number derived from the content, everything sorted.

    tools/sbom.py > sbom.cdx.json
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = "wasm32-wasip1"


def cargo_metadata() -> dict:
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", TARGET],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    return json.loads(out.stdout)


def lock_checksums() -> dict[tuple[str, str], str]:
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    return {(p["name"], p["version"]): p["checksum"] for p in lock["package"] if "checksum" in p}


def purl(package: dict) -> str:
    return f"pkg:cargo/{package['name']}@{package['version']}"


def licence(package: dict) -> list[dict]:
    expression = package.get("license")
    if not expression:
        return []
    # Old crates write "MIT/Apache-2.0"; SPDX says "MIT OR Apache-2.0".
    return [{"expression": " OR ".join(part.strip() for part in expression.split("/"))}]


def reachable(metadata: dict) -> tuple[str, dict[str, list[str]]]:
    """The root package and, for it and every crate it pulls into the module, the crates each one
    depends on (normal dependencies only)."""
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    root = metadata["resolve"]["root"]
    graph: dict[str, list[str]] = {}
    todo = [root]
    while todo:
        current = todo.pop()
        if current in graph:
            continue
        deps = sorted({d["pkg"] for d in nodes[current]["deps"]
                       if any(k["kind"] is None for k in d["dep_kinds"])})
        graph[current] = deps
        todo.extend(deps)
    return root, graph


def sbom(metadata: dict, checksums: dict[tuple[str, str], str]) -> dict:
    packages = {p["id"]: p for p in metadata["packages"]}
    root_id, graph = reachable(metadata)
    root = packages[root_id]

    def component(package: dict, kind: str) -> dict:
        out = {"type": kind, "bom-ref": purl(package), "name": package["name"], "version": package["version"],
               "purl": purl(package)}
        if package.get("description"):
            out["description"] = " ".join(package["description"].split())
        if licence(package):
            out["licenses"] = licence(package)
        checksum = checksums.get((package["name"], package["version"]))
        if checksum:
            out["hashes"] = [{"alg": "SHA-256", "content": checksum}]
        if package.get("repository"):
            out["externalReferences"] = [{"type": "vcs", "url": package["repository"]}]
        return out

    components = sorted((component(packages[i], "library") for i in graph if i != root_id),
                        key=lambda c: (c["name"], c["version"]))
    dependencies = sorted(({"ref": purl(packages[i]), "dependsOn": [purl(packages[d]) for d in deps]}
                           for i, deps in graph.items()), key=lambda d: d["ref"])
    document = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "devcontainer-gateway tools/sbom.py"}]},
            "component": component(root, "application"),
            "properties": [{"name": "cargo:target", "value": TARGET}],
        },
        "components": components,
        "dependencies": dependencies,
    }
    content = json.dumps(document, sort_keys=True).encode()
    serial = uuid.uuid5(uuid.NAMESPACE_URL, "urn:sha256:" + hashlib.sha256(content).hexdigest())
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "serialNumber": f"urn:uuid:{serial}", **document}


def main() -> int:
    json.dump(sbom(cargo_metadata(), lock_checksums()), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

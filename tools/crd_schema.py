#!/usr/bin/env python3
"""Turns one CustomResourceDefinition into the standalone JSON Schema (draft-07) that
tests/test_manifests.py validates whole objects with, by the rules of tests/schemas/README.md:

- `nullable: true` becomes a type union with "null";
- `x-kubernetes-int-or-string` becomes `anyOf: integer | string` where the CRD does not say so already;
- an object that lists `properties` and does not preserve unknown fields gets
  `additionalProperties: false` (strict field validation: unknown fields are errors);
- CEL rules (`x-kubernetes-validations`) stay as annotations, unenforced;
- around `spec`/`status`: `apiVersion` (the served versions), `kind`, a `metadata` subset.

    tools/crd_schema.py CRDS.yaml wasmplugins.extensions.istio.io \\
        --source "istio/api kubernetes/customresourcedefinitions.gen.yaml, tag 1.26.8 (commit …)" > out.json
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

METADATA = {
    "description": "Kubernetes ObjectMeta (subset checked here; other ObjectMeta fields are allowed). Names "
                   "must be DNS-1123 subdomains (Kubernetes rule for custom resources).",
    "type": "object",
    "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": DNS1123_SUBDOMAIN},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": DNS1123_LABEL},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def convert(node):
    """The CRD's OpenAPI v3 subset as JSON Schema, by the rules above."""
    if isinstance(node, list):
        return [convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: convert(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


def schema_for(crd: dict, source: str) -> dict:
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    versions = [v for v in spec["versions"] if v.get("served")]
    schemas = {json.dumps(v["schema"]["openAPIV3Schema"], sort_keys=True) for v in versions}
    if len(schemas) != 1:
        raise SystemExit(f"{crd['metadata']['name']}: served versions differ; one schema per version is needed")
    [storage] = [v["name"] for v in versions if v.get("storage")]
    body = convert(versions[0]["schema"]["openAPIV3Schema"])
    api_versions = [f"{group}/{v['name']}" for v in versions]
    properties = {
        "apiVersion": {"type": "string", "enum": api_versions},
        "kind": {"type": "string", "const": kind},
        "metadata": METADATA,
        **{k: v for k, v in body["properties"].items() if k in ("spec", "status")},
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"Istio {kind} ({', '.join(api_versions)})",
        "$comment": (
            f"Generated from {source}, CRD {crd['metadata']['name']}, by tools/crd_schema.py. The spec/status "
            "schemas are the CRD openAPIV3Schema, unchanged except: nullable -> type union; "
            "additionalProperties:false added on objects that list properties and do not preserve unknown "
            "fields (mirrors strict field validation). x-kubernetes-validations (CEL) rules are kept as "
            "annotations but NOT enforced by JSON Schema validators. Served versions share one schema; "
            f"storage version {group}/{storage}."
        ),
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": properties,
        "additionalProperties": False,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("crds", help="YAML file with the CustomResourceDefinitions")
    parser.add_argument("name", help="metadata.name of the CRD, e.g. wasmplugins.extensions.istio.io")
    parser.add_argument("--source", required=True, help="where the YAML file comes from (repository, path, tag, commit)")
    args = parser.parse_args()
    with open(args.crds, encoding="utf-8") as f:
        crds = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "CustomResourceDefinition"]
    found = [c for c in crds if c["metadata"]["name"] == args.name]
    if len(found) != 1:
        print(f"{args.crds}: no single CRD named {args.name}", file=sys.stderr)
        return 1
    json.dump(schema_for(found[0], args.source), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

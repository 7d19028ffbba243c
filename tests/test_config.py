"""A configuration the filter refuses keeps Envoy from starting, and the log says where and why."""

from __future__ import annotations

import pytest

from harness import Envoy, gateway_config

REFUSED = [
    ("", "outpost.cluster: is required, and the configuration is empty"),
    ("{not json", "(root): configuration is not valid JSON"),
    ('{"outpost": {}}', "outpost.cluster: is required"),
    ('{"outpost": {"cluster": "ak", "timout": "2s"}}', "outpost.timout: unknown field"),
    ('{"outpost": {"cluster": "ak", "timeout": 2}}', "outpost.timeout: must be a string, not a number"),
    ('{"outpost": {"cluster": "ak", "timeout": "0s"}}', 'outpost.timeout: "0s" is outside 1ms..60s'),
    ('{"outpost": {"cluster": "ak", "generation": "Rust"}}', 'outpost.generation: "Rust" is not "go" (authentik up to 2026.6) or "rust"'),
    ('{"outpost": {"cluster": "ak", "path_prefix": "auth"}}', 'outpost.path_prefix: "auth" is not an absolute path'),
    ('{"outpost": {"cluster": "ak"}, "identity_headers": ["x-authentik-jwt"]}', 'identity_headers[0]: "x-authentik-jwt" carries the user\'s access token'),
    ('{"outpost": {"cluster": "ak"}, "identity_headers": ["cookie"]}', 'identity_headers[0]: "cookie" is not an x-authentik-* header name'),
    ('{"outpost": {"cluster": "ak"}, "health_path": "health"}', 'health_path: "health" is not an absolute path'),
    ('{"outpost": {"cluster": "ak"}, "routing": {"namespace": "Foo_Bar"}}', 'routing.namespace: "Foo_Bar" is not a DNS-1123 label'),
    ('{"outpost": {"cluster": "ak"}, "routing": {"mode": "per_repo"}}', 'routing.mode: "per_repo" is not "shared", "per-repo" or "per-user"'),
    ('{"outpost": {"cluster": "ak"}, "routing": {"mode": "per-repo", "service": "x"}}', 'routing.service: is only used with mode "shared"'),
    ('{"outpost": {"cluster": "ak"}, "routing": {"service": "Dev_Container"}}', 'routing.service: "Dev_Container" is not a DNS-1035 label'),
    ('{"outpost": {"cluster": "ak"}, "routing": {"strip_prefix": "yes"}}', "routing.strip_prefix: must be true or false, not a string"),
    ('{"outpost": {"cluster": "ak"}, "routing": {"authority_template": "{svc}.x"}}', 'routing.authority_template: "{svc}.x" uses {svc}'),
    ('{"outpost": {"cluster": "ak"}, "routing": {"cluster_header": "x-github-repo"}}', 'routing.cluster_header: "x-github-repo" is not a free header name'),
    ('{"outpost": {"cluster": "ak"}, "extra": true}', "extra: unknown field"),
]


@pytest.mark.parametrize("config, message", REFUSED, ids=[m.split(":")[0] for _, m in REFUSED])
def test_refused_configuration_stops_envoy_and_names_the_path(outpost, upstream, config, message):
    envoy = Envoy(gateway_config(outpost.port, upstream.port, config), name="refused")
    code = envoy.wait_exit(timeout=30)
    log = envoy.log()
    assert code not in (None, 0), log[-2000:]
    assert f"configuration refused: {message}" in log, log[-3000:]

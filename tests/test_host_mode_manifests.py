"""Host-based workspaces, istio/host-mode/: the manifests agree with each other, with the path-mode
files they build on and with the filter, and the route table they make Istio generate works in the
real Envoy with the filter configured as the host-mode WasmPlugin configures it.

Schema validation of every file is in tests/test_manifests.py (it walks istio/ recursively)."""

from __future__ import annotations

import copy
import json
import subprocess
from urllib.parse import urlsplit

import pytest

from harness import Envoy, assert_outpost_pages_only, gateway_config, hcm, istio_wasm_config, wasm_filter
from test_istio_shape import merge
from test_manifests import (
    ISTIO,
    Tag,
    blueprint_entries,
    blueprint_errors,
    config_value,
    docs,
    entries_of,
    file_errors,
    load_blueprint,
    manifest_errors,
    manifest_files,
    one,
    rel,
)

HOST_MODE = ISTIO / "host-mode"
FILES = ["host-mode/gateway.yaml", "host-mode/route-patch.yaml", "host-mode/wasmplugin.yaml",
         "host-mode/authentik/blueprint.yaml"]
EXAMPLE_REPO = "github/octocat/hello-world"


def plugin() -> dict:
    return one("host-mode/wasmplugin.yaml", "WasmPlugin")


def plugin_config() -> dict:
    return plugin()["spec"]["pluginConfig"]


def domain() -> str:
    return plugin_config()["routing"]["workspace_domain"]


def gateway() -> dict:
    return one("host-mode/gateway.yaml", "Gateway")


def server(port: int) -> dict:
    [found] = [s for s in gateway()["spec"]["servers"] if s["port"]["number"] == port]
    return found


def virtual_service(host: str) -> dict:
    [found] = [d for d in one_kind("host-mode/gateway.yaml", "VirtualService") if host in d["spec"]["hosts"]]
    return found


def one_kind(path: str, kind: str) -> list[dict]:
    return [d for d in docs(path) if d.get("kind") == kind]


def route_patch() -> dict:
    [patch] = one("host-mode/route-patch.yaml", "EnvoyFilter")["spec"]["configPatches"]
    return patch


def host_blueprint() -> dict:
    return load_blueprint(HOST_MODE / "authentik" / "blueprint.yaml")


def path_blueprint() -> dict:
    return load_blueprint(ISTIO / "authentik" / "blueprint.yaml")


def istio_vhost_name(server_host: str, vs_host: str, port: int) -> str:
    """The name istiod gives a gateway virtual host: util.DomainName(host, port), i.e.
    net.JoinHostPort, of the lower-cased intersection of the server's and the VirtualService's host
    (istio/istio pilot/pkg/networking/core/gateway.go, pilot/pkg/networking/util/util.go). Only the
    cases used here: equal hosts, or one a wildcard covering the other."""
    a, b = server_host.lower(), vs_host.lower()
    covers = lambda wild, name: wild.startswith("*.") and name.endswith(wild[1:])  # noqa: E731
    host = a if a == b or covers(b, a) else b if covers(a, b) else None
    assert host is not None, f"{server_host} and {vs_host} do not intersect"
    return f"{host}:{port}"


def run_cli(cli, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli), *args], input=stdin, capture_output=True, text=True, timeout=30)


# --------------------------------------------------------------------------------------------------
# The files are there and validated
# --------------------------------------------------------------------------------------------------


def test_host_mode_files_are_validated_with_the_others():
    found = {rel(p) for p in manifest_files()}
    assert set(FILES) <= found
    assert {rel(p) for p in manifest_files() if p.is_relative_to(HOST_MODE)} == set(FILES), "a new file: add it here"
    for path in FILES:
        assert file_errors(ISTIO / path) == [], path


def _blueprint_with(change) -> dict:
    doc = host_blueprint()
    [provider] = [e for e in blueprint_entries(doc) if e["model"] == "authentik_providers_proxy.proxyprovider"]
    change(provider["attrs"])
    return doc


@pytest.mark.parametrize("change,expected", [
    (lambda a: a.update(cookie_domain=["dev.example.com"]), "cookie_domain"),
    (lambda a: a.update(mode="forward_domains"), "mode"),
    (lambda a: a.update(external_host=""), "external_host"),
], ids=["cookie_domain", "mode", "external_host"])
def test_validator_reports_a_broken_host_mode_blueprint(change, expected):
    assert blueprint_errors(host_blueprint()) == []
    errors = blueprint_errors(_blueprint_with(change))
    assert any(expected in e for e in errors), errors


def test_validator_reports_broken_host_mode_manifests():
    gw = copy.deepcopy(gateway())
    gw["spec"]["servers"][0]["tls"]["mode"] = "SIMPLEST"
    assert any("tls.mode" in e for e in manifest_errors(gw))
    vs = copy.deepcopy(virtual_service(f"*.{domain()}"))
    vs["spec"]["http"][0]["match"][0]["headers"]["x-devcontainer-cluster"] = {"regexp": ".+"}
    assert any("headers" in e for e in manifest_errors(vs))
    ef = copy.deepcopy(one("host-mode/route-patch.yaml", "EnvoyFilter"))
    ef["spec"]["configPatches"][0]["match"]["routeConfiguration"]["vhost"]["nam"] = "x"
    assert any("vhost" in e for e in manifest_errors(ef))


# --------------------------------------------------------------------------------------------------
# The filter's configuration
# --------------------------------------------------------------------------------------------------


def test_plugin_config_is_accepted_by_the_filter(cli):
    # As istiod delivers pluginConfig: compact JSON.
    text = json.dumps(plugin_config(), separators=(",", ":"))
    ok = run_cli(cli, "check-config", stdin=text)
    assert ok.returncode == 0 and "configuration accepted" in ok.stdout, ok.stderr
    # The same check refuses a workspace domain outside per-repo mode: it reads the field.
    shared = copy.deepcopy(plugin_config())
    shared["routing"]["mode"] = "shared"
    bad = run_cli(cli, "check-config", stdin=json.dumps(shared))
    assert bad.returncode == 1
    assert 'routing.workspace_domain: host-based workspaces need mode "per-repo"' in bad.stderr


def test_wasmplugin_is_the_path_mode_plugin_plus_the_workspace_domain():
    path_mode = one("wasmplugin.yaml", "WasmPlugin")
    host_mode = plugin()
    # Same object: applying one replaces the other, so the filter never runs twice.
    assert host_mode["metadata"] == path_mode["metadata"]
    assert {k: v for k, v in host_mode["spec"].items() if k != "pluginConfig"} == {
        k: v for k, v in path_mode["spec"].items() if k != "pluginConfig"
    }
    expected = copy.deepcopy(path_mode["spec"]["pluginConfig"])
    expected["routing"]["workspace_domain"] = domain()
    assert host_mode["spec"]["pluginConfig"] == expected
    assert plugin_config()["routing"]["mode"] == "per-repo"


# --------------------------------------------------------------------------------------------------
# One domain everywhere
# --------------------------------------------------------------------------------------------------


def test_workspace_domain_is_the_gateway_wildcard_and_the_cookie_domain():
    d = domain()
    assert d == d.lower() and "." in d and not d.startswith(("*", "."))
    https, http = server(443), server(80)
    assert https["hosts"] == [d, f"*.{d}"]
    assert https["port"]["protocol"] == "HTTPS"
    assert http["hosts"] == https["hosts"] and http["tls"] == {"httpsRedirect": True}
    assert len(gateway()["spec"]["servers"]) == 2
    assert gateway()["spec"]["selector"] == one("gateway.yaml", "Gateway")["spec"]["selector"]
    assert virtual_service(f"*.{d}")["spec"]["hosts"] == [f"*.{d}"]
    assert virtual_service(d)["spec"]["hosts"] == [d]
    [provider] = entries_of(host_blueprint(), "authentik_providers_proxy.proxyprovider")
    assert provider["attrs"]["mode"] == "forward_domain"
    assert provider["attrs"]["cookie_domain"] == d
    # The route patch's virtual host is the wildcard's.
    assert route_patch()["match"]["routeConfiguration"]["vhost"]["name"] == f"*.{d}:443"


def test_main_host_stays_outside_the_workspace_domain():
    """The main host keeps its own server (no SNI overlap) and is not read as a workspace host."""
    d = domain()
    main_hosts = {h for s in one("gateway.yaml", "Gateway")["spec"]["servers"] for h in s["hosts"]}
    for host in main_hosts:
        assert host != d and not host.endswith(f".{d}"), host
    assert not main_hosts & set(server(443)["hosts"])


def test_external_host_is_the_apex_within_the_cookie_domain(cli):
    d = domain()
    [provider] = entries_of(host_blueprint(), "authentik_providers_proxy.proxyprovider")
    external = urlsplit(provider["attrs"]["external_host"])
    assert external.scheme == "https" and external.path in ("", "/") and not external.port
    # Within cookie_domain: the callback must carry the session cookie (Domain=cookie_domain).
    host = external.hostname
    assert host == provider["attrs"]["cookie_domain"] or host.endswith("." + provider["attrs"]["cookie_domain"])
    # Not a workspace host ({label}.{domain}): its /outpost.goauthentik.io/ pages reach the outpost.
    assert host == d
    # ...through the apex's outpost route, on the Gateway's HTTPS server.
    assert host in server(443)["hosts"]
    assert [r["name"] for r in virtual_service(host)["spec"]["http"]] == ["outpost"]
    # The launch link is a workspace host, named as the filter names the Service.
    service = run_cli(cli, "service-name", EXAMPLE_REPO).stdout.strip()
    [app] = entries_of(host_blueprint(), "authentik_core.application")
    assert app["attrs"]["meta_launch_url"] == f"https://{service}.{d}/"


# --------------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------------


def test_workspace_route_matches_the_filters_header_only():
    config = plugin_config()
    gw = gateway()
    vs = virtual_service(f"*.{domain()}")
    assert vs["spec"]["gateways"] == [f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"]
    workspaces, outpost = vs["spec"]["http"]
    assert (workspaces["name"], outpost["name"]) == ("workspaces", "outpost")
    [match] = outpost["match"]
    assert_outpost_pages_only(match["uri"]["regex"])
    header = config_value(config, "routing.cluster_header")
    assert workspaces["match"] == [{"headers": {header: {"regex": ".+"}}}]
    assert "timeout" not in workspaces, "Knative bounds cold starts; a route timeout would cut WebSockets"
    assert workspaces.get("retries") == {"attempts": 0}
    _, port, _, host = config_value(config, "routing.cluster_template").split("|")
    assert [r["destination"] for r in workspaces["route"]] == [{"host": host, "port": {"number": int(port)}}]
    # The path-mode route is the same route.
    path_mode = next(r for r in one("gateway.yaml", "VirtualService")["spec"]["http"] if r["name"] == "workspaces")
    assert workspaces == path_mode


def test_apex_routes_only_the_outpost():
    config = plugin_config()
    gw = gateway()
    vs = virtual_service(domain())
    assert vs["spec"]["gateways"] == [f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"]
    [outpost] = vs["spec"]["http"]
    [match] = outpost["match"]
    assert_outpost_pages_only(match["uri"]["regex"])
    _, port, _, host = config["outpost"]["cluster"].split("|")
    assert [r["destination"] for r in outpost["route"]] == [{"host": host, "port": {"number": int(port)}}]
    assert host != config_value(config, "routing.cluster_template").split("|")[3], "a way to a workspace"


def test_route_patch_targets_the_wildcard_workspace_route():
    config = plugin_config()
    patch = route_patch()
    ef = one("host-mode/route-patch.yaml", "EnvoyFilter")
    assert ef["spec"]["workloadSelector"] == {"labels": gateway()["spec"]["selector"]}
    assert patch["applyTo"] == "HTTP_ROUTE" and patch["match"]["context"] == "GATEWAY"
    assert patch["patch"]["operation"] == "MERGE"
    # The filter's header names, exactly as the path-mode patch merges them.
    [path_mode] = one("route-patch.yaml", "EnvoyFilter")["spec"]["configPatches"]
    assert patch["patch"]["value"] == path_mode["patch"]["value"] == {
        "route": {
            "cluster_header": config_value(config, "routing.cluster_header"),
            "host_rewrite_header": config_value(config, "routing.authority_header"),
        },
        "request_headers_to_remove": [config_value(config, "routing.cluster_header")],
    }
    # Route table https.<port>.<port name>.<gateway>.<namespace>, split at dots by istiod.
    gw, https = gateway(), server(443)
    match = patch["match"]["routeConfiguration"]
    assert match["portNumber"] == https["port"]["number"]
    assert match["portName"] == https["port"]["name"]
    assert match["gateway"] == f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"
    assert "." not in gw["metadata"]["name"] and "." not in https["port"]["name"]
    wildcard = f"*.{domain()}"
    vs_host = virtual_service(wildcard)["spec"]["hosts"][0]
    assert match["vhost"] == {
        "name": istio_vhost_name(wildcard, vs_host, https["port"]["number"]),
        "route": {"name": "workspaces"},
    }
    referenced = ef["metadata"]["annotations"]["envoyfilter.istio.io/referenced-services"].split(",")
    for cluster in (config["outpost"]["cluster"], config_value(config, "routing.cluster_template")):
        assert cluster.split("|")[3] in referenced


def test_istio_vhost_names():
    assert istio_vhost_name("*.dev.example.com", "*.dev.example.com", 443) == "*.dev.example.com:443"
    assert istio_vhost_name("*.dev.example.com", "a.dev.example.com", 443) == "a.dev.example.com:443"
    assert istio_vhost_name("Dev.Example.com", "dev.example.com", 443) == "dev.example.com:443"
    with pytest.raises(AssertionError):
        istio_vhost_name("dev.example.com", "*.dev.example.com", 443)


# --------------------------------------------------------------------------------------------------
# TLS and authentik
# --------------------------------------------------------------------------------------------------


def test_tls_secret_names_agree():
    https = server(443)
    assert https["tls"] == {"mode": "SIMPLE", "credentialName": "devcontainer-workspaces-tls"}
    secret = https["tls"]["credentialName"]
    assert "credentialName" not in server(80).get("tls", {})
    # Created in the gateway's namespace, as both READMEs say.
    command = f"kubectl -n {gateway()['metadata']['namespace']} create secret tls {secret} "
    assert command in (HOST_MODE / "README.md").read_text()
    assert command in (ISTIO / "README.md").read_text()
    # A certificate of its own: the main host's Secret does not name the workspace hosts.
    main = next(s for s in one("gateway.yaml", "Gateway")["spec"]["servers"] if s["port"]["number"] == 443)
    assert main["tls"]["credentialName"] != secret


def test_blueprint_is_the_path_mode_one_in_domain_mode():
    host_doc, path_doc = host_blueprint(), path_blueprint()
    [provider] = entries_of(host_doc, "authentik_providers_proxy.proxyprovider")
    [path_provider] = entries_of(path_doc, "authentik_providers_proxy.proxyprovider")
    changed = {"mode", "external_host", "cookie_domain"}
    assert {k: v for k, v in provider["attrs"].items() if k not in changed} == {
        k: v for k, v in path_provider["attrs"].items() if k not in changed
    }
    assert "cookie_domain" not in path_provider["attrs"]
    # Its own provider and application, so both modes can be served side by side.
    assert provider["identifiers"] != path_provider["identifiers"]
    [app] = entries_of(host_doc, "authentik_core.application")
    [path_app] = entries_of(path_doc, "authentik_core.application")
    assert app["identifiers"] != path_app["identifiers"]
    assert app["attrs"]["provider"] == Tag("!KeyOf", provider["id"])
    assert app["attrs"]["policy_engine_mode"] == "any"
    # The same groups let in, and the embedded outpost (the one the plugin calls) serves it.
    groups = {e["identifiers"]["name"]: e["id"] for e in entries_of(host_doc, "authentik_core.group")}
    assert set(groups) == {"admins", "developers"}
    bound = {b["identifiers"]["group"].value for b in entries_of(host_doc, "authentik_policies.policybinding")
             if b["identifiers"]["target"] == Tag("!KeyOf", app["id"])}
    assert bound == set(groups.values())
    [outpost] = entries_of(host_doc, "authentik_outposts.outpost")
    assert outpost["identifiers"] == {"managed": "goauthentik.io/outposts/embedded"}
    assert outpost["attrs"]["providers"] == [Tag("!KeyOf", provider["id"])]
    assert "ak-outpost-authentik-embedded-outpost." in plugin_config()["outpost"]["cluster"]


# --------------------------------------------------------------------------------------------------
# The route table istiod builds from these files, in the real Envoy
# --------------------------------------------------------------------------------------------------


def envoy_route(http_route: dict) -> dict:
    """One VirtualService http route as istiod translates the parts used here."""
    [match] = http_route["match"]
    uri = match.get("uri", {"prefix": "/"})
    # istiod: `prefix` stays a prefix, `regex` becomes a safe_regex (RE2, matched whole).
    out = {"safe_regex": {"regex": uri["regex"]}} if "regex" in uri else {"prefix": uri["prefix"]}
    if "headers" in match:
        out["headers"] = [{"name": name, "string_match": {"safe_regex": {"regex": m["regex"]}}}
                          for name, m in match["headers"].items()]
    [destination] = [r["destination"] for r in http_route["route"]]
    cluster = f"outbound|{destination['port']['number']}||{destination['host']}"
    # A VirtualService route without a timeout gets 0s (none) from istiod.
    return {"name": http_route["name"], "match": out, "route": {"cluster": cluster, "timeout": "0s"}}


def route_table() -> list[dict]:
    """The virtual hosts of the HTTPS server's route table, with route-patch.yaml applied."""
    https, gw = server(443), gateway()
    bound = f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"
    vhosts = []
    for vs in one_kind("host-mode/gateway.yaml", "VirtualService"):
        assert vs["spec"]["gateways"] == [bound]
        for vs_host in vs["spec"]["hosts"]:
            [server_host] = [h for h in https["hosts"] if h == vs_host]
            vhosts.append({
                "name": istio_vhost_name(server_host, vs_host, https["port"]["number"]),
                "domains": [vs_host],
                "routes": [envoy_route(r) for r in vs["spec"]["http"]],
            })
    patch = route_patch()
    target = patch["match"]["routeConfiguration"]["vhost"]
    applied = 0
    for vhost in vhosts:
        for i, route in enumerate(vhost["routes"]):
            if vhost["name"] == target["name"] and route["name"] == target["route"]["name"]:
                vhost["routes"][i] = merge(route, patch["patch"]["value"])
                applied += 1
    assert applied == 1, "route-patch.yaml matches no generated route (or several)"
    return vhosts


def host_mode_gateway(outpost_port: int, upstream_port: int) -> dict:
    spec = plugin()["spec"]
    config = spec["pluginConfig"]
    local_gateway = config_value(config, "routing.cluster_template")
    bootstrap = gateway_config(outpost_port, upstream_port, outpost_cluster=config["outpost"]["cluster"],
                               clusters={local_gateway: upstream_port})
    # The filter as istiod delivers a WasmPlugin.
    wasm_filter(bootstrap)["typed_config"]["config"] = istio_wasm_config(plugin())
    hcm(bootstrap)["route_config"]["virtual_hosts"] = route_table()
    return bootstrap


@pytest.fixture(scope="module")
def hosts(outpost, upstream):
    with Envoy(host_mode_gateway(outpost.port, upstream.port), name="host-mode") as envoy:
        yield envoy


@pytest.fixture(scope="module")
def workspace_host(cli) -> str:
    return f"{run_cli(cli, 'service-name', EXAMPLE_REPO).stdout.strip()}.{domain()}"


def echo_headers(response) -> dict[str, str]:
    return {n.lower(): v for n, v in response.json()["headers"]}


def test_configuration_accepted_in_envoy(hosts):
    assert "configuration refused" not in hosts.log()


def test_workspace_host_without_session_goes_to_login(hosts, outpost, upstream, workspace_host):
    # A client's own routing header changes nothing.
    spoofed = ("X-Devcontainer-Cluster", config_value(plugin_config(), "routing.cluster_template"))
    r = hosts.get("/", [spoofed], host=workspace_host)
    assert r.status == 302
    [check] = outpost.checks
    assert check["path"] == "/outpost.goauthentik.io/auth/envoy/"
    assert dict((n.lower(), v) for n, v in check["headers"])["host"] == workspace_host
    assert upstream.requests == []


def test_workspace_host_reaches_its_service_with_the_whole_path(hosts, upstream, alice, workspace_host):
    r = hosts.get("/deep/path?q=1", [("Cookie", f"{alice}; theme=dark")], host=workspace_host)
    assert r.status == 200, r.body
    headers = echo_headers(r)
    service = workspace_host.split(".", 1)[0]
    assert headers["host"] == f"{service}.{config_value(plugin_config(), 'routing.namespace')}.svc.cluster.local"
    assert r.json()["path"] == "/deep/path?q=1"
    assert headers["x-authentik-username"] == "alice"
    assert headers["x-github-repo"] == "https://github.com/octocat/hello-world"
    assert headers["cookie"] == "theme=dark"
    assert "x-forwarded-prefix" not in headers and "x-devcontainer-cluster" not in headers


@pytest.mark.parametrize("host", ["apex", "devcontainer.example.com"])
def test_repository_links_move_to_the_workspace_host(hosts, outpost, upstream, workspace_host, host):
    host = domain() if host == "apex" else host
    r = hosts.get("/github/Octocat/Hello-World/vnc.html?x=1", host=host)
    assert r.status == 302
    # The emulation's listener is plain HTTP; on the gateway's HTTPS listener the scheme is https.
    assert r.header("location") == f"http://{workspace_host}/vnc.html?x=1"
    assert outpost.checks == [] and upstream.requests == []


def test_sign_out_on_the_apex_reaches_the_outpost_with_the_session(hosts, outpost, upstream, alice):
    r = hosts.get("/outpost.goauthentik.io/sign_out", [("Cookie", alice)], host=domain())
    assert r.status == 302
    assert r.header("location").startswith(outpost.end_session_url + "?id_token_hint=")
    # By the apex's outpost route, not through a check.
    assert outpost.checks == [] and upstream.requests == []


def test_logout_signature_on_a_workspace_host_reaches_the_outpost(hosts, outpost, upstream, alice, workspace_host):
    r = hosts.get("/?X-authentik-logout=true", [("Cookie", alice)], host=workspace_host)
    assert r.status == 302
    assert r.header("location").startswith(outpost.end_session_url + "?id_token_hint=")
    # Relayed through the filter's check, with the session cookie.
    [check] = outpost.checks
    assert check["path"] == "/outpost.goauthentik.io/auth/envoy/?X-authentik-logout=true"
    assert upstream.requests == []


def test_sign_out_on_a_workspace_host_reaches_the_outpost(hosts, outpost, upstream, alice, workspace_host):
    """The filter leaves /outpost.goauthentik.io/ on a workspace host to the route table, and the
    wildcard VirtualService's outpost route takes it, with the session cookie."""
    r = hosts.get("/outpost.goauthentik.io/sign_out", [("Cookie", alice)], host=workspace_host)
    assert r.status == 302, r.body
    assert r.header("location").startswith(outpost.end_session_url + "?id_token_hint=")
    assert outpost.checks == [] and upstream.requests == []


def test_a_label_that_is_no_service_name_is_not_found(hosts, outpost, upstream):
    r = hosts.get("/", host=f"{'a' * 58}.{domain()}")
    assert r.status == 404
    assert outpost.checks == [] and upstream.requests == []

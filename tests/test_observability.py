"""The metrics deliverables in istio/observability/: the Grafana dashboard, the Prometheus scrape job,
Istio's stats matcher, and the metrics the running filter really exports.

METRICS is the one list of the filter's metrics (names as on /stats/prometheus). The dashboard may
use only these and must use all of them; the running filter may define only these, and each one it
defines must reach /stats/prometheus, also through the stats matcher Istio puts in front of it."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness import Envoy, gateway_config

ROOT = Path(__file__).resolve().parent.parent
OBSERVABILITY = ROOT / "istio" / "observability"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
SCRAPE = OBSERVABILITY / "prometheus-scrape.yaml"
ISTIOD_VALUES = OBSERVABILITY / "istiod-values.yaml"
GATEWAY_VALUES = OBSERVABILITY / "gateway-values.yaml"
README = OBSERVABILITY / "README.md"
WASMPLUGIN = ROOT / "istio" / "wasmplugin.yaml"

# The filter's metrics: name on /stats/prometheus -> Prometheus type. Histograms are in milliseconds
# and appear as <name>_bucket{le=…}, <name>_sum and <name>_count.
METRICS: dict[str, str] = {
    "devcontainer_gateway_outpost_checks_total": "counter",
    "devcontainer_gateway_allowed_total": "counter",
    "devcontainer_gateway_auth_redirects_total": "counter",
    "devcontainer_gateway_auth_refused_total": "counter",
    "devcontainer_gateway_auth_failures_total": "counter",
    "devcontainer_gateway_bad_requests_total": "counter",
    "devcontainer_gateway_local_replies_total": "counter",
    "devcontainer_gateway_spoofed_headers_total": "counter",
    "devcontainer_gateway_cache_hits_total": "counter",
    "devcontainer_gateway_cache_misses_total": "counter",
    "devcontainer_gateway_access_denied_total": "counter",
    "devcontainer_gateway_starting_pages_total": "counter",
    "devcontainer_gateway_cold_starts_total": "counter",
    "devcontainer_gateway_workspace_headers_dropped_total": "counter",
    "devcontainer_gateway_provisioner_calls_total": "counter",
    "devcontainer_gateway_provisioner_failures_total": "counter",
    "devcontainer_gateway_outpost_latency_ms": "histogram",
    "devcontainer_gateway_cold_start_wait_ms": "histogram",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Envoy's name for a metric a wasm module defines (stripped again on /stats/prometheus).
WASM_PREFIX = "wasmcustom."


# --------------------------------------------------------------------------------------------------
# PromQL: which metrics an expression reads
# --------------------------------------------------------------------------------------------------

PROMQL_FUNCTIONS = {
    "abs", "avg", "avg_over_time", "ceil", "clamp", "clamp_max", "clamp_min", "count", "delta", "deriv",
    "floor", "histogram_quantile", "idelta", "increase", "irate", "label_replace", "max",
    "max_over_time", "min", "min_over_time", "quantile", "rate", "round", "scalar", "sort", "sort_desc",
    "sum", "sum_over_time", "time", "topk", "bottomk", "vector",
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                   "unless", "offset"}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"' + r"|'(?:\\.|[^'\\])*'")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def promql_metrics(expr: str) -> set[str]:
    """The metric names an expression selects. Raises on a function this parser does not know, so
    that nothing read as a function is silently skipped."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges, subqueries
    text = _LABEL_LIST.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        word = m.group()
        if text[m.end():].lstrip().startswith("("):
            if word not in PROMQL_FUNCTIONS:
                raise ValueError(f"unknown PromQL function {word!r} in {expr!r}")
        elif word not in PROMQL_KEYWORDS:
            names.add(word)
    return names


def metric_of(series: str) -> str | None:
    """The entry of METRICS a series name belongs to (a histogram's _bucket/_sum/_count included)."""
    if METRICS.get(series) == "counter":
        return series
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base != series and METRICS.get(base) == "histogram":
            return base
    return None


# --------------------------------------------------------------------------------------------------
# The dashboard
# --------------------------------------------------------------------------------------------------


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    """Every panel, those inside (collapsed) rows included."""
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def variable_query(variable: dict) -> str:
    query = variable.get("query")
    return query.get("query", "") if isinstance(query, dict) else (query or "")


def expressions(board: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel query, and the series a query variable reads."""
    out = [(f"panel {p['title']!r} {t['refId']}", t["expr"])
           for p in panels(board) for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable_query(var).strip())
            assert m, f"variable {var['name']}: expected label_values(<series>, <label>)"
            out.append((f"variable {var['name']}", m.group(1)))
    return out


def dashboard_metrics() -> set[str]:
    used = set()
    for _, expr in expressions(dashboard()):
        used |= {metric_of(name) or name for name in promql_metrics(expr)}
    return used


def test_dashboard_is_grafana_json():
    board = dashboard()
    assert board["schemaVersion"] == 39
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    pod = variables["pod"]
    assert pod["type"] == "query" and pod["includeAll"] and pod["multi"]
    assert variable_query(pod).endswith(", pod)")
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells = {}
    for p in panels(board):
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, f"{p['title']}: outside the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p.get("description"), f"{p['title']}: say what the panel shows"
        refs = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"] and t["expr"].strip()


def test_dashboard_reads_only_the_filters_metrics():
    for where, expr in expressions(dashboard()):
        names = promql_metrics(expr)
        assert names, f"{where}: reads no metric: {expr}"
        unknown = sorted(n for n in names if metric_of(n) is None)
        assert not unknown, f"{where}: not a metric of the filter (see METRICS): {unknown}"
        if where.startswith("panel"):
            # Every selector honours the pod variable; counters go through rate().
            for name in names:
                assert re.search(re.escape(name) + r'\{pod=~"\$pod"\}', expr), f"{where}: {name} without {{pod=~\"$pod\"}}"
                if METRICS.get(name) == "counter":
                    assert re.search(r"\brate\(" + re.escape(name) + r"\{", expr), f"{where}: {name} outside rate()"


def test_every_metric_is_on_the_dashboard():
    missing = sorted(set(METRICS) - dashboard_metrics())
    assert not missing, f"no panel shows {missing}"


def test_dashboard_has_the_requested_views():
    exprs = {where: expr for where, expr in expressions(dashboard())}
    text = " ".join(exprs.values())
    outcomes = next(p for p in panels(dashboard()) if p["title"] == "Request outcomes")
    assert outcomes["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    for q, histogram in ((0.5, "outpost_latency_ms"), (0.99, "outpost_latency_ms"),
                         (0.5, "cold_start_wait_ms"), (0.9, "cold_start_wait_ms")):
        assert (f"histogram_quantile({q}, sum by (le) (rate(devcontainer_gateway_{histogram}_bucket"
                in text), f"p{int(q * 100)} of {histogram}"
    assert "[5m]" in text and "$__rate_interval" not in text


def test_readme_describes_every_metric():
    listed = set(re.findall(r"^\| `(devcontainer_gateway_\w+)` \|", README.read_text(), re.M))
    assert listed == set(METRICS)


def test_metric_parser_can_fail():
    assert promql_metrics('sum by (pod) (rate(a_total{pod=~"$pod", x="y{z}"}[5m])) / 1e3') == {"a_total"}
    assert promql_metrics("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))") == {"h_bucket"}
    assert promql_metrics("sum(rate(a[5m])) / on(pod) group_left sum(rate(b[1h:5m]))") == {"a", "b"}
    with pytest.raises(ValueError):
        promql_metrics("histogram_quantiles(0.5, x)")
    assert metric_of("devcontainer_gateway_outpost_latency_ms_bucket") == "devcontainer_gateway_outpost_latency_ms"
    assert metric_of("devcontainer_gateway_outpost_latency_ms") is None, "histograms only exist with a suffix"
    assert metric_of("devcontainer_gateway_allowed_total_count") is None
    assert metric_of("devcontainer_gateway_allowed") is None


# --------------------------------------------------------------------------------------------------
# The Prometheus scrape job
# --------------------------------------------------------------------------------------------------

# Fields this job may use, from Prometheus docs/configuration/configuration.md (<scrape_config>,
# <kubernetes_sd_config>, <relabel_config>): a misspelt key is rejected by Prometheus at load.
SCRAPE_CONFIG_FIELDS = {
    "job_name", "scrape_interval", "scrape_timeout", "metrics_path", "scheme", "honor_labels",
    "honor_timestamps", "params", "kubernetes_sd_configs", "relabel_configs", "metric_relabel_configs",
    "sample_limit", "label_limit", "tls_config", "authorization",
}
KUBERNETES_SD_FIELDS = {"role", "namespaces", "selectors", "api_server", "attach_metadata", "kubeconfig_file"}
RELABEL_FIELDS = {"source_labels", "separator", "target_label", "regex", "modulus", "replacement", "action"}
RELABEL_ACTIONS = {"replace", "lowercase", "uppercase", "keep", "drop", "keepequal", "dropequal",
                   "hashmod", "labelmap", "labeldrop", "labelkeep"}


def scrape_job() -> dict:
    [job] = yaml.safe_load(SCRAPE.read_text())["scrape_configs"]
    return job


def relabel(rules: list[dict], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus relabelling for the actions this job uses; None when the target is dropped."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule.get("source_labels", []))
        m = re.fullmatch(rule.get("regex", "(.*)"), value)  # Prometheus anchors every regex
        if action == "keep" and not m or action == "drop" and m:
            return None
        if action == "replace" and m:
            result = re.sub(r"\$\{?(\w+)\}?", lambda g: m.group(int(g.group(1))) or "", rule.get("replacement", "$1"))
            if result:
                labels[rule["target_label"]] = result
            else:
                labels.pop(rule["target_label"], None)
        elif action not in ("keep", "drop", "replace"):
            raise AssertionError(f"relabel action {action} not simulated here")
    return labels


def discovered(pod_ip: str, gateway: bool = True, phase: str = "Running") -> list[dict[str, str]]:
    """What kubernetes_sd role pod yields for one ingress gateway pod: a target per container port."""
    ports = [("istio-proxy", "http-envoy-prom", "15090"), ("istio-proxy", "status-port", "15021"),
             ("istio-proxy", "http2", "8080"), ("istio-proxy", "https", "8443")]
    labels = {"istio": "ingressgateway", "app": "istio-ingressgateway"} if gateway else {"app": "other"}
    return [{
        "__address__": f"[{pod_ip}]:{port}" if ":" in pod_ip else f"{pod_ip}:{port}",
        "__meta_kubernetes_namespace": "istio-system",
        "__meta_kubernetes_pod_name": "istio-ingressgateway-7d9f-abcde",
        "__meta_kubernetes_pod_ip": pod_ip,
        "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_container_name": container,
        "__meta_kubernetes_pod_container_port_name": name,
        "__meta_kubernetes_pod_container_port_number": port,
        **{f"__meta_kubernetes_pod_label_{k}": v for k, v in labels.items()},
    } for container, name, port in ports]


def targets(pod_ip: str, **kw) -> list[dict[str, str]]:
    out = (relabel(scrape_job()["relabel_configs"], t) for t in discovered(pod_ip, **kw))
    return [{k: v for k, v in t.items() if not k.startswith("__meta_")} for t in out if t is not None]


def test_scrape_job_reads_the_gateways_merged_stats():
    job = scrape_job()
    assert set(job) <= SCRAPE_CONFIG_FIELDS, sorted(set(job) - SCRAPE_CONFIG_FIELDS)
    assert job["metrics_path"] == "/stats/prometheus"
    [sd] = job["kubernetes_sd_configs"]
    assert set(sd) <= KUBERNETES_SD_FIELDS
    assert sd["role"] == "pod" and sd["namespaces"] == {"names": ["istio-system"]}
    selector = yaml.safe_load(WASMPLUGIN.read_text())["spec"]["selector"]["matchLabels"]
    assert sd["selectors"] == [{"role": "pod", "label": ",".join(f"{k}={v}" for k, v in selector.items())}]
    for rule in job["relabel_configs"]:
        assert set(rule) <= RELABEL_FIELDS and rule.get("action", "replace") in RELABEL_ACTIONS, rule
        re.compile(rule.get("regex", "(.*)"))


@pytest.mark.parametrize("pod_ip,address", [("10.1.2.3", "10.1.2.3:15020"), ("fd00:10::7", "[fd00:10::7]:15020")])
def test_scrape_job_makes_one_target_per_gateway_pod(pod_ip, address):
    assert targets(pod_ip) == [{
        "__address__": address,
        "namespace": "istio-system",
        "pod": "istio-ingressgateway-7d9f-abcde",
        "app": "istio-ingressgateway",
        "istio": "ingressgateway",
    }]
    assert targets(pod_ip, gateway=False) == []
    assert targets(pod_ip, phase="Succeeded") == []


# --------------------------------------------------------------------------------------------------
# Istio's stats matcher
# --------------------------------------------------------------------------------------------------

# ProxyConfig.ProxyStatsMatcher (istio/api 1.30.3 mesh/v1alpha1/proxy.proto), JSON/YAML names.
PROXY_STATS_MATCHER_FIELDS = {"inclusionPrefixes", "inclusionSuffixes", "inclusionRegexps"}


def stats_matchers(node) -> list[dict]:
    """Every proxyStatsMatcher in a document, the YAML inside proxy.istio.io/config annotations too."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "proxyStatsMatcher":
                out.append(value)
            elif key == "proxy.istio.io/config":
                out += stats_matchers(yaml.safe_load(value))
            else:
                out += stats_matchers(value)
    elif isinstance(node, list):
        for item in node:
            out += stats_matchers(item)
    return out


def readme_yaml_blocks() -> list:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)]


def test_stats_matcher_snippets_use_istios_fields():
    istiod = yaml.safe_load(ISTIOD_VALUES.read_text())
    gateway = yaml.safe_load(GATEWAY_VALUES.read_text())
    assert set(istiod) == {"meshConfig"} and set(istiod["meshConfig"]) == {"defaultConfig"}
    assert set(gateway) == {"podAnnotations"} and set(gateway["podAnnotations"]) == {"proxy.istio.io/config"}
    blocks = readme_yaml_blocks()
    operator = next(b for b in blocks if b.get("kind") == "IstioOperator")
    assert operator["apiVersion"] == "install.istio.io/v1alpha1"
    assert operator["spec"]["meshConfig"] == istiod["meshConfig"]
    pod_template = next(b for b in blocks if "template" in b.get("spec", {}))
    assert pod_template["spec"]["template"]["metadata"]["annotations"] == gateway["podAnnotations"]
    matchers = stats_matchers([istiod, gateway, blocks])
    assert len(matchers) == 4
    for matcher in matchers:
        assert set(matcher) <= PROXY_STATS_MATCHER_FIELDS, sorted(set(matcher) - PROXY_STATS_MATCHER_FIELDS)
        assert matcher == {"inclusionPrefixes": ["wasmcustom"]}


# The stats configuration Istio 1.30 writes into every proxy's bootstrap (istio/istio 1.30.3:
# pkg/bootstrap/config.go requiredEnvoyStatsMatcher*; tools/packaging/common/envoy_bootstrap.json
# stats_config, without the optional extraStatTags and histogram buckets). proxyStatsMatcher
# inclusionPrefixes are added to ISTIO_PREFIXES.
ISTIO_PREFIXES = ["cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm"]
ISTIO_SUFFIXES = ["rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied"]
ISTIO_REGEXPS = [r"vhost\..*\.route\..*"]
ISTIO_STATS_TAGS = [
    {"tag_name": "cluster_name", "regex": r"^cluster(\.(.+);)"},
    {"tag_name": "http_conn_manager_prefix",
     "regex": r"^http\.(((?:[_.[:digit:]\w]*|[_\[\]aAbBcCdDeEfF[:digit:]\w\:]*));\.)"},
    {"tag_name": "thread_name", "regex": r"^server(\.(.+))\.watchdog"},
    {"tag_name": "tcp_prefix", "regex": r"^tcp\.((.*?)\.)\w+?$"},
    {"tag_name": "response_code", "regex": r"_rq(_(\d{3}))$"},
    {"tag_name": "response_code_class", "regex": r"_rq(_(\dxx))$"},
    {"tag_name": "http_conn_manager_listener_prefix",
     "regex": r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"},
    {"tag_name": "listener_address", "regex": r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"},
    {"tag_name": "mongo_prefix", "regex": r"^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$"},
    {"tag_name": "cache", "regex": r"(cache\.(.+?)\.)"},
    {"tag_name": "component", "regex": r"(component\.(.+?)\.)"},
    {"tag_name": "tag", "regex": r"(tag\.(.+?);\.)"},
    {"tag_name": "wasm_filter", "regex": r"(wasm_filter\.(.+?)\.)"},
    {"tag_name": "authz_enforce_result", "regex": r"rbac(\.(allowed|denied))"},
    {"tag_name": "authz_dry_run_action", "regex": r"(\.istio_dry_run_(allow|deny)_)"},
    {"tag_name": "authz_dry_run_result", "regex": r"(\.shadow_(allowed|denied))"},
]


def istio_stats_config(prefixes: list[str]) -> dict:
    patterns = ([{"prefix": "reporter="}] + [{"prefix": p} for p in prefixes]
                + [{"suffix": s} for s in ISTIO_SUFFIXES] + [{"safe_regex": {"regex": r}} for r in ISTIO_REGEXPS]
                + [{"prefix": "component"}, {"prefix": "istio"}])
    return {"use_all_default_tags": False, "stats_tags": ISTIO_STATS_TAGS,
            "stats_matcher": {"inclusion_list": {"patterns": patterns}}}


# --------------------------------------------------------------------------------------------------
# The running filter
# --------------------------------------------------------------------------------------------------


def admin(envoy: Envoy, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}{path}", timeout=5) as r:
        return r.read().decode()


def defined_metrics(envoy: Envoy) -> set[str]:
    """Names of the metrics the running filter defined (Envoy: wasmcustom.<name>, also histograms)."""
    names = (line.split(": ", 1)[0] for line in admin(envoy, "/stats").splitlines())
    return {n.removeprefix(WASM_PREFIX) for n in names if n.startswith(WASM_PREFIX)}


def prometheus(envoy: Envoy) -> tuple[dict[str, str], dict[str, list[tuple[set[str], float]]]]:
    """/stats/prometheus: family -> type, and family -> [(label names, value)] of its samples."""
    text = admin(envoy, "/stats/prometheus")
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    samples: dict[str, list] = {}
    for name, labels, value in re.findall(r"^([A-Za-z_:][\w:]*)\{(.*)\} (\S+)$", text, re.M):
        family = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES
                       if name.endswith(s) and types.get(name.removesuffix(s)) == "histogram"), name)
        keys = set(re.findall(r'(\w+)="', labels))
        samples.setdefault(family, []).append((keys, float(value)))
    return types, samples


def exported(envoy: Envoy, names: set[str], timeout: float = 8.0):
    """/stats/prometheus once it lists every name (histograms can wait for a stats flush)."""
    deadline = time.monotonic() + timeout
    while True:
        types, samples = prometheus(envoy)
        if names <= types.keys() or time.monotonic() > deadline:
            return types, samples
        time.sleep(0.25)


def drive(envoy: Envoy, cookie: str) -> None:
    envoy.get("/health")                                                              # local reply
    envoy.get("/github/octocat/hello-world/")                                         # login redirect
    envoy.get("/github/octocat/hello-world/", [("Cookie", cookie), ("X-Authentik-Uid", "0")])
    envoy.get("/github/octocat/../x/")                                                # bad path


def test_running_filter_metrics_are_exported_and_on_the_dashboard(gateway, alice):
    drive(gateway, alice)
    defined = defined_metrics(gateway)
    assert defined & set(METRICS), "the filter defines none of the metrics the dashboard shows"
    # A name the filter defines but METRICS lacks is a metric nobody watches: add it (and a panel).
    assert not defined - set(METRICS), f"missing from METRICS and the dashboard: {sorted(defined - set(METRICS))}"
    assert defined <= dashboard_metrics()
    types, samples = exported(gateway, defined)
    missing = sorted(defined - types.keys())
    assert not missing, f"defined but not on /stats/prometheus: {missing}"
    for name in sorted(defined):
        assert types[name] == METRICS[name], f"{name}: {types[name]} on /stats/prometheus, METRICS says {METRICS[name]}"
        assert samples[name], name
    assert sum(v for _, v in samples["devcontainer_gateway_local_replies_total"]) >= 1


@pytest.fixture(scope="module")
def defined(gateway) -> set[str]:
    return defined_metrics(gateway)


PROXY_STATS_PREFIXES = yaml.safe_load(ISTIOD_VALUES.read_text())["meshConfig"]["defaultConfig"][
    "proxyStatsMatcher"]["inclusionPrefixes"]
WITHOUT_WASM = [p for p in ISTIO_PREFIXES if p != "wasm"]


@pytest.mark.parametrize("prefixes,kept", [
    (ISTIO_PREFIXES, True),                           # Istio 1.30 as installed
    (WITHOUT_WASM, False),                            # the matcher is what decides ...
    (PROXY_STATS_PREFIXES + WITHOUT_WASM, True),      # ... and istiod-values.yaml alone keeps them
], ids=["istio-defaults", "without-wasm-prefix", "proxyStatsMatcher-only"])
def test_istio_stats_matcher_keeps_the_metrics(outpost, upstream, alice, defined, prefixes, kept):
    bootstrap = gateway_config(outpost.port, upstream.port)
    bootstrap["stats_config"] = istio_stats_config(prefixes)
    with Envoy(bootstrap, name="istio-stats") as envoy:
        drive(envoy, alice)
        types, samples = exported(envoy, defined, timeout=8.0 if kept else 0.0)
        if not kept:
            assert not defined & types.keys(), "the stats matcher did not apply"
            assert "envoy_server_live" in types
            return
        missing = sorted(defined - types.keys())
        assert not missing, f"Istio's stats matcher drops {missing}"
        for name in defined:
            # Istio's tag regexes would turn parts of a name into labels: none may match.
            labels = set().union(*(keys for keys, _ in samples[name]))
            assert labels <= {"le"}, f"{name}: Istio's stats_tags extracted {labels - {'le'}}"

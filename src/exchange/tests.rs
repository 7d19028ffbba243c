//! The whole exchange, natively: the cache and its races, the starting page, the provisioner's
//! gate and claims, and every counter and access line, over the in-memory host.

use std::collections::BTreeMap;

use crate::host::{Flow, Level};
use crate::starting::{self, Warmth};
use crate::testhost::{answer, Proxy, Stream};
use crate::worker::Worker;
use crate::{cache, provision};

const BASE: &str = r#""outpost":{"cluster":"authentik_outpost","timeout":"2s"},
    "routing":{"mode":"per-repo","namespace":"devcontainers","cluster_template":"workspaces"}"#;
const ALICE: &str = "authentik_proxy_f0b68a08=alice-session";
const NAVIGATION: [(&str, &str); 2] = [
    ("accept", "text/html,application/xhtml+xml"),
    ("sec-fetch-mode", "navigate"),
];

/// A worker configured with the shipped configuration and `extra` top-level fields.
fn worker(proxy: &Proxy, extra: &str) -> Worker {
    let mut worker = Worker::default();
    let json = if extra.is_empty() {
        format!("{{{BASE}}}")
    } else {
        format!("{{{BASE},{extra}}}")
    };
    let env = |name: &str| (name == "PROVISIONER_TOKEN").then(|| "t0ken".to_string());
    assert!(worker.configure(&mut proxy.host(&[]), json.as_bytes(), env));
    proxy.log.borrow_mut().clear();
    worker
}

fn request<'a>(path: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        (":method", "GET"),
        (":scheme", "https"),
        (":path", path),
        (":authority", "gw.example"),
        ("x-request-id", "rid-1"),
    ];
    headers.extend_from_slice(extra);
    headers
}

fn logged_in(user: &str, groups: &str) -> Option<(crate::host::Headers, Vec<u8>)> {
    Some(answer(
        200,
        &[
            ("X-Authentik-Username", user),
            ("X-Authentik-Groups", groups),
            ("X-Authentik-Email", "alice@example.com"),
            ("X-Authentik-Jwt", "eyJ.secret.token"),
        ],
        b"",
    ))
}

/// A request that reaches the outpost, and the token of that check.
fn checked(proxy: &Proxy, worker: &mut Worker, request: &[(&str, &str)]) -> (Stream, u32) {
    let stream = Stream::send(proxy, worker, request);
    assert_eq!(stream.flow, Flow::Pause);
    let calls = proxy.take_calls();
    let [call] = calls.as_slice() else {
        panic!("one check expected: {calls:?}")
    };
    assert_eq!(call.cluster, "authentik_outpost");
    (stream, call.token)
}

fn counted(pairs: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
    pairs.iter().copied().collect()
}

#[test]
fn a_miss_asks_the_outpost_and_the_next_request_is_a_hit() {
    let proxy = Proxy::new();
    let mut worker = worker(&proxy, "");
    let path = "/github/octocat/hello-world/index.html";
    let (mut first, token) = checked(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    proxy.advance(7);
    first.call_answer(&mut worker, token, logged_in("alice", "developers"));
    assert!(first.host.resumed);
    assert_eq!(first.host.request_header(":path"), Some("/index.html"));
    assert_eq!(
        first.host.request_header("x-authentik-username"),
        Some("alice")
    );
    assert_eq!(first.host.request_header("x-authentik-jwt"), None);
    assert_eq!(first.host.request_header("cookie"), None);
    assert_eq!(
        first.host.request_header("x-devcontainer-cluster"),
        Some("workspaces")
    );

    let second = Stream::send(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    assert_eq!(second.flow, Flow::Continue);
    assert!(proxy.take_calls().is_empty(), "a hit asks nobody");
    assert_eq!(
        second.host.request_header("x-authentik-username"),
        Some("alice")
    );
    assert_eq!(
        second.host.request_header("x-github-repo"),
        Some("https://github.com/octocat/hello-world")
    );
    assert_eq!(
        proxy.counted(),
        counted(&[
            ("outpost_checks", 1),
            ("cache_misses", 1),
            ("cache_hits", 1),
            ("allowed", 2)
        ])
    );
    assert_eq!(
        proxy.access_lines(),
        [
            "access user=\"alice\" repo=\"github/octocat/hello-world\" outcome=allowed status=0 \
             decided_by=outpost latency_ms=7 request_id=\"rid-1\"",
            "access user=\"alice\" repo=\"github/octocat/hello-world\" outcome=allowed status=0 \
             decided_by=cache latency_ms=0 request_id=\"rid-1\""
        ]
    );
    assert_eq!(proxy.histograms.borrow().len(), 1, "one outpost latency");
    // The entry expires after the TTL (30 s): then the outpost is asked again.
    proxy.advance(30_000);
    checked(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
}

#[test]
fn a_logout_during_a_check_wins_over_its_answer() {
    let proxy = Proxy::new();
    let mut worker = worker(&proxy, "");
    let path = "/github/octocat/hello-world/";
    let (mut slow, token) = checked(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    // The logout arrives while the check is under way, on another worker of the same Envoy.
    let other = proxy.sibling();
    let mut other_worker = crate::exchange::tests::worker(&other, "");
    let logout = Stream::send(
        &other,
        &mut other_worker,
        &request("/outpost.goauthentik.io/sign_out", &[("cookie", ALICE)]),
    );
    assert_eq!(logout.flow, Flow::Continue);
    slow.call_answer(&mut worker, token, logged_in("alice", ""));
    assert!(
        slow.host.resumed,
        "the answer itself still holds for its request"
    );
    // Nothing was remembered: the next request asks again.
    checked(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
}

#[test]
fn of_two_racing_checks_the_first_answer_is_kept() {
    let proxy = Proxy::new();
    let mut worker = worker(&proxy, "");
    let path = "/github/octocat/hello-world/";
    let (mut a, token_a) = checked(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    let (mut b, token_b) = checked(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    a.call_answer(&mut worker, token_a, logged_in("alice", "first"));
    b.call_answer(&mut worker, token_b, logged_in("alice", "second"));
    assert_eq!(b.host.request_header("x-authentik-groups"), Some("second"));
    let hit = Stream::send(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    assert_eq!(
        hit.host.request_header("x-authentik-groups"),
        Some("first"),
        "the slower answer lost the compare-and-swap"
    );
}

#[test]
fn a_slot_never_written_is_created_before_it_is_read() {
    let proxy = Proxy::new();
    let mut worker = worker(&proxy, "");
    assert!(proxy
        .shared
        .borrow()
        .keys("devcontainer-gateway/decision/")
        .is_empty());
    let (mut stream, token) = checked(
        &proxy,
        &mut worker,
        &request("/github/a/b/", &[("cookie", ALICE)]),
    );
    let slots = proxy.shared.borrow().keys("devcontainer-gateway/decision/");
    assert_eq!(slots.len(), 1);
    assert_eq!(
        proxy.shared.borrow().get(&slots[0]),
        Some(cache::tombstone().as_slice())
    );
    stream.call_answer(&mut worker, token, logged_in("alice", ""));
    assert_ne!(
        proxy.shared.borrow().get(&slots[0]),
        Some(cache::tombstone().as_slice()),
        "the answer was stored against the version read"
    );
}

#[test]
fn other_sessions_hosts_and_requests_without_credentials_never_share_an_entry() {
    let proxy = Proxy::new();
    let mut worker = worker(&proxy, r#""cache":{"ttl":"30s","max_entries":1}"#);
    let path = "/github/a/b/";
    let (mut s, token) = checked(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    s.call_answer(&mut worker, token, logged_in("alice", ""));
    let bob = "authentik_proxy_f0b68a08=bob-session";
    checked(&proxy, &mut worker, &request(path, &[("cookie", bob)]));
    let mut other_host = request(path, &[("cookie", ALICE)]);
    other_host[3] = (":authority", "other.example");
    checked(&proxy, &mut worker, &other_host);
    checked(&proxy, &mut worker, &request(path, &[]));
}

#[test]
fn a_navigation_to_a_cold_workspace_gets_the_page_and_one_wake_up() {
    let proxy = Proxy::new();
    let mut worker = worker(&proxy, r#""cache":{"ttl":"30s"}"#);
    let path = "/github/acme/cold/";
    let mut nav = NAVIGATION.to_vec();
    nav.push(("cookie", ALICE));
    let (mut first, token) = checked(&proxy, &mut worker, &request(path, &nav));
    first.call_answer(&mut worker, token, logged_in("alice", ""));
    assert_eq!(first.host.reply().status, 202);
    assert!(String::from_utf8_lossy(&first.host.reply().body).contains("Starting your workspace"));
    assert!(!first.host.resumed);
    // Another tab: the page, no second wake-up.
    let second = Stream::send(&proxy, &mut worker, &request(path, &nav));
    assert_eq!(second.host.reply().status, 202);
    // A script is not given the page.
    let script = Stream::send(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    assert_eq!(script.flow, Flow::Continue);
    assert_eq!(
        proxy.counted(),
        counted(&[
            ("outpost_checks", 1),
            ("cache_misses", 1),
            ("cache_hits", 2),
            ("starting_pages", 2),
            ("cold_starts", 1),
            ("allowed", 1)
        ])
    );
    let lines = proxy.access_lines();
    assert!(lines[0].contains("outcome=starting status=202 decided_by=outpost"));
    assert!(lines[1].contains("outcome=starting status=202 decided_by=cache"));
    assert!(lines[2].contains("outcome=allowed status=0"));
    // The worker wakes the workspace on its tick, with the identity and without credentials.
    worker.on_tick(&mut proxy.host(&[]));
    let [wake] = proxy.take_calls().try_into().unwrap();
    assert_eq!(wake.cluster, "workspaces");
    assert_eq!(wake.header(":path"), Some("/"));
    assert_eq!(
        wake.header(":authority"),
        Some("acme--cold.devcontainers.svc.cluster.local")
    );
    assert_eq!(wake.header("x-authentik-username"), Some("alice"));
    assert_eq!(wake.header("cookie"), None);
    proxy.advance(3_000);
    let mut root = proxy.host(&[]);
    root.answer = answer(200, &[], b"<html>");
    assert!(worker.owns(wake.token));
    worker.on_call_answer(&mut root, wake.token, 1, 6);
    assert_eq!(
        proxy.histograms.borrow().last(),
        Some(&(crate::host::Histogram::ColdStartWait, 3_000))
    );
    // Warm now: the navigation goes through.
    let landed = Stream::send(&proxy, &mut worker, &request(path, &nav));
    assert_eq!(landed.flow, Flow::Continue);
}

#[test]
fn knative_not_ready_becomes_the_page_or_a_503() {
    let proxy = Proxy::new();
    let mut worker = worker(&proxy, r#""cache":{"ttl":"30s"}"#);
    let path = "/github/acme/flaky/api";
    // Warm the cache and the workspace.
    let (mut warm, token) = checked(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    warm.call_answer(&mut worker, token, logged_in("alice", ""));
    assert_eq!(warm.respond(&mut worker, 200, &[], None), Flow::Continue);
    proxy.reset_counters();
    proxy.access_lines();

    let mut script = Stream::send(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    assert_eq!(script.respond(&mut worker, 503, &[], None), Flow::Pause);
    let reply = script.host.reply();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("2"));
    let mut nav = NAVIGATION.to_vec();
    nav.push(("cookie", ALICE));
    let mut page = Stream::send(&proxy, &mut worker, &request(path, &nav));
    assert_eq!(page.respond(&mut worker, 504, &[], None), Flow::Pause);
    assert_eq!(page.host.reply().status, 503);
    assert!(String::from_utf8_lossy(&page.host.reply().body).contains("Starting your workspace"));
    // The still-starting 503 counts as a failure (README: auth_failures_total), the page as a
    // starting page, and the page wakes the workspace.
    assert_eq!(
        proxy.counted(),
        counted(&[
            ("cache_hits", 2),
            ("allowed", 2),
            ("auth_failures", 1),
            ("starting_pages", 1),
            ("cold_starts", 1)
        ])
    );
    let lines = proxy.access_lines();
    assert!(
        lines[1].contains("outcome=failed status=503 decided_by=local"),
        "{lines:?}"
    );
    assert!(
        lines[3].contains("outcome=starting status=503 decided_by=local"),
        "{lines:?}"
    );
}

#[test]
fn the_provisioner_is_asked_once_and_its_answers_gate_the_workspace() {
    let proxy = Proxy::new();
    let section = r#""provisioner":{"cluster":"provisioner","authority":"p.svc","token_env":"PROVISIONER_TOKEN"}"#;
    let mut worker = worker(&proxy, &format!("{section},\"cache\":{{\"ttl\":\"30s\"}}"));
    let path = "/github/acme/new/";
    let mut nav = NAVIGATION.to_vec();
    nav.push(("cookie", ALICE));
    let (mut first, token) = checked(&proxy, &mut worker, &request(path, &nav));
    first.call_answer(&mut worker, token, logged_in("alice", "developers"));
    assert_eq!(first.host.reply().status, 202);
    assert!(String::from_utf8_lossy(&first.host.reply().body).contains("Creating your workspace"));
    // A script meanwhile: 503, and no second claim.
    let script = Stream::send(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    assert_eq!(script.host.reply().status, 503);
    assert_eq!(script.host.reply().header("retry-after"), Some("2"));
    let claims = proxy
        .shared
        .borrow()
        .get(provision::CLAIMS_KEY)
        .map(<[u8]>::to_vec);
    assert_eq!(
        provision::decode_claims(&claims.unwrap()).len(),
        1,
        "one claim across requests"
    );
    worker.on_tick(&mut proxy.host(&[]));
    let [ensure] = proxy.take_calls().try_into().unwrap();
    assert_eq!(ensure.cluster, "provisioner");
    assert_eq!(ensure.header(":method"), Some("PUT"));
    assert_eq!(ensure.header("authorization"), Some("Bearer t0ken"));
    let body = crate::json::parse_bytes(ensure.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body.get("repository").and_then(|v| v.as_str()),
        Some("acme/new")
    );
    // Refused: the reason, with the provisioner's status.
    let mut root = proxy.host(&[]);
    root.answer = answer(
        403,
        &[("content-type", "application/json")],
        br#"{"message":"quota reached"}"#,
    );
    let size = root.answer.1.len();
    worker.on_call_answer(&mut root, ensure.token, 2, size);
    let refused = Stream::send(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    assert_eq!(refused.host.reply().status, 403);
    assert!(String::from_utf8_lossy(&refused.host.reply().body).contains("quota reached"));
    assert!(
        proxy.shared.borrow().get(provision::CLAIMS_KEY) == Some(b"".as_slice()),
        "the answer released the claim"
    );
    // After a moment it is asked again, and a ready workspace goes through.
    proxy.advance(1_000);
    Stream::send(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    worker.on_tick(&mut proxy.host(&[]));
    let [again] = proxy.take_calls().try_into().unwrap();
    let mut root = proxy.host(&[]);
    root.answer = answer(200, &[], br#"{"service":"acme--new","phase":"Ready"}"#);
    let size = root.answer.1.len();
    worker.on_call_answer(&mut root, again.token, 1, size);
    let ready = Stream::send(&proxy, &mut worker, &request(path, &[("cookie", ALICE)]));
    assert_eq!(ready.flow, Flow::Continue);
    let counted = proxy.counted();
    assert_eq!(counted["provisioner_calls"], 2);
    assert_eq!(
        counted["starting_pages"], 2,
        "the page and the script's 503"
    );
    assert_eq!(
        counted["auth_refused"], 2,
        "the refusal stands until it is asked again"
    );
    assert!(!counted.contains_key("provisioner_failures"));
}

#[test]
fn a_broken_provisioner_refuses_new_workspaces_and_warm_ones_never_ask() {
    let proxy = Proxy::new();
    let section = r#""provisioner":{"cluster":"provisioner","authority":"p.svc","token_env":"PROVISIONER_TOKEN"}"#;
    let mut worker = worker(&proxy, section);
    let cookie = [("cookie", ALICE)];
    let (mut first, token) = checked(&proxy, &mut worker, &request("/github/acme/x/", &cookie));
    first.call_answer(&mut worker, token, logged_in("alice", ""));
    worker.on_tick(&mut proxy.host(&[]));
    let [ensure] = proxy.take_calls().try_into().unwrap();
    worker.on_call_answer(&mut proxy.host(&[]), ensure.token, 0, 0);
    let later = Stream::send(&proxy, &mut worker, &request("/github/acme/x/", &cookie));
    assert_eq!(later.host.reply().status, 503);
    assert!(String::from_utf8_lossy(&later.host.reply().body).contains("unavailable"));
    assert_eq!(proxy.counted()["provisioner_failures"], 1);
    // A workspace that answered recently is warm: its requests never ask.
    proxy.shared.borrow_mut().set(
        &starting::key("acme--warm"),
        &starting::encode(Warmth::Warm {
            at: proxy.clock.get(),
        }),
    );
    let warm = Stream::send(&proxy, &mut worker, &request("/github/acme/warm/", &cookie));
    assert_eq!(warm.flow, Flow::Continue);
    worker.on_tick(&mut proxy.host(&[]));
    assert!(proxy.take_calls().is_empty());
}

#[test]
fn every_refusal_has_its_counter_and_access_line() {
    let proxy = Proxy::new();
    let mut worker = worker(
        &proxy,
        r#""access":{"default":"deny","rules":[{"repos":["github/acme/*"],"groups":["developers"]}]}"#,
    );
    let cookie = ("cookie", ALICE);
    let local = |path: &str, worker: &mut Worker| {
        let s = Stream::send(&proxy, worker, &request(path, &[]));
        assert_eq!(s.flow, Flow::Pause, "{path}");
        s.host.reply().status
    };
    assert_eq!(local("/health", &mut worker), 200);
    assert_eq!(local("/github/acme/x", &mut worker), 308);
    assert_eq!(local("/github/acme/../x/", &mut worker), 400);
    assert_eq!(
        local("/outpost.goauthentik.io/auth/envoy", &mut worker),
        403
    );
    let mut answers = Vec::new();
    for (status, extra) in [
        (302, vec![("location", "https://auth.example/login")]),
        (401, vec![]),
        (500, vec![]),
    ] {
        let (mut s, token) = checked(&proxy, &mut worker, &request("/github/acme/x/", &[cookie]));
        s.call_answer(&mut worker, token, Some(answer(status, &extra, b"")));
        answers.push(s.host.reply().status);
    }
    let (mut timed_out, token) =
        checked(&proxy, &mut worker, &request("/github/acme/x/", &[cookie]));
    timed_out.call_answer(&mut worker, token, None);
    answers.push(timed_out.host.reply().status);
    let (mut denied, token) = checked(&proxy, &mut worker, &request("/github/other/x/", &[cookie]));
    denied.call_answer(&mut worker, token, logged_in("alice", "developers"));
    answers.push(denied.host.reply().status);
    *proxy.unreachable.borrow_mut() = Some("unknown cluster".into());
    let fresh = ("cookie", "authentik_proxy_f0b68a08=another-session");
    let down = Stream::send(&proxy, &mut worker, &request("/github/acme/x/", &[fresh]));
    answers.push(down.host.reply().status);
    assert_eq!(answers, [302, 401, 503, 503, 403, 503]);
    // A spoofed identity header is counted and stripped on a path left to the routes; the
    // route table's 404 becomes the gateway's page.
    let mut routes = Stream::send(
        &proxy,
        &mut worker,
        &request("/elsewhere", &[("X_Authentik_Username", "root")]),
    );
    assert_eq!(routes.flow, Flow::Continue);
    assert!(routes.host.request_header("X_Authentik_Username").is_none());
    assert_eq!(
        routes.respond(&mut worker, 404, &[], Some("route_not_found")),
        Flow::Pause
    );
    assert_eq!(routes.host.reply().status, 404);
    assert_eq!(
        proxy.counted(),
        counted(&[
            ("local_replies", 3),
            ("bad_requests", 2),
            ("outpost_checks", 5),
            ("cache_misses", 6),
            ("auth_redirects", 1),
            ("auth_refused", 1),
            ("auth_failures", 3),
            ("access_denied", 1),
            ("spoofed_headers", 1)
        ])
    );
    let words: Vec<String> = proxy
        .access_lines()
        .iter()
        .map(|l| {
            let outcome = l.split(" outcome=").nth(1).unwrap();
            outcome.split(" decided_by").next().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        words,
        [
            "bad-request status=400",
            "bad-request status=403",
            "redirected status=302",
            "refused status=401",
            "failed status=503",
            "failed status=503",
            "denied status=403",
            "failed status=503"
        ]
    );
}

#[test]
fn a_cross_origin_request_to_a_workspace_host_is_denied() {
    let proxy = Proxy::new();
    let mut worker = Worker::default();
    let json = r#"{"outpost":{"cluster":"ak"},"routing":{"mode":"per-repo","workspace_domain":"ws.example"}}"#;
    assert!(worker.configure(&mut proxy.host(&[]), json.as_bytes(), |_| None));
    proxy.log.borrow_mut().clear();
    let mut headers = request("/api", &[("origin", "https://other--repo.ws.example")]);
    headers[3] = (":authority", "octocat--hello-world.ws.example");
    let stream = Stream::send(&proxy, &mut worker, &headers);
    assert_eq!(stream.host.reply().status, 403);
    assert_eq!(proxy.counted(), counted(&[("access_denied", 1)]));
    assert!(proxy.access_lines()[0].contains("outcome=denied status=403 decided_by=local"));
}

#[test]
fn hostile_response_headers_are_dropped_and_the_outposts_cookies_added() {
    let proxy = Proxy::new();
    let mut worker = worker(&proxy, r#""cache":{"ttl":"0s"}"#);
    let (mut s, token) = checked(
        &proxy,
        &mut worker,
        &request(
            "/github/acme/x/",
            &[("authorization", "Basic YWxpY2U6YWxpY2U=")],
        ),
    );
    let mut ok = logged_in("alice", "").unwrap();
    ok.0.push("set-cookie", b"authentik_proxy_f0b68a08=new; Path=/");
    s.call_answer(&mut worker, token, Some(ok));
    assert_eq!(s.host.request_header("authorization"), None);
    let flow = s.respond(
        &mut worker,
        200,
        &[
            ("x-authentik-username", "root"),
            ("set-cookie", "authentik_session=planted"),
            ("set-cookie", "ws=1"),
        ],
        None,
    );
    assert_eq!(flow, Flow::Continue);
    assert!(s.host.response_header("x-authentik-username").is_empty());
    assert_eq!(
        s.host.response_header("set-cookie"),
        ["ws=1", "authentik_proxy_f0b68a08=new; Path=/"]
    );
    assert_eq!(proxy.counted()["workspace_headers_dropped"], 2);
    assert!(proxy
        .log
        .borrow()
        .iter()
        .any(|(level, l)| *level == Level::Warn && l.contains("dropped 2 response header(s)")));
}

#[test]
fn without_a_configuration_every_request_fails_closed() {
    let proxy = Proxy::new();
    let mut worker = Worker::default();
    assert!(!worker.configure(&mut proxy.host(&[]), b"{}", |_| None));
    assert!(proxy.log.borrow()[0]
        .1
        .contains("configuration refused: outpost: is required"));
    let stream = Stream::send(&proxy, &mut worker, &request("/github/a/b/", &[]));
    assert_eq!(
        (stream.flow, stream.host.reply().status),
        (Flow::Pause, 503)
    );
    assert_eq!(proxy.counted(), counted(&[("auth_failures", 1)]));
}

#[test]
fn a_body_waits_while_the_outpost_is_asked() {
    let proxy = Proxy::new();
    let mut worker = worker(&proxy, "");
    let (mut s, token) = checked(
        &proxy,
        &mut worker,
        &request("/github/acme/x/", &[("cookie", ALICE)]),
    );
    assert_eq!(s.exchange.on_request_body(), Flow::Pause);
    s.call_answer(&mut worker, token, logged_in("alice", ""));
    assert_eq!(s.exchange.on_request_body(), Flow::Continue);
    // An answer to another call is not this request's.
    assert!(!s.exchange.waits_for(token));
}

#[test]
fn a_response_after_the_plugin_was_replaced_still_loses_identity_headers() {
    let proxy = Proxy::new();
    let mut worker = worker(&proxy, "");
    let mut routes = Stream::send(
        &proxy,
        &mut worker,
        &request("/outpost.goauthentik.io/start", &[]),
    );
    assert_eq!(routes.flow, Flow::Continue);
    let flow = routes.respond(
        &mut Worker::default(),
        200,
        &[
            ("X_Authentik_Jwt", "eyJ.secret"),
            ("content-type", "text/html"),
        ],
        None,
    );
    assert_eq!(flow, Flow::Continue);
    assert!(routes.host.response_header("X_Authentik_Jwt").is_empty());
    assert_eq!(routes.host.response_header("content-type"), ["text/html"]);
}

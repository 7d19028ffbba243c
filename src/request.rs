//! One request's decisions, as data: read its headers once, then what to strip, whether to
//! answer, check or pass, and what to change once the outpost (or the cache) has spoken.
//! [`crate::exchange`] carries them out.

use std::borrow::Cow;

use crate::auth::{self, Identity, OutpostResponse, Verdict};
use crate::cache;
use crate::config::{Config, Mode, Outpost};
use crate::headers::{self, CREDENTIALS};
use crate::host::Headers;
use crate::login_retry::{self, Callback};
use crate::names::{
    is_host_authority, is_service_name, knative_service_name, per_user_service_name, Forge, RepoId,
};
use crate::outcome::Outcome;
use crate::outpost_pages::{self, Access};
use crate::policy::Effect;
use crate::provision::Ensure;
use crate::reply::{self, Client, LocalReply};
use crate::route::{self, RepoPath, Target};
use crate::starting;

/// Query parameters that make authentik's outpost finish a login or log out, on any path.
const OUTPOST_SIGNATURES: [&str; 2] = ["x-authentik-auth-callback", "x-authentik-logout"];
/// authentik's sign-out page (contract authentik §2.4), routed to the outpost.
const SIGN_OUT_PATH: &str = "/outpost.goauthentik.io/sign_out";
/// The outpost's own pages; on a workspace host they still belong to the outpost.
const OUTPOST_PATHS: &str = "/outpost.goauthentik.io/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// How the client wants to be answered, and its request id.
    pub client: Client,
    /// Client headers to remove before anything else.
    pub strip: Vec<String>,
    pub next: Next,
    /// A logout: the cached decisions of every session it carries must go.
    pub forget: Vec<cache::Key>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Leave the request to the route table.
    Continue,
    Answer {
        outcome: Outcome,
        reply: LocalReply,
    },
    /// Ask the outpost (or the cache), then carry on as the pending check says.
    Check(Box<Pending>),
}

/// A request waiting for the outpost's (or the cache's) word: what the check carries, and what
/// happens once it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    client: Client,
    after: After,
    /// Set when an allowed outcome of this check may be cached (and looked up).
    cache_key: Option<cache::Key>,
    /// A login callback: where its login starts over if authentik refuses it.
    callback: Option<Callback>,
    /// What the check itself carries.
    host: String,
    path: String,
    https: bool,
    cookie: Option<String>,
    authorization: Option<String>,
}

impl Pending {
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn cache_key(&self) -> Option<&cache::Key> {
        self.cache_key.as_ref()
    }

    /// The repository asked for (`github/owner/repo`), for logs.
    pub fn repo(&self) -> Option<String> {
        match &self.after {
            After::Continue => None,
            After::Route(route) => Some(route.workspace.display()),
        }
    }

    /// The headers of the check: built when the outpost is asked, not for a cached answer.
    pub fn check_headers(&self, outpost: &Outpost) -> Vec<(String, String)> {
        auth::check_headers(
            outpost,
            &self.host,
            &self.path,
            self.https,
            self.cookie.as_deref(),
            self.authorization.as_deref(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum After {
    /// A login callback or logout outside a workspace: on a (rare) 200 the route table decides.
    Continue,
    Route(Box<Route>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    workspace: Place,
    /// Credential headers the client sent, removed before the workspace.
    credentials: Vec<&'static str>,
    navigation: bool,
}

/// Where the request asked to go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// `/{forge}/{…}/` on the gateway's host.
    Path(RepoPath),
    /// `{service}.{workspace_domain}`: the whole host is one workspace. `repo` is known when the
    /// Service name is the plain `{owner}--{repo}` of a GitHub repository.
    Host {
        service: String,
        repo: Option<RepoId>,
        path: String,
    },
}

impl Place {
    fn display(&self) -> String {
        match self {
            Place::Path(path) => path.id.key(),
            Place::Host {
                repo: Some(repo), ..
            } => repo.key(),
            Place::Host { service, .. } => service.clone(),
        }
    }
}

/// A change to the request's headers (names in lower case; most are the gateway's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Set(Cow<'static, str>, Vec<u8>),
    Remove(Cow<'static, str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Apply the edits, let the request go on, add the cookies to its response.
    Forward {
        edits: Vec<Edit>,
        set_cookies: Vec<Vec<u8>>,
        workspace: Option<Box<Workspace>>,
    },
    Answer {
        outcome: Outcome,
        reply: LocalReply,
    },
    /// The access policy refuses this user this repository.
    Deny {
        reply: LocalReply,
        user: String,
        /// The outpost's cookies still go to the client.
        set_cookies: Vec<Vec<u8>>,
    },
}

/// The workspace an allowed request goes to: what the filter needs to log it, to decide about
/// the starting page, and to wake it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub service: String,
    pub user: String,
    /// `github/owner/repo`, or the Service name when the host does not say.
    pub repo: String,
    /// A browser's top-level navigation (the only kind that may get the starting page).
    pub navigation: bool,
    /// The call that wakes the workspace: the cluster and (for navigations, the only requests
    /// that wake one) the request headers.
    pub cluster: String,
    pub wake: Vec<(String, String)>,
    /// What the provisioner is asked to ensure, when one is configured and the repository is
    /// known (per-repo and per-user workspaces).
    pub ensure: Option<Ensure>,
}

/// The request as read from its headers, once: every later step reads this.
struct Request<'h> {
    path: &'h [u8],
    authority: &'h [u8],
    method: Option<&'h [u8]>,
    scheme: Option<&'h [u8]>,
    accept: Option<&'h [u8]>,
    request_id: Option<&'h [u8]>,
    sec_fetch_mode: Option<&'h [u8]>,
    upgrade: Option<&'h [u8]>,
    origin: Option<&'h [u8]>,
    authorization: Option<&'h [u8]>,
    /// Credential headers present (removed before a workspace).
    credentials: Vec<&'static str>,
    /// Every `Cookie` header joined into one (HTTP/2 clients split cookies across headers).
    cookie: Option<Vec<u8>>,
}

impl<'h> Request<'h> {
    fn read(headers: &'h Headers) -> Request<'h> {
        let mut request = Request {
            path: b"",
            authority: b"",
            method: None,
            scheme: None,
            accept: None,
            request_id: None,
            sec_fetch_mode: None,
            upgrade: None,
            origin: None,
            authorization: None,
            credentials: Vec::new(),
            cookie: None,
        };
        let mut path = None;
        let mut authority = None;
        let mut proxy_authorization = false;
        for (name, value) in headers {
            let slot = match name {
                ":path" => &mut path,
                ":authority" => &mut authority,
                ":method" => &mut request.method,
                ":scheme" => &mut request.scheme,
                "accept" => &mut request.accept,
                "x-request-id" => &mut request.request_id,
                "sec-fetch-mode" => &mut request.sec_fetch_mode,
                "upgrade" => &mut request.upgrade,
                "origin" => &mut request.origin,
                "authorization" => &mut request.authorization,
                "proxy-authorization" => {
                    proxy_authorization = true;
                    continue;
                }
                "cookie" => {
                    match &mut request.cookie {
                        Some(joined) => {
                            joined.extend_from_slice(b"; ");
                            joined.extend_from_slice(value);
                        }
                        None => request.cookie = Some(value.to_vec()),
                    }
                    continue;
                }
                _ => continue,
            };
            // The first of repeated fields counts.
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        request.path = path.unwrap_or_default();
        request.authority = authority.unwrap_or_default();
        let present = [request.authorization.is_some(), proxy_authorization];
        request.credentials = CREDENTIALS
            .into_iter()
            .zip(present)
            .filter_map(|(name, present)| present.then_some(name))
            .collect();
        request
    }

    fn client(&self) -> Client {
        Client::new(self.accept, self.request_id)
    }

    fn https(&self) -> bool {
        self.scheme != Some(b"http")
    }
}

/// Whether the query carries a callback or logout signature of the outpost.
fn is_signed(path: &[u8]) -> bool {
    let query = match path.iter().position(|b| *b == b'?') {
        Some(i) => path.get(i.saturating_add(1)..).unwrap_or_default(),
        None => return false,
    };
    form_urlencoded::parse(query).any(|(key, value)| {
        OUTPOST_SIGNATURES
            .iter()
            .any(|s| key.eq_ignore_ascii_case(s))
            && value.eq_ignore_ascii_case("true")
    })
}

/// How this client wants refusals written, and its request id.
pub fn client(headers: &Headers) -> Client {
    Request::read(headers).client()
}

/// The gateway's 404: what a client sees for a path no route serves.
pub fn not_found(client: &Client) -> LocalReply {
    reply::refuse(
        404,
        "nothing is served here; repositories open under /github/{owner}/{repo}/, \
         /gitlab/{group}/{project}/-/ and /bitbucket/{workspace}/{repo}/",
        client,
    )
}

pub fn on_request_headers(config: &Config, headers: &Headers) -> Decision {
    let strip = headers::spoofed(config.routing_headers(), headers.iter().map(|(n, _)| n));
    let request = Request::read(headers);
    // The query is parsed once: both the routing and the cache need to know.
    let signed = is_signed(request.path);
    let forget = logout_keys(config, &request, signed);
    let client = request.client();
    let next = next(config, request, &client, signed, !forget.is_empty());
    Decision {
        client,
        strip,
        next,
        forget,
    }
}

/// Whether the request ends a session: the outpost's sign-out page, or the logout (or login
/// callback) signature on any path. A login callback can change who the session is (authentik
/// keeps the session id), so it ends the cached answer as a logout does.
fn ends_session(request: &Request, signed: bool) -> bool {
    signed || request.path.starts_with(SIGN_OUT_PATH.as_bytes())
}

/// For a request that ends a session, the cache keys of every session it carries.
fn logout_keys(config: &Config, request: &Request, signed: bool) -> Vec<cache::Key> {
    if config.cache.ttl.is_zero() || !ends_session(request, signed) {
        return Vec::new();
    }
    let Ok(host) = std::str::from_utf8(request.authority) else {
        return Vec::new();
    };
    if host.is_empty() {
        return Vec::new();
    }
    cache::logout_keys(
        &config.credentials,
        host,
        request.cookie.as_deref(),
        request.authorization,
    )
}

/// The name of a session cookie that the `Cookie` header carries twice. The outpost reads the
/// first one; a page can plant a copy with a longer `Path` (sent first) or on its own host, to
/// make the user act as another session or keep the user from logging in.
fn twice_sent_session_cookie(config: &Config, cookie: &[u8]) -> Option<String> {
    let names = || {
        cookie
            .split(|b| *b == b';')
            .filter_map(|pair| pair.trim_ascii().split(|b| *b == b'=').next())
            .map(<[u8]>::trim_ascii)
            .filter(|name| config.credentials.is_session_cookie(name))
    };
    names().enumerate().find_map(|(i, name)| {
        names()
            .take(i)
            .any(|before| before == name)
            .then(|| String::from_utf8_lossy(name).into_owned())
    })
}

/// `Host` without its port, lower case.
fn host_name(authority: &str) -> String {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    host.to_ascii_lowercase()
}

/// The workspace a `{label}.{domain}` host names. Labels that no naming function produces (such
/// as authentik's own `auth.{domain}`, which forward_domain mode puts under the cookie domain) and
/// the outpost's pages are left to the route table.
fn workspace_host(config: &Config, authority: &[u8], path: &[u8]) -> Option<String> {
    let domain = config.routing.workspace_domain.as_deref()?;
    let host = host_name(std::str::from_utf8(authority).ok()?);
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    if path.starts_with(OUTPOST_PATHS.as_bytes()) || !is_service_name(label) {
        return None;
    }
    Some(label.to_string())
}

/// Whether an `Origin` header names the host the request is for.
fn same_origin_host(origin: &[u8], authority: &[u8]) -> bool {
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let Some(host) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    std::str::from_utf8(authority).is_ok_and(|authority| host.eq_ignore_ascii_case(authority))
}

/// The GitHub repository behind a plain `{owner}--{repo}` Service name.
fn repo_of_service(service: &str) -> Option<RepoId> {
    let (owner, repo) = service.split_once("--")?;
    let id = RepoId::new(owner, repo).ok()?;
    (knative_service_name(&id) == service).then_some(id)
}

fn next(config: &Config, request: Request, client: &Client, signed: bool, logout: bool) -> Next {
    let answer = |outcome: Outcome, reply: LocalReply| Next::Answer { outcome, reply };
    let bad = |reason: &str| {
        answer(
            Outcome::BadRequest { status: 400 },
            reply::refuse(400, reason, client),
        )
    };
    let raw_path = request.path;
    match outpost_pages::access(raw_path) {
        Access::Elsewhere | Access::Page => {}
        Access::Unclean => return bad(Access::Unclean.reason()),
        Access::Refused => {
            return answer(
                Outcome::BadRequest { status: 403 },
                reply::refuse(403, Access::Refused.reason(), client),
            )
        }
    }
    let authority = request.authority;
    let host_workspace = workspace_host(config, authority, raw_path);
    let path = match std::str::from_utf8(raw_path) {
        Ok(path) => path,
        Err(_) if route::claims_forge(raw_path) || host_workspace.is_some() => {
            return bad(&route::PathError::NotAscii.to_string())
        }
        Err(_) => return Next::Continue,
    };
    let navigation = starting::is_navigation(
        request.method,
        request.accept,
        request.sec_fetch_mode,
        request.upgrade,
    );
    if !logout {
        if let Some(name) = request
            .cookie
            .as_deref()
            .and_then(|c| twice_sent_session_cookie(config, c))
        {
            return bad(&format!(
                "the request carries the sign-in cookie {name:?} twice, so which session it \
                 is cannot be told (a page may have set a copy); clear this site's cookies \
                 in the browser and sign in again"
            ));
        }
    }
    let route = |workspace| {
        After::Route(Box::new(Route {
            workspace,
            credentials: request.credentials.clone(),
            navigation,
        }))
    };
    let (after, cacheable) = match host_workspace {
        Some(service) => {
            if let Err(e) = route::check_clean(path) {
                return bad(&e.to_string());
            }
            // Every workspace host is the same site and the session cookie covers them all: a
            // page of one workspace must not drive requests (form posts, WebSockets, fetch) into
            // another with the user's session.
            if let Some(origin) = request.origin {
                if !same_origin_host(origin, authority) {
                    return answer(
                        Outcome::Denied,
                        reply::refuse(
                            403,
                            "a request from another origin cannot reach this workspace",
                            client,
                        ),
                    );
                }
            }
            let repo = repo_of_service(&service);
            (
                route(Place::Host {
                    service,
                    repo,
                    path: path.to_string(),
                }),
                !signed,
            )
        }
        None => match route::target(path, &config.health_path) {
            Err(e) => return bad(&e.to_string()),
            Ok(Target::Health) => return answer(Outcome::Local { status: 200 }, reply::health()),
            Ok(Target::AddSlash(location)) => {
                let reply = match host_redirect(config, &request, &location) {
                    Some(location) => reply::redirect(302, &location),
                    None => reply::add_slash(&location),
                };
                return answer(
                    Outcome::Local {
                        status: reply.status,
                    },
                    reply,
                );
            }
            Ok(Target::Elsewhere) => {
                if !signed {
                    return Next::Continue;
                }
                // The outpost would answer a 301 that leaks its check path for these.
                if let Err(e) = route::check_clean(path) {
                    return bad(&e.to_string());
                }
                (After::Continue, false)
            }
            Ok(Target::Repo(repo)) => {
                if let Some(location) = workspace_location(config, &request, &repo) {
                    return answer(
                        Outcome::Local { status: 302 },
                        reply::redirect(302, &location),
                    );
                }
                (route(Place::Path(repo)), !signed)
            }
        },
    };
    if authority.is_empty() {
        return bad("the request has no Host");
    }
    // The outpost picks the application by the Host and builds the return URL from it.
    let Some(host) = std::str::from_utf8(authority)
        .ok()
        .filter(|a| is_host_authority(a))
    else {
        return bad("the Host is not a host name with an optional port");
    };
    let https = request.https();
    let (Ok(cookie), Ok(authorization)) = (
        request.cookie.map(String::from_utf8).transpose(),
        request.authorization.map(std::str::from_utf8).transpose(),
    ) else {
        return bad("Host, Cookie or Authorization contains bytes that are not UTF-8");
    };
    let cache_key = (cacheable && !config.cache.ttl.is_zero())
        .then(|| {
            cache::key(
                &config.credentials,
                host,
                cookie.as_deref().map(str::as_bytes),
                authorization.map(str::as_bytes),
            )
        })
        .flatten();
    let callback = signed
        .then(|| login_retry::callback(path, host, cookie.as_deref().map(str::as_bytes), https))
        .flatten();
    Next::Check(Box::new(Pending {
        client: client.clone(),
        after,
        cache_key,
        callback,
        host: host.to_string(),
        path: path.to_string(),
        https,
        cookie,
        authorization: authorization.map(str::to_string),
    }))
}

/// In host-based mode, a path without its trailing slash on the gateway's host moves to the
/// workspace's own host (the location [`route::target`] gives is the repository's path).
fn host_redirect(config: &Config, request: &Request, location: &str) -> Option<String> {
    config.routing.workspace_domain.as_ref()?;
    let Ok(Target::Repo(repo)) = route::target(location, &config.health_path) else {
        return None;
    };
    workspace_location(config, request, &repo)
}

/// In host-based mode, a repository path on the gateway's host moves to the workspace's own host
/// (`{service}.{domain}`), keeping what follows the prefix.
fn workspace_location(config: &Config, request: &Request, repo: &RepoPath) -> Option<String> {
    let domain = config.routing.workspace_domain.as_deref()?;
    let scheme = match request.scheme {
        Some(b"http") => "http",
        _ => "https",
    };
    let authority = std::str::from_utf8(request.authority).ok()?;
    let port = authority
        .rsplit_once(':')
        .map(|(_, port)| port)
        .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let service = knative_service_name(&repo.id);
    Some(format!("{scheme}://{service}.{domain}{port}{}", repo.rest))
}

/// The request headers once `strip` and `edits` are applied, for the host to take in one call:
/// kept headers stay in place (a set header takes the place of its first occurrence), new ones
/// follow. The last edit of a name wins.
pub fn edited<'a>(
    headers: &'a Headers,
    strip: &[String],
    edits: &'a [Edit],
) -> Vec<(&'a str, &'a [u8])> {
    // What the edits leave of each name: its value, or `None` when removed.
    let mut last: Vec<(&str, Option<&[u8]>)> = Vec::with_capacity(edits.len());
    for edit in edits.iter().rev() {
        let (name, value) = match edit {
            Edit::Set(name, value) => (name.as_ref(), Some(value.as_slice())),
            Edit::Remove(name) => (name.as_ref(), None),
        };
        if !last.iter().any(|(n, _)| *n == name) {
            last.push((name, value));
        }
    }
    last.reverse();
    let mut placed = vec![false; last.len()];
    let mut out = Vec::with_capacity(headers.len().saturating_add(last.len()));
    for (name, value) in headers {
        match last.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                if let (Some((_, Some(value))), Some(done @ false)) =
                    (last.get(i), placed.get_mut(i))
                {
                    out.push((name, *value));
                    *done = true;
                }
            }
            None if strip.iter().any(|s| s == name) => {}
            None => out.push((name, value)),
        }
    }
    for ((name, value), done) in last.iter().zip(placed) {
        if let (Some(value), false) = (value, done) {
            out.push((name, value));
        }
    }
    out
}

/// What the outpost's answer (`None`: the call failed) means for the waiting request, and the
/// identity to remember when the answer may be cached.
pub fn on_outpost_response(
    config: &Config,
    pending: &Pending,
    response: Option<&OutpostResponse>,
) -> (Resume, Option<Identity>) {
    if let Some(callback) = &pending.callback {
        if let Some(reply) = login_retry::on_refusal(callback, response, &pending.client) {
            let outcome = Outcome::of_outpost_answer(reply.status);
            return (Resume::Answer { outcome, reply }, None);
        }
    }
    let (mut resume, remember) = match auth::verdict(config, response, &pending.client) {
        Verdict::Answer(reply) => (
            Resume::Answer {
                outcome: Outcome::of_outpost_answer(reply.status),
                reply,
            },
            None,
        ),
        Verdict::Allow {
            identity,
            set_cookies,
        } => {
            let remember = pending.cache_key.is_some().then(|| identity.clone());
            (
                on_identity(config, pending, identity, set_cookies),
                remember,
            )
        }
    };
    // A login that was started over got its answer: the marker has done its work.
    if let Some(clear) = pending.callback.as_ref().and_then(login_retry::settled) {
        match &mut resume {
            Resume::Answer { reply, .. } => reply.headers.push(("set-cookie".into(), clear)),
            Resume::Forward { set_cookies, .. } | Resume::Deny { set_cookies, .. } => {
                set_cookies.push(clear.into_bytes())
            }
        }
    }
    (resume, remember)
}

/// Carries on with a request whose user is known (from the outpost or the cache).
pub fn on_identity(
    config: &Config,
    pending: &Pending,
    identity: Identity,
    set_cookies: Vec<Vec<u8>>,
) -> Resume {
    let route = match &pending.after {
        After::Continue => {
            return Resume::Forward {
                edits: Vec::new(),
                set_cookies,
                workspace: None,
            }
        }
        After::Route(route) => route,
    };
    if let Some(policy) = &config.access {
        let verdict = match &route.workspace {
            Place::Path(path) => {
                policy.decide(&path.id.key(), &identity.username, &identity.groups)
            }
            Place::Host {
                repo: Some(repo), ..
            } => policy.decide(&repo.key(), &identity.username, &identity.groups),
            Place::Host { repo: None, .. } => {
                policy.decide_unknown(&identity.username, &identity.groups)
            }
        };
        if verdict.effect == Effect::Deny {
            let reason = format!(
                "{} may not open {}",
                identity.username,
                route.workspace.display()
            );
            return Resume::Deny {
                reply: reply::refuse(403, &reason, &pending.client),
                user: identity.username,
                set_cookies,
            };
        }
    }
    let (edits, workspace) = routing_edits(config, route, pending, identity);
    Resume::Forward {
        edits,
        set_cookies,
        workspace: Some(Box::new(workspace)),
    }
}

/// Where an allowed request goes, and what of the user's credentials it leaves behind.
fn routing_edits(
    config: &Config,
    route: &Route,
    pending: &Pending,
    identity: Identity,
) -> (Vec<Edit>, Workspace) {
    let routing = &config.routing;
    let (repo, prefix, path, service) = match &route.workspace {
        Place::Path(path) => {
            let service = match &routing.mode {
                Mode::Shared { service } => service.clone(),
                Mode::PerRepo => knative_service_name(&path.id),
                Mode::PerUser => per_user_service_name(&path.id, &identity.username),
            };
            let rest = if routing.strip_prefix {
                path.rest.clone()
            } else {
                format!("{}{}", path.prefix, path.rest)
            };
            (Some(&path.id), Some(path.prefix.as_str()), rest, service)
        }
        Place::Host {
            service,
            repo,
            path,
        } => (repo.as_ref(), None, path.clone(), service.clone()),
    };
    let authority = routing
        .authority_template
        .render(&service, &routing.namespace);
    let cluster = routing
        .cluster_template
        .render(&service, &routing.namespace);
    let ensure = match (&config.provisioner, &routing.mode, repo) {
        (Some(_), Mode::PerRepo | Mode::PerUser, Some(id)) => Some(Ensure {
            service: service.clone(),
            forge: id.forge().segment(),
            repository: format!("{}/{}", id.owner(), id.repo()),
            user: identity.username.clone(),
            groups: identity
                .groups
                .split('|')
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect(),
        }),
        _ => None,
    };
    let username = identity.username;
    // What the workspace learns: who, which repository, under which prefix.
    let mut edits: Vec<Edit> = Vec::with_capacity(identity.headers.len().saturating_add(8));
    edits.extend(
        identity
            .headers
            .into_iter()
            .map(|(n, v)| Edit::Set(Cow::Owned(n), v)),
    );
    if let Some(repo) = repo {
        let url = repo.url_at(config.forges.base_url(repo.forge()));
        if repo.forge() == Forge::GitHub {
            edits.push(Edit::Set(
                Cow::Borrowed("x-github-repo"),
                url.clone().into_bytes(),
            ));
        }
        edits.push(Edit::Set(Cow::Borrowed("x-repo-url"), url.into_bytes()));
    }
    if let Some(prefix) = prefix {
        edits.push(Edit::Set(
            Cow::Borrowed("x-forwarded-prefix"),
            prefix.as_bytes().to_vec(),
        ));
    }
    // Only a navigation can wake a workspace (starting page, or Knative's "not yet" answered
    // with the page); the call carries what the workspace learns, at its root.
    let wake = if route.navigation && config.starting_page.is_some() {
        let wake_path = match prefix {
            Some(prefix) if !routing.strip_prefix => format!("{prefix}/"),
            _ => "/".to_string(),
        };
        let mut wake = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), wake_path),
            (":authority".to_string(), authority.clone()),
        ];
        wake.extend(edits.iter().filter_map(|edit| {
            match edit {
                Edit::Set(n, v) => std::str::from_utf8(v)
                    .ok()
                    .map(|v| (n.to_string(), v.to_string())),
                Edit::Remove(_) => None,
            }
        }));
        wake
    } else {
        Vec::new()
    };
    edits.push(Edit::Set(
        Cow::Owned(routing.authority_header.clone()),
        authority.into_bytes(),
    ));
    edits.push(Edit::Set(
        Cow::Owned(routing.cluster_header.clone()),
        cluster.clone().into_bytes(),
    ));
    edits.push(Edit::Set(Cow::Borrowed(":path"), path.into_bytes()));
    edits.extend(
        route
            .credentials
            .iter()
            .filter(|name| !(config.credentials.forward_authorization && **name == "authorization"))
            .map(|name| Edit::Remove(Cow::Borrowed(*name))),
    );
    if let Some(cookie) = &pending.cookie {
        edits.push(
            match headers::without_session_cookies(&config.credentials, cookie.as_bytes()) {
                Some(kept) => Edit::Set(Cow::Borrowed("cookie"), kept),
                None => Edit::Remove(Cow::Borrowed("cookie")),
            },
        );
    }
    let workspace = Workspace {
        repo: route.workspace.display(),
        service,
        user: username,
        navigation: route.navigation,
        cluster,
        wake,
        ensure,
    };
    (edits, workspace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(routing: &str) -> Config {
        crate::config::parse(
            format!(r#"{{"outpost":{{"cluster":"ak"}},"routing":{routing}}}"#).as_bytes(),
        )
        .unwrap()
    }

    fn request(path: &str, extra: &[(&str, &str)]) -> Headers {
        [
            (":method", "GET"),
            (":path", path),
            (":authority", "gw.example"),
        ]
        .iter()
        .chain(extra)
        .map(|(n, v)| (n, v.as_bytes()))
        .collect()
    }

    /// `headers` with the value of `name` replaced.
    fn replaced(headers: &Headers, name: &str, value: &[u8]) -> Headers {
        headers
            .iter()
            .map(|(n, v)| (n, if n == name { value } else { v }))
            .collect()
    }

    fn logged_in() -> OutpostResponse {
        OutpostResponse {
            headers: [
                (":status", "200"),
                ("x-authentik-username", "alice"),
                ("x-authentik-jwt", "token"),
            ]
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
            body: Vec::new(),
        }
    }

    fn user(name: &str, groups: &str) -> OutpostResponse {
        OutpostResponse {
            headers: [
                (":status", "200"),
                ("x-authentik-username", name),
                ("x-authentik-groups", groups),
            ]
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
            body: Vec::new(),
        }
    }

    fn full(json: &str) -> Config {
        crate::config::parse(json.as_bytes()).unwrap()
    }

    fn forwarded(
        config: &Config,
        path: &str,
        response: &OutpostResponse,
    ) -> (Vec<Edit>, Workspace) {
        let (_, pending) = check(config, &request(path, &[("cookie", "authentik_proxy_1=s")]));
        match resume(config, &pending, Some(response)) {
            Resume::Forward {
                edits,
                workspace: Some(workspace),
                ..
            } => (edits, *workspace),
            other => panic!("{path}: not forwarded: {other:?}"),
        }
    }

    fn resume(config: &Config, pending: &Pending, response: Option<&OutpostResponse>) -> Resume {
        on_outpost_response(config, pending, response).0
    }

    fn check(config: &Config, headers: &Headers) -> (Vec<(String, String)>, Pending) {
        match on_request_headers(config, headers).next {
            Next::Check(pending) => (pending.check_headers(&config.outpost), *pending),
            other => panic!("no check: {other:?}"),
        }
    }

    fn set<'e>(edits: &'e [Edit], name: &str) -> Option<&'e str> {
        edits.iter().find_map(|e| match e {
            Edit::Set(n, v) if n == name => std::str::from_utf8(v).ok(),
            _ => None,
        })
    }

    #[test]
    fn spoofed_headers_are_stripped_on_every_path() {
        let config = config("{}");
        for path in ["/health", "/elsewhere", "/github/a/b/", "/github/../x"] {
            let decision = on_request_headers(
                &config,
                &request(
                    path,
                    &[("x_authentik_username", "root"), ("x-github-repo", "x")],
                ),
            );
            assert_eq!(
                decision.strip,
                vec!["x_authentik_username", "x-github-repo"],
                "{path}"
            );
        }
    }

    #[test]
    fn allowed_request_is_routed_per_repo() {
        let config =
            config(r#"{"mode":"per-repo","namespace":"ws","cluster_template":"ksvc_{service}"}"#);
        let headers = request(
            "/github/Octocat/Hello-World/vnc.html?x=1",
            &[
                ("cookie", "theme=dark"),
                ("cookie", "authentik_proxy_ab12cd34=s"),
                ("authorization", "Basic eA=="),
            ],
        );
        let (call, pending) = check(&config, &headers);
        assert!(call.contains(&(
            ":path".into(),
            "/outpost.goauthentik.io/auth/envoy/github/Octocat/Hello-World/vnc.html?x=1".into()
        )));
        assert!(call.contains(&(
            "cookie".into(),
            "theme=dark; authentik_proxy_ab12cd34=s".into()
        )));
        let Resume::Forward {
            edits, set_cookies, ..
        } = resume(&config, &pending, Some(&logged_in()))
        else {
            panic!("not forwarded")
        };
        assert!(set_cookies.is_empty());
        assert_eq!(set(&edits, "x-authentik-username"), Some("alice"));
        assert_eq!(set(&edits, "x-authentik-jwt"), None);
        assert_eq!(
            set(&edits, "x-github-repo"),
            Some("https://github.com/octocat/hello-world")
        );
        assert_eq!(
            set(&edits, "x-forwarded-prefix"),
            Some("/github/Octocat/Hello-World")
        );
        assert_eq!(
            set(&edits, "x-devcontainer-authority"),
            Some("octocat--hello-world.ws.svc.cluster.local")
        );
        assert_eq!(
            set(&edits, "x-devcontainer-cluster"),
            Some("ksvc_octocat--hello-world")
        );
        assert_eq!(set(&edits, ":path"), Some("/vnc.html?x=1"));
        assert_eq!(set(&edits, "cookie"), Some("theme=dark"));
        assert!(edits.contains(&Edit::Remove("authorization".into())));
    }

    #[test]
    fn shared_mode_keeps_one_service_and_can_keep_the_prefix() {
        let config = config(r#"{"strip_prefix":false}"#);
        let (_, pending) = check(
            &config,
            &request("/github/a/b/", &[("cookie", "authentik_proxy_1=s")]),
        );
        let Resume::Forward { edits, .. } = resume(&config, &pending, Some(&logged_in())) else {
            panic!("not forwarded")
        };
        assert_eq!(
            set(&edits, "x-devcontainer-authority"),
            Some("devcontainer-serverless.devcontainers.svc.cluster.local")
        );
        assert_eq!(set(&edits, ":path"), Some("/github/a/b/"));
        assert!(edits.contains(&Edit::Remove("cookie".into())));
    }

    #[test]
    fn local_answers() {
        let config = config("{}");
        let answer = |path: &str, accept: &str| match on_request_headers(
            &config,
            &request(path, &[("accept", accept)]),
        )
        .next
        {
            Next::Answer { reply, .. } => reply,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(answer("/health", "*/*").status, 200);
        let slash = answer("/github/a/b?x=1", "*/*");
        assert_eq!(
            (slash.status, slash.header("location")),
            (308, Some("/github/a/b/?x=1"))
        );
        let bad = answer("/github/a/b/../c/", "application/json");
        assert_eq!(bad.status, 400);
        assert!(String::from_utf8_lossy(&bad.body)
            .contains(r#""reason":"path contains a \".\" or \"..\" segment""#));
        assert_eq!(
            answer(
                "/outpost.goauthentik.io/callback/../x?X-authentik-auth-callback=true",
                "*/*"
            )
            .status,
            400
        );
    }

    #[test]
    fn requests_without_host_or_with_binary_credentials_are_refused() {
        let config = config("{}");
        let mut headers = request("/github/a/b/", &[]);
        headers.retain(|n, _| n != ":authority");
        assert!(
            matches!(on_request_headers(&config, &headers).next, Next::Answer { reply: r, .. } if r.status == 400)
        );
        let mut headers = request("/github/a/b/", &[]);
        headers.push("cookie", &[0xff, b'=', b'1']);
        assert!(
            matches!(on_request_headers(&config, &headers).next, Next::Answer { reply: r, .. } if r.status == 400)
        );
        let headers = replaced(&request("/x", &[]), ":path", &[b'/', 0xff]);
        assert!(matches!(
            on_request_headers(&config, &headers).next,
            Next::Continue
        ));
    }

    #[test]
    fn callback_and_logout_are_checked_on_any_path() {
        let config = config("{}");
        for path in [
            "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=c&state=s",
            "/anything?x=1&X-authentik-logout=TRUE",
            "/github/a/b/?x-authentik-logout=true",
        ] {
            let (call, pending) = check(&config, &request(path, &[]));
            assert!(call.contains(&(
                ":path".into(),
                format!("/outpost.goauthentik.io/auth/envoy{path}")
            )));
            if !path.starts_with("/github/") {
                assert_eq!(
                    resume(&config, &pending, Some(&logged_in())),
                    Resume::Forward {
                        edits: vec![],
                        set_cookies: vec![],
                        workspace: None,
                    }
                );
            }
        }
        for path in [
            "/",
            "/x?X-authentik-auth-callback=false",
            "/outpost.goauthentik.io/sign_out",
        ] {
            assert!(
                matches!(
                    on_request_headers(&config, &request(path, &[])).next,
                    Next::Continue
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn gitlab_and_bitbucket_get_their_own_services_and_urls() {
        let config = full(
            r#"{"outpost":{"cluster":"ak"},"routing":{"mode":"per-repo","cluster_template":"c-{service}"},
                "forges":{"gitlab":{"base_url":"https://git.example.com/gl"}}}"#,
        );
        let (edits, ws) = forwarded(
            &config,
            "/gitlab/Group/Sub/Project/-/tree/main?x=1",
            &logged_in(),
        );
        assert_eq!(
            set(&edits, "x-repo-url"),
            Some("https://git.example.com/gl/group/sub/project")
        );
        assert_eq!(set(&edits, "x-github-repo"), None);
        assert_eq!(
            set(&edits, "x-forwarded-prefix"),
            Some("/gitlab/Group/Sub/Project/-")
        );
        assert_eq!(set(&edits, ":path"), Some("/tree/main?x=1"));
        assert!(
            ws.service.starts_with("gl-group-sub-project-"),
            "{}",
            ws.service
        );
        assert_eq!(ws.repo, "gitlab/group/sub/project");
        let (edits, ws) = forwarded(&config, "/bitbucket/Team/Repo.git/", &logged_in());
        assert_eq!(
            set(&edits, "x-repo-url"),
            Some("https://bitbucket.org/team/repo")
        );
        assert!(ws.service.starts_with("bb-team-repo-"), "{}", ws.service);
        let (edits, _) = forwarded(&config, "/github/a/b/", &logged_in());
        assert_eq!(set(&edits, "x-github-repo"), set(&edits, "x-repo-url"));
    }

    #[test]
    fn per_user_services_differ_by_user() {
        let config = full(r#"{"outpost":{"cluster":"ak"},"routing":{"mode":"per-user"}}"#);
        let (_, alice) = forwarded(&config, "/github/a/b/", &user("alice", ""));
        let (_, bob) = forwarded(&config, "/github/a/b/", &user("bob", ""));
        assert_ne!(alice.service, bob.service);
        assert!(alice.service.starts_with("u-alice-b-"), "{}", alice.service);
        assert_eq!(alice.user, "alice");
    }

    #[test]
    fn access_policy_denies_with_a_403_naming_repo_and_user() {
        let config = full(
            r#"{"outpost":{"cluster":"ak"},"access":{"default":"deny","rules":[
                {"repos":["*"],"groups":["admins"]},
                {"repos":["github/acme/*"],"groups":["developers"]}]}}"#,
        );
        forwarded(&config, "/github/acme/w/", &user("alice", "developers"));
        forwarded(&config, "/github/other/w/", &user("root", "admins"));
        let (_, pending) = check(
            &config,
            &request("/github/other/w/", &[("accept", "application/json")]),
        );
        let Resume::Deny { reply, user, .. } =
            resume(&config, &pending, Some(&user("alice", "developers")))
        else {
            panic!("not denied")
        };
        assert_eq!((reply.status, user.as_str()), (403, "alice"));
        assert!(String::from_utf8_lossy(&reply.body).contains("alice may not open github/other/w"));
    }

    #[test]
    fn authorization_is_kept_only_when_configured() {
        let config =
            full(r#"{"outpost":{"cluster":"ak"},"credentials":{"forward_authorization":true}}"#);
        let (_, pending) = check(
            &config,
            &request("/github/a/b/", &[("authorization", "Basic eA==")]),
        );
        let Resume::Forward { edits, .. } = resume(&config, &pending, Some(&logged_in())) else {
            panic!()
        };
        assert!(!edits.contains(&Edit::Remove("authorization".into())));
    }

    #[test]
    fn host_based_workspaces() {
        let config = full(
            r#"{"outpost":{"cluster":"ak"},"routing":{"mode":"per-repo","workspace_domain":"dev.example"}}"#,
        );
        let answer = |path: &str, host: &str| {
            let headers = replaced(
                &request(path, &[(":scheme", "https")]),
                ":authority",
                host.as_bytes(),
            );
            on_request_headers(&config, &headers).next
        };
        let Next::Answer { reply, .. } =
            answer("/github/Octocat/Hello-World/x?y=1", "gw.example:8443")
        else {
            panic!()
        };
        assert_eq!(reply.status, 302);
        assert_eq!(
            reply.header("location"),
            Some("https://octocat--hello-world.dev.example:8443/x?y=1")
        );
        // Hosts no naming function produces (authentik's own `auth.`) and the outpost's pages
        // are the route table's.
        for (path, host) in [
            ("/", "auth.dev.example"),
            ("/", "Bad_Name.dev.example"),
            (
                "/outpost.goauthentik.io/sign_out",
                "octocat--hello-world.dev.example",
            ),
        ] {
            assert!(matches!(answer(path, host), Next::Continue), "{host}{path}");
        }
        let headers = replaced(
            &request("/deep/path?q=1", &[("cookie", "authentik_proxy_1=s; ws=1")]),
            ":authority",
            b"octocat--hello-world.dev.example",
        );
        let (call, pending) = check(&config, &headers);
        assert!(call.contains(&(
            ":authority".into(),
            "octocat--hello-world.dev.example".into()
        )));
        let Resume::Forward {
            edits,
            workspace: Some(ws),
            ..
        } = resume(&config, &pending, Some(&logged_in()))
        else {
            panic!()
        };
        assert_eq!(set(&edits, ":path"), Some("/deep/path?q=1"));
        assert_eq!(
            set(&edits, "x-github-repo"),
            Some("https://github.com/octocat/hello-world")
        );
        assert_eq!(set(&edits, "x-forwarded-prefix"), None);
        assert_eq!(set(&edits, "cookie"), Some("ws=1"));
        assert_eq!(ws.service, "octocat--hello-world");
        // Another workspace's page cannot drive requests into this one.
        let headers = replaced(
            &request("/api", &[("origin", "https://other--repo.dev.example")]),
            ":authority",
            b"octocat--hello-world.dev.example",
        );
        let Next::Answer { reply, .. } = on_request_headers(&config, &headers).next else {
            panic!()
        };
        assert_eq!(reply.status, 403);
        let headers = replaced(
            &request(
                "/api",
                &[("origin", "https://Octocat--hello-world.dev.example")],
            ),
            ":authority",
            b"octocat--hello-world.dev.example",
        );
        assert!(matches!(
            on_request_headers(&config, &headers).next,
            Next::Check(_)
        ));
        // A hashed name: routed by the host, no repository header.
        let headers = replaced(
            &request("/", &[]),
            ":authority",
            b"kubernetes-k8s-io-0123456789.dev.example",
        );
        let (_, pending) = check(&config, &headers);
        let Resume::Forward { edits, .. } = resume(&config, &pending, Some(&logged_in())) else {
            panic!()
        };
        assert_eq!(set(&edits, "x-github-repo"), None);
    }

    #[test]
    fn a_refused_callback_starts_the_login_over_once() {
        let config = config("{}");
        let refused = OutpostResponse {
            headers: vec![(":status".into(), b"400".to_vec())],
            body: Vec::new(),
        };
        let answer = |path: &str, extra: &[(&str, &str)], response: &OutpostResponse| {
            let (_, pending) = check(&config, &request(path, extra));
            match resume(&config, &pending, Some(response)) {
                Resume::Answer { reply, .. } => reply,
                other => panic!("not answered: {other:?}"),
            }
        };
        let path = "/github/a/b/x?y=1&X-authentik-auth-callback=true&code=c&state=s";
        let first = answer(path, &[(":scheme", "http")], &refused);
        assert_eq!(
            (first.status, first.header("location")),
            (302, Some("/github/a/b/x?y=1"))
        );
        assert_eq!(
            first.header("set-cookie"),
            Some("authentik_gateway_login_retry=1; Path=/; Max-Age=600; HttpOnly; SameSite=Lax")
        );
        let marked = [("cookie", "authentik_gateway_login_retry=1")];
        let second = answer(path, &marked, &refused);
        assert_eq!((second.status, second.header("location")), (400, None));
        // A retried callback that goes through ends the marker with the outpost's redirect.
        let done = OutpostResponse {
            headers: vec![
                (":status".into(), b"302".to_vec()),
                ("location".into(), b"//gw.example/github/a/b/x?y=1".to_vec()),
                ("set-cookie".into(), b"authentik_proxy_1=s; Path=/".to_vec()),
            ],
            body: Vec::new(),
        };
        let cookies: Vec<String> = answer(path, &marked, &done)
            .headers
            .into_iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            cookies,
            [
                "authentik_proxy_1=s; Path=/",
                "authentik_gateway_login_retry=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
            ]
        );
        // Not a callback: a 400 stays the outpost's refusal.
        let plain = answer("/github/a/b/?X-authentik-logout=true", &[], &refused);
        assert_eq!((plain.status, plain.header("set-cookie")), (400, None));
    }

    #[test]
    fn cache_keys_only_for_plain_checked_workspace_requests_and_logouts_forget() {
        let config = config("{}");
        let cookie = [("cookie", "authentik_proxy_1=s")];
        let (_, pending) = check(&config, &request("/github/a/b/", &cookie));
        assert!(pending.cache_key().is_some());
        let (_, pending) = check(
            &config,
            &request("/github/a/b/?X-authentik-auth-callback=true", &cookie),
        );
        assert!(pending.cache_key().is_none());
        let (_, pending) = check(&config, &request("/github/a/b/", &[]));
        assert!(pending.cache_key().is_none());
        let logout = on_request_headers(
            &config,
            &request("/outpost.goauthentik.io/sign_out", &cookie),
        );
        assert_eq!(logout.forget.len(), 1);
        let logout = on_request_headers(&config, &request("/x?X-authentik-logout=true", &cookie));
        assert_eq!(logout.forget.len(), 1);
        assert!(
            on_request_headers(&config, &request("/github/a/b/", &cookie))
                .forget
                .is_empty()
        );
        let off = full(r#"{"outpost":{"cluster":"ak"},"cache":{"ttl":"0s"}}"#);
        let (_, pending) = check(&off, &request("/github/a/b/", &cookie));
        assert!(pending.cache_key().is_none());
    }

    #[test]
    fn a_logout_forgets_every_session_it_carries() {
        let config = config("{}");
        let both = [("cookie", "authentik_proxy_1=a; x=1; authentik_proxy_1=b")];
        let logout = on_request_headers(&config, &request("/x?X-authentik-logout=true", &both));
        assert!(!matches!(logout.next, Next::Answer { .. }));
        let slots = |cookie: &str| {
            let (_, pending) = check(&config, &request("/github/a/b/", &[("cookie", cookie)]));
            pending.cache_key().map(|k| k.session)
        };
        let forgotten: Vec<_> = logout.forget.iter().map(|k| k.session).collect();
        for cookie in ["authentik_proxy_1=a", "authentik_proxy_1=b"] {
            assert!(forgotten.contains(&slots(cookie).unwrap()), "{cookie}");
        }
    }

    #[test]
    fn a_session_cookie_sent_twice_is_refused_outside_a_logout() {
        let config = config("{}");
        for cookie in [
            "authentik_proxy_1=a; authentik_proxy_1=b",
            "authentik_proxy_1=a;x=2;  authentik_proxy_1 =b",
        ] {
            let Next::Answer { reply, .. } =
                on_request_headers(&config, &request("/github/a/b/", &[("cookie", cookie)])).next
            else {
                panic!("{cookie}")
            };
            assert_eq!(reply.status, 400);
            assert!(String::from_utf8_lossy(&reply.body).contains("twice"));
        }
        // Two of authentik's cookies with different names are two sessions, not a copy.
        let (_, pending) = check(
            &config,
            &request(
                "/github/a/b/",
                &[("cookie", "authentik_proxy_1=a; authentik_session=b")],
            ),
        );
        assert!(pending.cache_key().is_some());
        // Split over two headers (HTTP/2) counts the same.
        let headers = request(
            "/github/a/b/",
            &[
                ("cookie", "authentik_proxy_1=a"),
                ("cookie", "authentik_proxy_1=b"),
            ],
        );
        assert!(matches!(
            on_request_headers(&config, &headers).next,
            Next::Answer {
                reply: LocalReply { status: 400, .. },
                ..
            }
        ));
    }

    #[test]
    fn the_outposts_check_endpoints_are_refused_and_its_pages_left_to_the_routes() {
        let config = config("{}");
        let status = |path: &str| match on_request_headers(&config, &request(path, &[])).next {
            Next::Answer { reply, .. } => reply.status,
            Next::Continue => 0,
            Next::Check(_) => 1,
        };
        assert_eq!(
            status("/outpost.goauthentik.io/auth/envoy/github/a/b/"),
            403
        );
        assert_eq!(status("/outpost.goauthentik.io//auth/envoy"), 400);
        assert_eq!(status("/outpost.goauthentik.io/sign_out"), 0);
        assert_eq!(status("/outpost.goauthentik.io/start?rd=%2F"), 0);
        assert_eq!(
            status("/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=c"),
            1
        );
    }

    #[test]
    fn edits_keep_order_replace_in_place_and_drop_duplicates() {
        let headers = request(
            "/github/a/b/x",
            &[
                ("cookie", "a=1"),
                ("x-authentik-uid", "spoof"),
                ("accept", "*/*"),
                ("cookie", "authentik_proxy_1=s"),
                ("authorization", "Basic eA=="),
            ],
        );
        let edits = vec![
            Edit::Set(":path".into(), b"/x".to_vec()),
            Edit::Set("cookie".into(), b"a=1".to_vec()),
            Edit::Remove("authorization".into()),
            Edit::Set("x-authentik-uid".into(), b"42".to_vec()),
            Edit::Set("x-github-repo".into(), b"r".to_vec()),
        ];
        let names = edited(&headers, &["x-authentik-uid".to_string()], &edits);
        assert_eq!(
            names,
            vec![
                (":method", b"GET".as_slice()),
                (":path", b"/x"),
                (":authority", b"gw.example"),
                ("cookie", b"a=1"),
                ("x-authentik-uid", b"42"),
                ("accept", b"*/*"),
                ("x-github-repo", b"r"),
            ]
        );
    }

    #[test]
    fn failed_check_answers_and_forwards_nothing() {
        let config = config("{}");
        let (_, pending) = check(
            &config,
            &request("/github/a/b/", &[("accept", "application/json")]),
        );
        let Resume::Answer { reply, .. } = resume(&config, &pending, None) else {
            panic!()
        };
        assert_eq!(reply.status, 503);
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }

    /// Deterministic random requests: the core never panics, and whatever passes the checks
    /// reaches exactly the repository its path names, with a clean path.
    #[test]
    fn random_paths_never_panic_and_never_reach_another_repository() {
        const NAME_PIECES: [&str; 10] = ["a", "B", "-", "7", ".", "_", ".git", "%2e", "..", "%2F"];
        const PIECES: [&str; 24] = [
            "/",
            "/",
            "//",
            ".",
            "..",
            "%2e",
            "%2F",
            "%5c",
            "%00",
            "%",
            "%zz",
            "\\",
            "?",
            "&",
            "=",
            "a",
            "B",
            "-",
            "_",
            ".git",
            "github",
            "/github/",
            "x-authentik-logout=true",
            "\u{e9}",
        ];
        let config = config(r#"{"mode":"per-repo"}"#);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut routed = 0;
        for _ in 0..50_000 {
            let mut path = if next() % 4 == 0 {
                String::new()
            } else {
                "/github/".to_string()
            };
            for part in 0..2 {
                for _ in 0..(1 + next() % 3) {
                    path.push_str(NAME_PIECES[(next() % NAME_PIECES.len() as u64) as usize]);
                }
                if part == 0 || next() % 2 == 0 {
                    path.push('/');
                }
            }
            for _ in 0..(next() % 6) {
                path.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let decision = on_request_headers(
                &config,
                &request(&path, &[("cookie", "authentik_proxy_1=s")]),
            );
            let Next::Check(pending) = decision.next else {
                continue;
            };
            let Resume::Forward { edits, .. } = resume(&config, &pending, Some(&logged_in()))
            else {
                panic!("{path}: allowed check not forwarded")
            };
            let Some(rewritten) = set(&edits, ":path") else {
                continue;
            };
            let (bare, _) = route::split_query(rewritten);
            assert!(
                !bare.contains("//") && !bare.split('/').any(|s| s == "." || s == ".."),
                "{path} -> {rewritten}"
            );
            let segments: Vec<&str> = path.trim_start_matches("/github/").splitn(3, '/').collect();
            let owner = segments
                .first()
                .copied()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let repo = segments
                .get(1)
                .copied()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let repo = repo.strip_suffix(".git").unwrap_or(&repo);
            assert_eq!(
                set(&edits, "x-github-repo"),
                Some(format!("https://github.com/{owner}/{repo}").as_str()),
                "{path}"
            );
            routed += 1;
        }
        assert!(
            routed > 500,
            "only {routed} random paths were routed: the property was barely exercised"
        );
    }
}

//! Command-line companion of the filter:
//!
//!   devcontainer-gateway render REPO [--namespace NS] [--user USER]
//!       prints the workspace's Knative Service (and NetworkPolicy), named as the filter routes
//!   devcontainer-gateway service-name REPO [--user USER]
//!       prints only the Knative Service name
//!   REPO is github/{owner}/{repo}, gitlab/{group}[/{subgroup}...]/{project} or
//!   bitbucket/{workspace}/{repo}; --user names the per-user Service (routing mode per-user)
//!   devcontainer-gateway check-config [FILE]
//!       validates a plugin configuration (JSON; stdin without FILE) exactly as the filter does

use std::io::Read;
use std::process::ExitCode;

use devcontainer_gateway::config;
use devcontainer_gateway::names::{knative_service_name, per_user_service_name, RepoId};
use devcontainer_gateway::render::{knative_service, WORKSPACE_TEMPLATE};

const USAGE: &str = "usage:
  devcontainer-gateway render REPO [--namespace NS] [--user USER]
  devcontainer-gateway service-name REPO [--user USER]
  devcontainer-gateway check-config [FILE]
REPO: github/{owner}/{repo} | gitlab/{group}[/{subgroup}...]/{project} | bitbucket/{workspace}/{repo}";

/// `--namespace NS` / `-n NS` and `--user USER`, in any order.
fn options<'a>(rest: &[&'a str]) -> Result<(Option<&'a str>, Option<&'a str>), String> {
    let (mut namespace, mut user) = (None, None);
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        let value = words.next().copied().ok_or_else(|| USAGE.to_string())?;
        match *word {
            "--namespace" | "-n" => namespace = Some(value),
            "--user" => user = Some(value),
            _ => return Err(USAGE.into()),
        }
    }
    Ok((namespace, user))
}

fn service_name(id: &RepoId, user: Option<&str>) -> String {
    match user {
        Some(user) => per_user_service_name(id, user),
        None => knative_service_name(id),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&words) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("devcontainer-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[&str]) -> Result<String, String> {
    match args {
        ["render", slug, rest @ ..] => {
            let (namespace, user) = options(rest)?;
            let id = RepoId::parse_slug(slug).map_err(|e| e.to_string())?;
            knative_service(
                WORKSPACE_TEMPLATE,
                &id,
                &service_name(&id, user),
                namespace.unwrap_or(config::DEFAULT_NAMESPACE),
            )
        }
        ["service-name", slug, rest @ ..] => {
            let (namespace, user) = options(rest)?;
            if namespace.is_some() {
                return Err(USAGE.into());
            }
            let id = RepoId::parse_slug(slug).map_err(|e| e.to_string())?;
            Ok(format!("{}\n", service_name(&id, user)))
        }
        ["check-config", rest @ ..] => {
            let bytes = match rest {
                [] | ["-"] => {
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut buf)
                        .map_err(|e| e.to_string())?;
                    buf
                }
                [file] => std::fs::read(file).map_err(|e| format!("{file}: {e}"))?,
                _ => return Err(USAGE.into()),
            };
            config::parse(&bytes)
                .map(|_| "configuration accepted\n".to_string())
                .map_err(|e| format!("configuration refused: {e}"))
        }
        _ => Err(USAGE.into()),
    }
}

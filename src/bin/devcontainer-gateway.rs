//! Command-line companion of the filter:
//!
//!   devcontainer-gateway render github/{owner}/{repo} [--namespace NS]
//!       prints the workspace's Knative Service (and NetworkPolicy), named as the filter routes
//!   devcontainer-gateway service-name github/{owner}/{repo}
//!       prints only the Knative Service name
//!   devcontainer-gateway check-config [FILE]
//!       validates a plugin configuration (JSON; stdin without FILE) exactly as the filter does

use std::io::Read;
use std::process::ExitCode;

use devcontainer_gateway::config;
use devcontainer_gateway::names::{knative_service_name, RepoId};
use devcontainer_gateway::render::{knative_service, WORKSPACE_TEMPLATE};

const USAGE: &str = "usage:
  devcontainer-gateway render github/{owner}/{repo} [--namespace NS]
  devcontainer-gateway service-name github/{owner}/{repo}
  devcontainer-gateway check-config [FILE]";

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
            let namespace = match rest {
                [] => config::DEFAULT_NAMESPACE,
                ["--namespace", namespace] | ["-n", namespace] => namespace,
                _ => return Err(USAGE.into()),
            };
            let id = RepoId::parse_slug(slug).map_err(|e| e.to_string())?;
            knative_service(WORKSPACE_TEMPLATE, &id, namespace)
        }
        ["service-name", slug] => {
            let id = RepoId::parse_slug(slug).map_err(|e| e.to_string())?;
            Ok(format!("{}\n", knative_service_name(&id)))
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

//! devcontainer-provisioner
//!
//!   devcontainer-provisioner serve [--config FILE]   run the ensure API and the controller
//!   devcontainer-provisioner check-config [FILE]      validate a configuration file
//!   devcontainer-provisioner crd                      print the Workspace CRD (YAML)
//!
//! FILE defaults to /etc/devcontainer-provisioner/config.json. The Kubernetes connection comes
//! from the pod's service account, or from KUBECONFIG outside a cluster. Logs: JSON lines on
//! stdout (LOG_FORMAT=text for a terminal), level from RUST_LOG (default info).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use devcontainer_provisioner::{api, config, controller, crd_yaml, read_token, state::State};
use tracing::{error, info, warn};

const DEFAULT_CONFIG: &str = "/etc/devcontainer-provisioner/config.json";
const USAGE: &str = "usage:
  devcontainer-provisioner serve [--config FILE]
  devcontainer-provisioner check-config [FILE]
  devcontainer-provisioner crd";
/// A rotated token Secret reaches the mounted file within a minute or two; this picks it up.
const TOKEN_RELOAD: Duration = Duration::from_secs(30);

fn load_config(path: &str) -> Result<config::Config, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    config::parse(&bytes).map_err(|e| format!("{path}: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["crd"] => crd_yaml().map(|y| print!("{y}")).map_err(|e| e.to_string()),
        ["check-config"] => load_config(DEFAULT_CONFIG).map(|_| println!("ok")),
        ["check-config", file] => load_config(file).map(|_| println!("ok")),
        ["serve"] => serve(DEFAULT_CONFIG),
        ["serve", "--config", file] => serve(file),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devcontainer-provisioner: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "text") {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

fn serve(config_path: &str) -> Result<(), String> {
    let config = load_config(config_path)?;
    let token = read_token(&config.token_file)?;
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(run(config, token))
}

async fn run(config: config::Config, token: Vec<u8>) -> Result<(), String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("Kubernetes client: {e}"))?;
    let watches = controller::Watches::new();
    let listen = config.listen;
    let token_file = config.token_file.clone();
    let state = Arc::new(State::new(
        config,
        client,
        &token,
        (
            watches.workspaces.0.clone(),
            watches.services.0.clone(),
            watches.network_policies.0.clone(),
        ),
    ));
    info!(
        namespace = %state.config.namespace,
        mode = ?state.config.mode,
        %listen,
        idle_after_s = state.config.idle_after.as_secs(),
        "devcontainer-provisioner starting"
    );
    {
        let state = state.clone();
        tokio::spawn(async move {
            let mut current = token;
            loop {
                tokio::time::sleep(TOKEN_RELOAD).await;
                match read_token(&token_file) {
                    Ok(t) if t != current => {
                        state.replace_token(&t);
                        current = t;
                        info!("bearer token reloaded");
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "keeping the previous token"),
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listen {listen}: {e}"))?;
    let app = api::router(state.clone());
    let server = async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "HTTP server stopped");
        }
    };
    let writers = (
        watches.workspaces.1,
        watches.services.1,
        watches.network_policies.1,
    );
    tokio::select! {
        _ = server => Err("the HTTP server stopped".into()),
        _ = controller::run(state, writers) => {
            info!("shutting down");
            Ok(())
        }
    }
}

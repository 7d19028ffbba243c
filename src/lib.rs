//! devcontainer-gateway: a proxy-wasm HTTP filter that makes an Envoy or Istio ingress gateway
//! the front door of a dev-container platform. The decisions live in plain modules tested on the
//! host; only `filter` talks to the proxy.
//!
//! A panic aborts the wasm VM, and with it every request on that worker: outside tests, nothing
//! may unwrap, index, or do arithmetic that can overflow.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod auth;
pub mod cache;
pub mod config;
pub mod exchange;
pub mod headers;
pub mod host;
pub mod json;
pub mod login_retry;
pub mod names;
pub mod outcome;
pub mod outpost_pages;
pub mod policy;
pub mod provision;
pub mod render;
pub mod reply;
pub mod request;
pub mod route;
pub mod starting;
#[cfg(test)]
pub mod testhost;
pub mod wire;
pub mod worker;

#[cfg(target_arch = "wasm32")]
mod filter;

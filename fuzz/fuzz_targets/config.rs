//! Any bytes as plugin configuration: refused with a path and reason, or accepted; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = devcontainer_gateway::config::parse(data) {
        assert!(!e.path.is_empty() && !e.reason.is_empty());
    }
});

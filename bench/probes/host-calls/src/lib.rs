//! `host-calls`: what one proxy-wasm host call costs the proxy. The module does what floor-headers
//! does and, before the header rewrite, makes one host call `REPETITIONS` times per request; the
//! call is chosen at build time by a cargo feature. (Its CPU per request − floor-headers') /
//! `REPETITIONS` is then what one call adds, large enough to stand out from the noise.
//!
//! | feature        | the call                                                                  |
//! |----------------|---------------------------------------------------------------------------|
//! | `shared-400`   | `proxy_get_shared_data` of a 400-byte entry: what a cache lookup reads    |
//! | `shared-empty` | `proxy_get_shared_data` of an entry with an empty value (nothing handed over, so no allocation in the VM) |
//! | `log`          | `proxy_log` at info of a line shaped like the gateway's access line        |
//! | `metric`       | `proxy_increment_metric` of a counter                                     |
//! | `time`         | `proxy_get_current_time_nanoseconds`                                      |
//! | `header-map`   | `proxy_get_header_map_pairs` of the request headers (read whole, freed)   |
//!
//! The entries and the counter are made in `proxy_on_configure`, which refuses the configuration
//! when the entries do not read back as they must. Every call's result is checked: when one did
//! not do what is measured (an error status, an entry of another size) the request is answered
//! 500, so that a broken build fails the bench's pre-flight instead of measuring less work.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicU32, Ordering};

use probe_abi::{get_map, send_reply, PAUSE, REQUEST_HEADERS};

/// How often the call is made per request (bench/run.py divides by the same number).
const REPETITIONS: usize = 100;

/// The host's functions (module `env`) this probe adds to probe_abi's.
mod host {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_get_shared_data(
            key: *const u8,
            key_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
            version: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
            version: u32,
        ) -> u32;
        pub fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
        pub fn proxy_define_metric(kind: u32, name: *const u8, size: usize, id: *mut u32) -> u32;
        pub fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        pub fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    }
}

const OK: u32 = 0;
const LOG_INFO: u32 = 2;
const METRIC_COUNTER: u32 = 0;

/// A cache slot as the gateway names them, holding an entry of the size its cache reads.
const ENTRY_KEY: &[u8] = b"devcontainer-gateway/decision/1234";
const ENTRY_SIZE: usize = 400;
/// An entry that exists with an empty value.
const EMPTY_KEY: &[u8] = b"devcontainer-gateway/empty";
/// A line as long as, and shaped like, the gateway's access line of a cache hit (bench/run.py
/// looks for it in Envoy's log).
const ACCESS_LINE: &[u8] = b"access user=\"alice\" repo=\"github/octocat/hello-world\" outcome=allowed status=0 decided_by=cache latency_ms=0 request_id=\"8d1b6a5e-6a8c-4c1e-9a8e-0d1f2e3c4b5a\"";
const COUNTER_NAME: &[u8] = b"host_calls_probe_total";

/// The counter's id as the host defined it.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Makes the entries and the counter; refuses the configuration (0) unless the entries read back
/// as the calls expect them.
#[no_mangle]
pub extern "C" fn proxy_on_configure(_root: u32, _size: usize) -> u32 {
    let value = [b'v'; ENTRY_SIZE];
    let mut counter = 0;
    // SAFETY: every pointer is valid for its length (the empty slice for 0 bytes); a valid
    // out-pointer.
    let made = unsafe {
        host::proxy_set_shared_data(
            ENTRY_KEY.as_ptr(),
            ENTRY_KEY.len(),
            value.as_ptr(),
            value.len(),
            0,
        ) == OK
            && host::proxy_set_shared_data(EMPTY_KEY.as_ptr(), EMPTY_KEY.len(), [].as_ptr(), 0, 0)
                == OK
            && host::proxy_define_metric(
                METRIC_COUNTER,
                COUNTER_NAME.as_ptr(),
                COUNTER_NAME.len(),
                &mut counter,
            ) == OK
    };
    COUNTER.store(counter, Ordering::Relaxed);
    u32::from(made && get_entry() && get_empty_entry())
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context: u32, _headers: usize, _end: u32) -> u32 {
    let mut all_done = true;
    for _ in 0..REPETITIONS {
        // `&=` on bool evaluates the call every time.
        all_done &= call();
    }
    if !all_done {
        send_reply(500, "a host call failed\n");
        return PAUSE;
    }
    probe_abi::rewrite_request()
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_context: u32, _headers: usize, _end: u32) -> u32 {
    probe_abi::read_response()
}

/// The call of this build, by its feature (with several features each in turn, with none
/// nothing); whether it did what is measured. `cfg!` keeps every call compiled and linted in
/// every build.
fn call() -> bool {
    let mut done = true;
    if cfg!(feature = "shared-400") {
        done &= get_entry();
    }
    if cfg!(feature = "shared-empty") {
        done &= get_empty_entry();
    }
    if cfg!(feature = "log") {
        done &= log_access_line();
    }
    if cfg!(feature = "metric") {
        done &= increment_counter();
    }
    if cfg!(feature = "time") {
        done &= read_clock();
    }
    if cfg!(feature = "header-map") {
        done &= read_request_headers();
    }
    done
}

/// The shared entry under `key`: the call's status, the value's size and its version. The value,
/// if the host handed one over, is freed.
fn get_shared(key: &[u8]) -> (u32, usize, u32) {
    let (mut data, mut size, mut version) = (null_mut(), 0, 0);
    // SAFETY: `key` is valid for its length; valid out-pointers.
    let status = unsafe {
        host::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut version)
    };
    if !data.is_null() {
        // SAFETY: the host wrote `size` bytes into a buffer it obtained from
        // `proxy_on_memory_allocate(size)`, a `Vec<u8>` of capacity `size` given up to it.
        drop(unsafe { Vec::from_raw_parts(data, size, size) });
    }
    (status, size, version)
}

fn get_entry() -> bool {
    let (status, size, version) = get_shared(ENTRY_KEY);
    status == OK && size == ENTRY_SIZE && version != 0
}

/// Found, with a version, and nothing handed over.
fn get_empty_entry() -> bool {
    let (status, size, version) = get_shared(EMPTY_KEY);
    status == OK && size == 0 && version != 0
}

fn log_access_line() -> bool {
    // SAFETY: the line is valid for its length.
    unsafe { host::proxy_log(LOG_INFO, ACCESS_LINE.as_ptr(), ACCESS_LINE.len()) == OK }
}

fn increment_counter() -> bool {
    // SAFETY: no pointers.
    unsafe { host::proxy_increment_metric(COUNTER.load(Ordering::Relaxed), 1) == OK }
}

fn read_clock() -> bool {
    let mut now = 0;
    // SAFETY: a valid out-pointer.
    let status = unsafe { host::proxy_get_current_time_nanoseconds(&mut now) };
    status == OK && now != 0
}

/// The whole map read into the VM, then freed.
fn read_request_headers() -> bool {
    get_map(REQUEST_HEADERS).pairs().next().is_some()
}

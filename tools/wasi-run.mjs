#!/usr/bin/env node
// Runs a WASI preview1 command (a `cargo test --target wasm32-wasip1` binary) under Node.js:
//   tools/wasi-run.mjs program.wasm [args…]
// Arguments, environment and stdio pass through; no directory is preopened. The exit code is the
// program's; a trap (a panic under panic=abort ends in `unreachable`) exits with 134, like SIGABRT.
// Imports outside WASI (the proxy-wasm host functions the filter links against) are stubs that
// trap if a test ever calls one.

import { readFile } from "node:fs/promises";
import { basename } from "node:path";

// Node 20 flags WASI as experimental on every run; that line is noise in test output.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) => {
  const type = typeof rest[0] === "string" ? rest[0] : rest[0]?.type;
  if (type === "ExperimentalWarning" && String(warning).includes("WASI")) return;
  emitWarning.call(process, warning, ...rest);
};
const { WASI } = await import("node:wasi");

const [program, ...args] = process.argv.slice(2);
if (!program) {
  process.stderr.write("usage: wasi-run.mjs program.wasm [args…]\n");
  process.exit(2);
}

const module = await WebAssembly.compile(await readFile(program));
const wasi = new WASI({
  version: "preview1",
  args: [basename(program), ...args],
  env: process.env,
  returnOnExit: true,
});

const imports = wasi.getImportObject();
for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
  if (from === "wasi_snapshot_preview1" || kind !== "function") continue;
  imports[from] ??= {};
  imports[from][name] = () => {
    throw new Error(`${program}: host function ${from}.${name} called outside a proxy`);
  };
}

const instance = await WebAssembly.instantiate(module, imports);
// The filter's library also exports `_initialize` (the proxy-wasm entry point), which node:wasi
// refuses next to `_start`; a test binary is a command, so only `_start` is offered.
const { _start, memory } = instance.exports;
let code;
try {
  code = wasi.start({ exports: { _start, memory } });
} catch (error) {
  process.stderr.write(`${program}: ${error instanceof WebAssembly.RuntimeError ? "trap: " : ""}${error.message}\n`);
  code = 134;
}
process.exitCode = code;

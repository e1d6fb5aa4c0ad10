//! The TypeScript client (`clients/typescript`) against the binary this build produced: builds
//! it with `tsc` (`npm run build`) and runs its `node --test` suite, which spawns that binary on
//! port 0 with temp databases (CRUD, codegen typing, live resume, offline queue, rooms, shards,
//! password login). Part of `cargo test --workspace`, so the README's one command runs it.
//! Needs Node >= 20 and npm; `.ci/run` installs them and runs `npm ci` first, and this test runs
//! `npm ci` itself when `node_modules` is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients").join("typescript")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs `program args` in the client's directory; panics with its output when it fails.
fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(client_dir())
        .env("PLAZA_BIN", env!("CARGO_BIN_EXE_plaza"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (the TypeScript client needs Node >= 20 and npm): {e}"));
    assert!(out.status.success(), "`{program} {}` failed ({}):\n{}", args.join(" "), out.status, text(&out));
    out
}

#[test]
fn typescript_client_suite_passes_against_the_built_binary() {
    if !client_dir().join("node_modules").join("typescript").exists() {
        run("npm", &["ci", "--no-audit", "--no-fund"]);
    }
    run("npm", &["run", "build"]);
    let out = run("node", &["--test", "--test-concurrency=1", "--test-timeout=180000", "test/"]);
    let report = text(&out);
    // The counts, for the cargo log (the assertion above already failed on any failure).
    for line in report.lines().filter(|l| l.starts_with("# tests") || l.starts_with("# pass") || l.starts_with("# fail")) {
        eprintln!("typescript client: {line}");
    }
    assert!(report.contains("# fail 0"), "node --test reported failures:\n{report}");
}

//! Builds the Socket Monitor page (`web/`) into `OUT_DIR/monitor/`, where `src/ops/monitor.rs`
//! embeds it: `npm ci` when `web/node_modules` is missing or stale, then esbuild bundles
//! `monitor.js` (with the official `socket.io-client`) and `monitor.css`. Cargo runs this again
//! only when a file under `web/src`, `web/package.json`, `web/package-lock.json` or `migrations/`
//! changes, so an unchanged tree costs no npm call at all.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

const NPM_MISSING: &str = "the Socket Monitor is built with npm: install Node.js 20 with npm (https://nodejs.org) and build again";

/// A copy of the lockfile that `node_modules` was installed from, kept inside `node_modules`:
/// when it differs from `package-lock.json`, the dependencies changed and `npm ci` runs again.
const INSTALLED_LOCK: &str = ".craftcode-package-lock.json";

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    for watched in ["src", "package.json", "package-lock.json"] {
        println!("cargo::rerun-if-changed={}", web.join(watched).display());
    }
    // `sqlx::migrate!` embeds `migrations/` at compile time: a new migration must rebuild.
    println!("cargo::rerun-if-changed=migrations");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("monitor");
    if let Err(message) = build(&web, &out) {
        println!("cargo::error={message}");
    }
}

fn build(web: &Path, out: &Path) -> Result<(), String> {
    install(web)?;
    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let esbuild = web
        .join("node_modules")
        .join(".bin")
        .join(if cfg!(windows) {
            "esbuild.cmd"
        } else {
            "esbuild"
        });
    let mut bundle = Command::new(&esbuild);
    bundle
        .current_dir(web)
        .args([
            "src/monitor.js",
            "src/monitor.css",
            "--bundle",
            "--minify",
            "--format=iife",
            "--target=es2020",
            "--log-level=warning",
        ])
        .arg(format!("--outdir={}", out.display()));
    run(
        &mut bundle,
        "esbuild",
        "web/node_modules/.bin/esbuild is missing: delete web/node_modules and build again",
    )?;
    fs::copy(web.join("src/index.html"), out.join("index.html"))
        .map_err(|e| format!("cannot copy web/src/index.html: {e}"))?;
    Ok(())
}

/// `npm ci`, unless `node_modules` was installed from this very lockfile.
fn install(web: &Path) -> Result<(), String> {
    let lock = fs::read(web.join("package-lock.json"))
        .map_err(|e| format!("cannot read web/package-lock.json: {e}"))?;
    let installed = web.join("node_modules").join(INSTALLED_LOCK);
    if fs::read(&installed).is_ok_and(|copy| copy == lock) {
        return Ok(());
    }
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let mut ci = Command::new(npm);
    ci.current_dir(web)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
    run(&mut ci, "npm ci", NPM_MISSING)?;
    fs::write(&installed, &lock).map_err(|e| format!("cannot write {}: {e}", installed.display()))
}

/// Runs a tool, quietly unless it fails; `missing` is the error when the tool does not exist.
fn run(command: &mut Command, name: &str, missing: &str) -> Result<(), String> {
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing.to_owned()),
        Err(e) => {
            return Err(format!(
                "the Socket Monitor build could not start {name}: {e}"
            ));
        }
    };
    if output.status.success() {
        return Ok(());
    }
    // Cargo shows a build script's stderr only with -vv, so the tool's last lines go out as
    // warnings, just before the error.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for line in &lines[lines.len().saturating_sub(40)..] {
        println!("cargo::warning={name}: {line}");
    }
    Err(format!(
        "the Socket Monitor build failed: {name} exited with {} (its output is above)",
        output.status
    ))
}

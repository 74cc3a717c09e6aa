//! `idle`: open N authenticated sockets, hold them, and report the connect rate and what they
//! cost the server in resident memory ((RSS after − RSS before) / N).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::fleet::Fleet;
use crate::stats::{CpuMeter, rss_kib};
use crate::{Common, read_lines};

#[derive(Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// One access token per line; socket i uses line i.
    #[arg(long)]
    tokens: PathBuf,
    /// How many sockets.
    #[arg(short = 'n', long = "sockets")]
    sockets: usize,
    /// Seconds to hold the sockets after the last one connected, before measuring memory.
    #[arg(long, default_value_t = 5)]
    hold: u64,
    /// Stop opening sockets once the server's resident memory passes this many MiB (so a
    /// server that needs too much cannot take the machine down with it).
    #[arg(long, default_value_t = 16384)]
    max_server_rss_mib: u64,
}

pub async fn run(args: IdleArgs) -> crate::Result<Map<String, Value>> {
    let common = &args.common;
    let tokens = read_lines(&args.tokens, args.sockets)?;
    let target = common.target()?;
    let pid = common.server_pid;
    let server_before = rss_kib(pid);
    let own_before = rss_kib(None);
    crate::progress!(
        "idle: opening {} sockets to {} (server RSS {:?} KiB)",
        args.sockets,
        target.addr,
        server_before
    );
    let cpu = CpuMeter::start(pid);
    let own_cpu = CpuMeter::start(Some(std::process::id()));
    let fleet = Arc::new(Fleet::new(
        target,
        common.connect_timeout(),
        common.connect_concurrency,
    ));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::with_capacity(args.sockets);
    for token in tokens.into_iter().take(args.sockets) {
        tasks.push(tokio::spawn(hold(fleet.clone(), token, stopped.clone())));
    }
    let guard = tokio::spawn(memory_guard(
        fleet.clone(),
        pid,
        args.max_server_rss_mib,
        stopped.clone(),
    ));
    let limit =
        common.connect_timeout() * (args.sockets / common.connect_concurrency.max(1) + 2) as u32;
    fleet.wait_attempted(args.sockets, limit).await;
    let connect_cpu = cpu.percent();
    let loadgen_cpu = own_cpu.percent();
    let guard_tripped = fleet.abort.load(Ordering::Relaxed);
    guard.abort();
    crate::progress!(
        "idle: {} connected, {} failed; holding {} s",
        fleet.connected(),
        fleet.failed(),
        args.hold
    );
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let server_after = rss_kib(pid);
    let own_after = rss_kib(None);
    let dropped = fleet.dropped.load(Ordering::Relaxed);
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }

    let mut out = common.result("idle");
    fleet.report(args.sockets, &mut out);
    let connected = fleet.connected().max(1) as f64;
    let per_socket = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) => json!(((a as f64 - b as f64) * 1024.0 / connected).round()),
        _ => Value::Null,
    };
    out.insert("dropped".into(), json!(dropped));
    out.insert("server_rss_before_kib".into(), json!(server_before));
    out.insert("server_rss_after_kib".into(), json!(server_after));
    out.insert(
        "server_rss_per_socket_bytes".into(),
        per_socket(server_before, server_after),
    );
    out.insert(
        "loadgen_rss_per_socket_bytes".into(),
        per_socket(own_before, own_after),
    );
    out.insert("server_cpu_percent_connect".into(), connect_cpu);
    out.insert("loadgen_cpu_percent_connect".into(), loadgen_cpu);
    out.insert(
        "memory_guard_tripped".into(),
        json!(guard_tripped.then_some(args.max_server_rss_mib)),
    );
    out.insert(
        "rx_bytes_per_socket".into(),
        json!((fleet.rx_bytes.load(Ordering::Relaxed) as f64 / connected).round()),
    );
    out.insert(
        "skipped_frames".into(),
        json!(fleet.skipped_frames.load(Ordering::Relaxed)),
    );
    Ok(out)
}

/// Stops the connecting when the server's RSS passes `limit_mib`.
async fn memory_guard(
    fleet: Arc<Fleet>,
    pid: Option<u32>,
    limit_mib: u64,
    stop: watch::Receiver<bool>,
) {
    let Some(pid) = pid else { return };
    while !*stop.borrow() {
        if rss_kib(Some(pid)).is_some_and(|kib| kib / 1024 >= limit_mib) {
            crate::progress!("idle: the server's RSS passed {limit_mib} MiB; no more sockets");
            fleet.abort.store(true, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One socket: connect, then answer pings until told to stop.
async fn hold(fleet: Arc<Fleet>, token: String, mut stop: watch::Receiver<bool>) {
    let Some(mut socket) = fleet.connect(&token).await else {
        return;
    };
    drop(token);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            received = socket.recv() => {
                let alive = match received {
                    Ok(received) => fleet.housekeep(&mut socket, &received).await,
                    Err(_) => false,
                };
                if !alive {
                    fleet.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    fleet.retire(&socket);
}

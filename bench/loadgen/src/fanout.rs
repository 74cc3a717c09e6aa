//! `fanout`: N authenticated sockets; K broadcasts, one after the other, through
//! `POST /api/socket-test {action:"broadcast", message:"<k>"}` with an admin's token. Reports
//! the time from the POST to the last socket's `testMessage` for each broadcast, deliveries per
//! second, and deliveries missing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::client::Received;
use crate::fleet::Fleet;
use crate::http::HttpConnection;
use crate::protocol::{self, Kind, Packet};
use crate::stats::{CpuMeter, Samples, round3};
use crate::{Common, read_lines};

#[derive(Args, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// One access token per line; socket i uses line i.
    #[arg(long)]
    tokens: PathBuf,
    /// How many sockets.
    #[arg(short = 'n', long = "sockets")]
    sockets: usize,
    /// How many broadcasts.
    #[arg(long)]
    broadcasts: usize,
    /// An admin's access token, for `POST /api/socket-test`.
    #[arg(long)]
    admin_token: String,
    /// Seconds between the last socket connecting and the first broadcast (presence settles).
    #[arg(long, default_value_t = 2)]
    settle: u64,
    /// Seconds one broadcast may take to reach every socket.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// Deliveries per broadcast, shared by the sockets.
struct Run {
    fleet: Fleet,
    counts: Vec<AtomicUsize>,
    /// When each broadcast last reached a socket, µs since the fleet's epoch.
    last_us: Vec<AtomicU64>,
}

pub async fn run(args: FanoutArgs) -> crate::Result<Map<String, Value>> {
    let common = &args.common;
    let tokens = read_lines(&args.tokens, args.sockets)?;
    let addr = common.addr()?;
    let run = Arc::new(Run {
        fleet: Fleet::new(
            common.target()?,
            common.connect_timeout(),
            common.connect_concurrency,
        ),
        counts: (0..args.broadcasts).map(|_| AtomicUsize::new(0)).collect(),
        last_us: (0..args.broadcasts).map(|_| AtomicU64::new(0)).collect(),
    });
    crate::progress!(
        "fanout: {} sockets, {} broadcasts",
        args.sockets,
        args.broadcasts
    );
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::with_capacity(args.sockets);
    for token in tokens.into_iter().take(args.sockets) {
        tasks.push(tokio::spawn(listen(run.clone(), token, stopped.clone())));
    }
    let limit =
        common.connect_timeout() * (args.sockets / common.connect_concurrency.max(1) + 2) as u32;
    run.fleet.wait_attempted(args.sockets, limit).await;
    let receivers = run.fleet.connected();
    crate::progress!(
        "fanout: {receivers} connected, {} failed; broadcasting in {} s",
        run.fleet.failed(),
        args.settle
    );
    tokio::time::sleep(Duration::from_secs(args.settle)).await;

    let mut http = HttpConnection::open(addr)
        .await
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    let cpu = CpuMeter::start(common.server_pid);
    let own_cpu = CpuMeter::start(Some(std::process::id()));
    let mut to_last = Samples::default();
    let mut posts = Samples::default();
    let mut busy_us: u64 = 0;
    let mut http_errors = 0u64;
    let mut recipients_reported = 0u64;
    for k in 0..args.broadcasts {
        let started_us = run.fleet.now_us();
        let started = Instant::now();
        let body = json!({ "action": "broadcast", "message": k.to_string() }).to_string();
        match http
            .post_json("/api/socket-test", &args.admin_token, body)
            .await
        {
            Ok((status, body)) if status.is_success() => {
                posts.record(started.elapsed());
                recipients_reported += serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|b| b.get("recipients").and_then(Value::as_u64))
                    .unwrap_or(0);
            }
            Ok((status, body)) => {
                http_errors += 1;
                crate::progress!(
                    "fanout: broadcast {k} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                continue;
            }
            Err(e) => {
                http_errors += 1;
                crate::progress!("fanout: broadcast {k} failed: {e}");
                http = HttpConnection::open(addr)
                    .await
                    .map_err(|e| format!("cannot reach {addr}: {e}"))?;
                continue;
            }
        }
        let deadline = started + Duration::from_secs(args.timeout);
        while run.counts[k].load(Ordering::Relaxed) < receivers && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if run.counts[k].load(Ordering::Relaxed) > 0 {
            let took = run.last_us[k]
                .load(Ordering::Relaxed)
                .saturating_sub(started_us);
            to_last.record_us(took);
            busy_us += took;
        }
    }
    let cpu_percent = cpu.percent();
    let loadgen_cpu = own_cpu.percent();
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }

    let delivered: usize = run.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let expected = receivers * args.broadcasts;
    let mut out = common.result("fanout");
    run.fleet.report(args.sockets, &mut out);
    out.insert("broadcasts".into(), json!(args.broadcasts));
    out.insert("expected".into(), json!(expected));
    out.insert("delivered".into(), json!(delivered));
    out.insert("missing".into(), json!(expected.saturating_sub(delivered)));
    out.insert("recipients_reported".into(), json!(recipients_reported));
    out.insert("http_errors".into(), json!(http_errors));
    out.insert(
        "deliveries_per_sec".into(),
        if busy_us > 0 {
            json!(round3(delivered as f64 / (busy_us as f64 / 1e6)))
        } else {
            Value::Null
        },
    );
    to_last.report("to_last", &mut out);
    posts.report("post", &mut out);
    out.insert("server_cpu_percent".into(), cpu_percent);
    out.insert("loadgen_cpu_percent".into(), loadgen_cpu);
    out.insert(
        "dropped".into(),
        json!(run.fleet.dropped.load(Ordering::Relaxed)),
    );
    Ok(out)
}

/// One socket: counts the `testMessage`s it gets until told to stop.
async fn listen(run: Arc<Run>, token: String, mut stop: watch::Receiver<bool>) {
    let Some(mut socket) = run.fleet.connect(&token).await else {
        return;
    };
    drop(token);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            received = socket.recv() => {
                let Ok(received) = received else {
                    run.fleet.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                if let Received::Frame(text) = &received {
                    count_broadcast(&run, text);
                }
                if !run.fleet.housekeep(&mut socket, &received).await {
                    run.fleet.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    run.fleet.retire(&socket);
}

fn count_broadcast(run: &Run, text: &str) {
    let Ok(Packet::Socket(packet)) = protocol::decode(text) else {
        return;
    };
    if packet.kind != Kind::Event || protocol::event_name(packet.data) != Some("testMessage") {
        return;
    }
    let now = run.fleet.now_us();
    let k = protocol::arguments(&packet).ok().and_then(|args| {
        args.first()?
            .get("message")?
            .as_str()?
            .parse::<usize>()
            .ok()
    });
    if let Some(k) = k.filter(|k| *k < run.counts.len()) {
        run.counts[k].fetch_add(1, Ordering::Relaxed);
        run.last_us[k].fetch_max(now, Ordering::Relaxed);
    }
}

//! `rest`: M `POST /api/messages/send/{id}` over C keep-alive connections, each request from
//! the next user in the tokens file (round robin, so no user nears the per-user rate limit) to
//! the user after them. Reports throughput, latency percentiles and the statuses answered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Args;
use serde_json::{Map, Value, json};

use crate::fleet::lock;
use crate::http::HttpConnection;
use crate::stats::{CpuMeter, Samples, round3};
use crate::{Common, read_lines};

#[derive(Args, Debug)]
pub struct RestArgs {
    #[command(flatten)]
    pub common: Common,
    /// One access token per line.
    #[arg(long)]
    tokens: PathBuf,
    /// The user ids, in the same order.
    #[arg(long)]
    ids: PathBuf,
    /// How many requests in all.
    #[arg(long)]
    requests: usize,
    /// Connections, each with one request in flight.
    #[arg(long)]
    concurrency: usize,
}

/// What the workers share.
struct Run {
    tokens: Vec<String>,
    ids: Vec<String>,
    next: AtomicUsize,
    requests: usize,
    nonce: u128,
    outcome: Mutex<Outcome>,
}

#[derive(Default)]
struct Outcome {
    statuses: BTreeMap<String, u64>,
    latency: Samples,
}

pub async fn run(args: RestArgs) -> crate::Result<Map<String, Value>> {
    let common = &args.common;
    let tokens = read_lines(&args.tokens, 2)?;
    let ids = read_lines(&args.ids, tokens.len())?;
    let addr = common.addr()?;
    let concurrency = args.concurrency.max(1);
    let run = Arc::new(Run {
        tokens,
        ids,
        next: AtomicUsize::new(0),
        requests: args.requests,
        nonce: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
        outcome: Mutex::default(),
    });
    crate::progress!(
        "rest: {} requests over {concurrency} connections, {} users",
        args.requests,
        run.tokens.len()
    );
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(
            HttpConnection::open(addr)
                .await
                .map_err(|e| format!("cannot reach {addr}: {e}"))?,
        );
    }
    let cpu = CpuMeter::start(common.server_pid);
    let own_cpu = CpuMeter::start(Some(std::process::id()));
    let started = Instant::now();
    let workers: Vec<_> = connections
        .into_iter()
        .map(|connection| tokio::spawn(worker(run.clone(), addr, connection)))
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_percent = cpu.percent();
    let loadgen_cpu = own_cpu.percent();

    let outcome = std::mem::take(&mut *lock(&run.outcome));
    let completed = outcome.latency.len();
    let ok: u64 = outcome
        .statuses
        .iter()
        .filter(|(status, _)| status.starts_with('2'))
        .map(|(_, n)| n)
        .sum();
    let mut out = common.result("rest");
    out.insert("requests".into(), json!(args.requests));
    out.insert("concurrency".into(), json!(concurrency));
    out.insert("completed".into(), json!(completed));
    out.insert("ok".into(), json!(ok));
    out.insert("statuses".into(), json!(outcome.statuses));
    out.insert("secs".into(), json!(round3(secs)));
    out.insert(
        "throughput".into(),
        json!(round3(completed as f64 / secs.max(1e-9))),
    );
    outcome.latency.report("latency", &mut out);
    out.insert("server_cpu_percent".into(), cpu_percent);
    out.insert("loadgen_cpu_percent".into(), loadgen_cpu);
    Ok(out)
}

async fn worker(run: Arc<Run>, addr: std::net::SocketAddr, mut connection: HttpConnection) {
    let users = run.tokens.len();
    loop {
        let i = run.next.fetch_add(1, Ordering::Relaxed);
        if i >= run.requests {
            break;
        }
        let sender = i % users;
        let recipient = (sender + 1) % users;
        let path = format!("/api/messages/send/{}", run.ids[recipient]);
        let body = json!({
            "content": "load test message",
            "clientId": format!("{:x}:rest:{i}", run.nonce),
        })
        .to_string();
        let started = Instant::now();
        let result = connection.post_json(&path, &run.tokens[sender], body).await;
        let elapsed = started.elapsed();
        let status = match &result {
            Ok((status, _)) => status.as_u16().to_string(),
            Err(_) => "io_error".to_owned(),
        };
        {
            let mut outcome = lock(&run.outcome);
            if result.is_ok() {
                outcome.latency.record(elapsed);
            }
            *outcome.statuses.entry(status).or_default() += 1;
        }
        if let Err(e) = result {
            crate::progress!("rest: request {i} failed: {e}; reconnecting");
            match HttpConnection::open(addr).await {
                Ok(fresh) => connection = fresh,
                Err(_) => break,
            }
        }
    }
}

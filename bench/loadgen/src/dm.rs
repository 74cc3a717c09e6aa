//! `dm`: P pairs of users, each user sending `sendMessage` (with an ack) to the other, all of
//! them together at R messages per second, for S seconds. The recipient's `newMessage` is
//! acknowledged (so the server marks it delivered) and timed against the send time carried in the
//! message's `clientId`. Lost = acknowledged `ok:true` to its sender but never received as
//! `newMessage` before the drain timeout.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

use crate::client::{Received, Socket};
use crate::fleet::{Fleet, lock};
use crate::protocol::{self, Kind, Packet};
use crate::stats::{CpuMeter, Samples, round3, rss_kib};
use crate::{Common, read_lines};

#[derive(Args, Debug)]
pub struct DmArgs {
    #[command(flatten)]
    pub common: Common,
    /// One access token per line; users 0 and 1 are the first pair, 2 and 3 the second, …
    #[arg(long)]
    tokens: PathBuf,
    /// The user ids, in the same order.
    #[arg(long)]
    ids: PathBuf,
    /// How many pairs of users.
    #[arg(long)]
    pairs: usize,
    /// Messages per second, all users together (each user sends rate / (2 × pairs)).
    #[arg(long)]
    rate: f64,
    /// Seconds of sending.
    #[arg(long)]
    duration: f64,
    /// After sending, wait for the last acks and deliveries while they keep coming: until
    /// this many seconds pass without one...
    #[arg(long, default_value_t = 10)]
    drain: u64,
    /// ...or this many seconds in all.
    #[arg(long, default_value_t = 120)]
    drain_max: u64,
    /// Seconds between the last socket connecting and the first message (presence settles).
    #[arg(long, default_value_t = 2)]
    settle: u64,
}

/// Where the run is; every socket task watches it (`group` runs the same way).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Phase {
    Connecting,
    Sending { start: Instant, deadline: Instant },
    Stop,
}

/// Counts and samples shared by the sockets of one run.
struct Run {
    fleet: Fleet,
    /// Marks this run's `clientId`s, so messages of another run are not counted.
    nonce: String,
    /// Whether each user's socket is connected (nobody sends to an absent partner).
    online: Vec<AtomicBool>,
    sent: AtomicU64,
    /// Acks received, whatever they said.
    acks: AtomicU64,
    acked_ok: AtomicU64,
    delivered: AtomicU64,
    /// When the last ack arrived, µs since the fleet's epoch.
    last_ack_us: AtomicU64,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    /// Messages acknowledged `ok:true` (sender << 32 | sequence).
    acked: HashSet<u64>,
    /// Messages received as `newMessage`, same keys.
    received: HashSet<u64>,
    duplicates: u64,
    errors: BTreeMap<String, u64>,
    delivery: Samples,
    ack: Samples,
}

fn key(sender: usize, seq: u32) -> u64 {
    ((sender as u64) << 32) | u64::from(seq)
}

pub async fn run(args: DmArgs) -> crate::Result<Map<String, Value>> {
    let common = &args.common;
    let users = args.pairs * 2;
    if users == 0 || args.rate <= 0.0 || args.duration <= 0.0 {
        return Err("--pairs, --rate and --duration must be positive".to_owned());
    }
    let tokens = read_lines(&args.tokens, users)?;
    let ids = read_lines(&args.ids, users)?;
    let pid = common.server_pid;
    let run = Arc::new(Run {
        fleet: Fleet::new(
            common.target()?,
            common.connect_timeout(),
            common.connect_concurrency,
        ),
        nonce: run_nonce(),
        online: (0..users).map(|_| AtomicBool::new(false)).collect(),
        sent: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        acked_ok: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        last_ack_us: AtomicU64::new(0),
        tally: Mutex::default(),
    });
    // Every user sends, so each one's period is users / rate; their first sends are spread
    // evenly over one period.
    let period = Duration::from_secs_f64(users as f64 / args.rate);
    crate::progress!(
        "dm: {} pairs, {} msg/s in all ({:.1} per user), {} s",
        args.pairs,
        args.rate,
        args.rate / users as f64,
        args.duration
    );
    let (phase, watching) = watch::channel(Phase::Connecting);
    let mut tasks = Vec::with_capacity(users);
    for (user, token) in tokens.into_iter().take(users).enumerate() {
        let partner = user ^ 1;
        let me = User {
            index: user,
            partner,
            partner_id: ids[partner].clone(),
            period,
            offset: period.mul_f64(user as f64 / users as f64),
        };
        tasks.push(tokio::spawn(user_socket(
            run.clone(),
            me,
            token,
            watching.clone(),
        )));
    }
    let limit = common.connect_timeout() * (users / common.connect_concurrency.max(1) + 2) as u32;
    run.fleet.wait_attempted(users, limit).await;
    crate::progress!(
        "dm: {} connected, {} failed; sending in {} s",
        run.fleet.connected(),
        run.fleet.failed(),
        args.settle
    );
    tokio::time::sleep(Duration::from_secs(args.settle)).await;

    let cpu = CpuMeter::start(pid);
    let own_cpu = CpuMeter::start(Some(std::process::id()));
    let start = Instant::now() + Duration::from_millis(50);
    let start_us = run.fleet.now_us() + 50_000;
    let deadline = start + Duration::from_secs_f64(args.duration);
    let _ = phase.send(Phase::Sending { start, deadline });
    tokio::time::sleep_until(deadline.into()).await;
    let send_cpu = cpu.percent();
    let loadgen_cpu = own_cpu.percent();
    let sent_in_window = run.sent.load(Ordering::Relaxed);
    crate::progress!(
        "dm: sent {sent_in_window}, {} acked so far; draining",
        run.acks.load(Ordering::Relaxed)
    );
    let drain_started = Instant::now();
    let mut last_progress = (Instant::now(), 0u64);
    loop {
        let sent = run.sent.load(Ordering::Relaxed);
        let acks = run.acks.load(Ordering::Relaxed);
        let delivered = run.delivered.load(Ordering::Relaxed);
        if acks >= sent && delivered >= run.acked_ok.load(Ordering::Relaxed) {
            break;
        }
        if acks + delivered != last_progress.1 {
            last_progress = (Instant::now(), acks + delivered);
        }
        if last_progress.0.elapsed() >= Duration::from_secs(args.drain)
            || drain_started.elapsed() >= Duration::from_secs(args.drain_max)
        {
            crate::progress!("dm: gave up draining with {acks} of {sent} acked");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let server_rss = rss_kib(pid);
    let _ = phase.send(Phase::Stop);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }

    let mut out = common.result("dm");
    out.insert("pairs".into(), json!(args.pairs));
    out.insert("rate_target".into(), json!(args.rate));
    out.insert("duration_secs".into(), json!(args.duration));
    run.fleet.report(users, &mut out);
    let sent = run.sent.load(Ordering::Relaxed);
    let acks = run.acks.load(Ordering::Relaxed);
    let mut tally = std::mem::take(&mut *lock(&run.tally));
    let lost = tally
        .acked
        .iter()
        .filter(|k| !tally.received.contains(k))
        .count();
    let errors: u64 = tally.errors.values().sum();
    out.insert("sent".into(), json!(sent));
    out.insert(
        "send_rate".into(),
        json!(round3(sent as f64 / args.duration)),
    );
    out.insert("acked".into(), json!(run.acked_ok.load(Ordering::Relaxed)));
    out.insert("errors".into(), json!(errors));
    out.insert("error_codes".into(), json!(tally.errors));
    out.insert("unacked".into(), json!(sent.saturating_sub(acks)));
    out.insert(
        "delivered".into(),
        json!(run.delivered.load(Ordering::Relaxed)),
    );
    out.insert("duplicates".into(), json!(tally.duplicates));
    out.insert("lost".into(), json!(lost));
    std::mem::take(&mut tally.delivery).report("delivery", &mut out);
    std::mem::take(&mut tally.ack).report("ack", &mut out);
    let acked_ok = run.acked_ok.load(Ordering::Relaxed);
    let last_ack_us = run.last_ack_us.load(Ordering::Relaxed);
    out.insert(
        "stored_rate".into(),
        if last_ack_us > start_us {
            json!(round3(
                acked_ok as f64 / ((last_ack_us - start_us) as f64 / 1e6)
            ))
        } else {
            Value::Null
        },
    );
    out.insert("drain_secs".into(), json!(round3(drain_secs)));
    out.insert("server_cpu_percent".into(), send_cpu);
    out.insert("loadgen_cpu_percent".into(), loadgen_cpu);
    out.insert("server_rss_kib".into(), json!(server_rss));
    out.insert(
        "dropped".into(),
        json!(run.fleet.dropped.load(Ordering::Relaxed)),
    );
    Ok(out)
}

/// One user of a pair.
struct User {
    index: usize,
    partner: usize,
    partner_id: String,
    period: Duration,
    offset: Duration,
}

/// Ticks of an interval once sending has started; never before.
pub(crate) async fn next_tick(ticks: &mut Option<Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn user_socket(run: Arc<Run>, me: User, token: String, mut phase: watch::Receiver<Phase>) {
    let Some(mut socket) = run.fleet.connect(&token).await else {
        return;
    };
    drop(token);
    run.online[me.index].store(true, Ordering::Relaxed);
    // Sends waiting for their ack: (ack id, sequence, send time in µs).
    let mut pending: Vec<(u64, u32, u64)> = Vec::new();
    let mut seq: u32 = 0;
    let mut ticks: Option<Interval> = None;
    let mut deadline = Instant::now();
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                match *phase.borrow_and_update() {
                    Phase::Sending { start, deadline: end } => {
                        let mut interval = tokio::time::interval_at((start + me.offset).into(), me.period);
                        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                        ticks = Some(interval);
                        deadline = end;
                    }
                    Phase::Stop => break,
                    Phase::Connecting => {}
                }
            }
            _ = next_tick(&mut ticks) => {
                if Instant::now() >= deadline {
                    ticks = None;
                    continue;
                }
                if !run.online[me.partner].load(Ordering::Relaxed) {
                    continue;
                }
                seq += 1;
                let sent_at = run.fleet.now_us();
                let client_id = format!("{}:{}:{seq}:{sent_at}", run.nonce, me.index);
                let data = json!({
                    "to": me.partner_id,
                    "content": "load test message",
                    "clientId": client_id,
                });
                match socket.emit_with_ack("sendMessage", &data).await {
                    Ok(id) => {
                        pending.push((id, seq, sent_at));
                        run.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        run.fleet.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            received = socket.recv() => {
                let Ok(received) = received else {
                    run.fleet.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                if let Received::Frame(text) = &received
                    && on_frame(&run, &me, &mut socket, text, &mut pending).await.is_err()
                {
                    run.fleet.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
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

/// Acks of this user's sends and `newMessage`s for them.
async fn on_frame(
    run: &Run,
    me: &User,
    socket: &mut Socket,
    text: &str,
    pending: &mut Vec<(u64, u32, u64)>,
) -> std::io::Result<()> {
    let Ok(Packet::Socket(packet)) = protocol::decode(text) else {
        return Ok(());
    };
    match packet.kind {
        Kind::Ack => {
            let Some(at) = packet
                .id
                .and_then(|id| pending.iter().position(|p| p.0 == id))
            else {
                return Ok(());
            };
            let (_, seq, sent_at) = pending.swap_remove(at);
            let latency = run.fleet.now_us().saturating_sub(sent_at);
            let answer = protocol::first_argument(&packet);
            run.acks.fetch_add(1, Ordering::Relaxed);
            run.last_ack_us
                .fetch_max(run.fleet.now_us(), Ordering::Relaxed);
            let mut tally = lock(&run.tally);
            tally.ack.record_us(latency);
            if answer.get("ok") == Some(&Value::Bool(true)) {
                run.acked_ok.fetch_add(1, Ordering::Relaxed);
                tally.acked.insert(key(me.index, seq));
            } else {
                let code = answer
                    .pointer("/error/code")
                    .and_then(Value::as_str)
                    .unwrap_or("no_answer")
                    .to_owned();
                *tally.errors.entry(code).or_default() += 1;
            }
        }
        Kind::Event if protocol::event_name(packet.data) == Some("newMessage") => {
            let now = run.fleet.now_us();
            if let Ok(args) = protocol::arguments(&packet)
                && let Some(client_id) = args
                    .first()
                    .and_then(|a| a.pointer("/message/clientId"))
                    .and_then(Value::as_str)
                && let Some((sender, seq, sent_at)) = parse_client_id(client_id, &run.nonce)
            {
                let mut tally = lock(&run.tally);
                if tally.received.insert(key(sender, seq)) {
                    run.delivered.fetch_add(1, Ordering::Relaxed);
                    tally.delivery.record_us(now.saturating_sub(sent_at));
                } else {
                    tally.duplicates += 1;
                }
            }
            if let Some(id) = packet.id {
                socket
                    .send(&protocol::ack("/", id, &[&json!({ "ok": true })]))
                    .await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A mark for this run's `clientId`s: the start time in ms, in hex.
pub(crate) fn run_nonce() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:x}", now.as_millis())
}

/// `<nonce>:<sender>:<seq>:<sent at µs>` of this run.
pub(crate) fn parse_client_id(client_id: &str, nonce: &str) -> Option<(usize, u32, u64)> {
    let mut parts = client_id.split(':');
    if parts.next()? != nonce {
        return None;
    }
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent_at = parts.next()?.parse().ok()?;
    Some((sender, seq, sent_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_of_this_run_carry_sender_sequence_and_send_time() {
        assert_eq!(
            parse_client_id("ab12:7:3:123456", "ab12"),
            Some((7, 3, 123456))
        );
        assert_eq!(parse_client_id("ffff:7:3:123456", "ab12"), None);
        assert_eq!(parse_client_id("ab12:7:x:1", "ab12"), None);
        assert_eq!(parse_client_id("ab12", "ab12"), None);
    }
}

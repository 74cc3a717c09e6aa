//! `group`: G groups of M members each (users 0..M the first group, M..2M the second, …), made
//! through `POST /api/conversations` by each group's first member, every member connected, all
//! of them together sending `sendMessage {conversationId}` (with an ack) at R messages per second
//! for S seconds. Each message should reach the M − 1 other members as `newMessage`; the latency
//! that counts is the one at the last of them. Lost = acknowledged `ok:true` to its sender but
//! not received by every other member before the drain timeout.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

use crate::client::{Received, Socket};
use crate::dm::{Phase, next_tick};
use crate::fleet::{Fleet, lock};
use crate::http::HttpConnection;
use crate::protocol::{self, Kind, Packet};
use crate::stats::{CpuMeter, Samples, round3, rss_kib};
use crate::{Common, read_lines};

#[derive(Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    pub common: Common,
    /// One access token per line.
    #[arg(long)]
    tokens: PathBuf,
    /// The user ids, in the same order.
    #[arg(long)]
    ids: PathBuf,
    /// How many groups.
    #[arg(long)]
    groups: usize,
    /// Members of each group (the server's GROUP_MAX_MEMBERS must allow them).
    #[arg(long)]
    members: usize,
    /// Messages per second, all members of all groups together.
    #[arg(long)]
    rate: f64,
    /// Seconds of sending.
    #[arg(long)]
    duration: f64,
    /// After sending, wait while acks and deliveries keep coming: until this many seconds pass
    /// without one...
    #[arg(long, default_value_t = 10)]
    drain: u64,
    /// ...or this many seconds in all.
    #[arg(long, default_value_t = 120)]
    drain_max: u64,
    /// Seconds between the last socket connecting and the first message.
    #[arg(long, default_value_t = 2)]
    settle: u64,
}

struct Run {
    fleet: Fleet,
    nonce: String,
    /// Each group's conversation id.
    conversations: Vec<String>,
    members: usize,
    sent: AtomicU64,
    acks: AtomicU64,
    acked_ok: AtomicU64,
    /// Every `newMessage` of this run, at any member.
    deliveries: AtomicU64,
    /// When the last delivery arrived, µs since the fleet's epoch.
    last_delivery_us: AtomicU64,
    /// `newMessage`s of this run at a socket that is no other member of the sender's group.
    misdelivered: AtomicU64,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    /// Messages acknowledged `ok:true`: (sender << 32 | sequence) → send time.
    acked: HashMap<u64, u64>,
    /// Per message, how many members got it and when the last one did (µs).
    received: HashMap<u64, (usize, u64)>,
    errors: BTreeMap<String, u64>,
    ack: Samples,
}

fn key(sender: usize, seq: u32) -> u64 {
    ((sender as u64) << 32) | u64::from(seq)
}

pub async fn run(args: GroupArgs) -> crate::Result<Map<String, Value>> {
    let common = &args.common;
    let users = args.groups * args.members;
    if args.groups == 0 || args.members < 2 || args.rate <= 0.0 || args.duration <= 0.0 {
        return Err(
            "--groups, --rate and --duration must be positive, --members at least 2".to_owned(),
        );
    }
    let tokens = read_lines(&args.tokens, users)?;
    let ids = read_lines(&args.ids, users)?;
    let pid = common.server_pid;
    crate::progress!(
        "group: making {} groups of {} members",
        args.groups,
        args.members
    );
    let conversations = make_groups(common, &tokens, &ids, args.groups, args.members).await?;
    let run = Arc::new(Run {
        fleet: Fleet::new(
            common.target()?,
            common.connect_timeout(),
            common.connect_concurrency,
        ),
        nonce: crate::dm::run_nonce(),
        conversations,
        members: args.members,
        sent: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        acked_ok: AtomicU64::new(0),
        deliveries: AtomicU64::new(0),
        last_delivery_us: AtomicU64::new(0),
        misdelivered: AtomicU64::new(0),
        tally: Mutex::default(),
    });
    let period = Duration::from_secs_f64(users as f64 / args.rate);
    crate::progress!(
        "group: {} sockets, {} msg/s in all ({:.2} per user), {} s",
        users,
        args.rate,
        args.rate / users as f64,
        args.duration
    );
    let (phase, watching) = watch::channel(Phase::Connecting);
    let mut tasks = Vec::with_capacity(users);
    for (user, token) in tokens.into_iter().take(users).enumerate() {
        let me = Member {
            index: user,
            group: user / args.members,
            period,
            offset: period.mul_f64(user as f64 / users as f64),
        };
        tasks.push(tokio::spawn(member_socket(
            run.clone(),
            me,
            token,
            watching.clone(),
        )));
    }
    let limit = common.connect_timeout() * (users / common.connect_concurrency.max(1) + 2) as u32;
    run.fleet.wait_attempted(users, limit).await;
    crate::progress!(
        "group: {} connected, {} failed; sending in {} s",
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
    let expected_each = (args.members - 1) as u64;
    let drain_started = Instant::now();
    let mut last_progress = (Instant::now(), 0u64);
    loop {
        let sent = run.sent.load(Ordering::Relaxed);
        let acks = run.acks.load(Ordering::Relaxed);
        let deliveries = run.deliveries.load(Ordering::Relaxed);
        if acks >= sent && deliveries >= run.acked_ok.load(Ordering::Relaxed) * expected_each {
            break;
        }
        if acks + deliveries != last_progress.1 {
            last_progress = (Instant::now(), acks + deliveries);
        }
        if last_progress.0.elapsed() >= Duration::from_secs(args.drain)
            || drain_started.elapsed() >= Duration::from_secs(args.drain_max)
        {
            crate::progress!("group: gave up draining with {acks} of {sent} acked");
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

    let mut out = common.result("group");
    out.insert("groups".into(), json!(args.groups));
    out.insert("members".into(), json!(args.members));
    out.insert("rate_target".into(), json!(args.rate));
    out.insert("duration_secs".into(), json!(args.duration));
    run.fleet.report(users, &mut out);
    let sent = run.sent.load(Ordering::Relaxed);
    let acks = run.acks.load(Ordering::Relaxed);
    let deliveries = run.deliveries.load(Ordering::Relaxed);
    let mut tally = std::mem::take(&mut *lock(&run.tally));
    let mut last_member = Samples::default();
    let mut lost = 0u64;
    for (key, sent_at) in &tally.acked {
        match tally.received.get(key) {
            Some((count, last_at)) if *count as u64 >= expected_each => {
                last_member.record_us(last_at.saturating_sub(*sent_at));
            }
            _ => lost += 1,
        }
    }
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
    out.insert("deliveries".into(), json!(deliveries));
    out.insert(
        "deliveries_expected".into(),
        json!(run.acked_ok.load(Ordering::Relaxed) * expected_each),
    );
    let last_delivery_us = run.last_delivery_us.load(Ordering::Relaxed);
    out.insert(
        "delivery_rate".into(),
        if last_delivery_us > start_us {
            json!(round3(
                deliveries as f64 / ((last_delivery_us - start_us) as f64 / 1e6)
            ))
        } else {
            Value::Null
        },
    );
    out.insert("lost".into(), json!(lost));
    out.insert(
        "misdelivered".into(),
        json!(run.misdelivered.load(Ordering::Relaxed)),
    );
    last_member.report("last_member", &mut out);
    std::mem::take(&mut tally.ack).report("ack", &mut out);
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

/// Each group made by its first member with the others; answers the conversation ids.
async fn make_groups(
    common: &Common,
    tokens: &[String],
    ids: &[String],
    groups: usize,
    members: usize,
) -> crate::Result<Vec<String>> {
    let mut http = HttpConnection::open(common.addr()?)
        .await
        .map_err(|e| format!("cannot reach the server: {e}"))?;
    let mut conversations = Vec::with_capacity(groups);
    for group in 0..groups {
        let first = group * members;
        let others = &ids[first + 1..first + members];
        let body = json!({ "title": format!("bench group {group}"), "memberIds": others });
        let (status, answer) = http
            .post_json("/api/conversations", &tokens[first], body.to_string())
            .await
            .map_err(|e| format!("POST /api/conversations failed: {e}"))?;
        let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        let Some(id) = answer.pointer("/conversation/id").and_then(Value::as_str) else {
            return Err(format!(
                "POST /api/conversations answered {status}: {answer}"
            ));
        };
        conversations.push(id.to_owned());
    }
    Ok(conversations)
}

struct Member {
    index: usize,
    group: usize,
    period: Duration,
    offset: Duration,
}

async fn member_socket(
    run: Arc<Run>,
    me: Member,
    token: String,
    mut phase: watch::Receiver<Phase>,
) {
    let Some(mut socket) = run.fleet.connect(&token).await else {
        return;
    };
    drop(token);
    let conversation = run.conversations[me.group].clone();
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
                seq += 1;
                let sent_at = run.fleet.now_us();
                let client_id = format!("{}:{}:{seq}:{sent_at}", run.nonce, me.index);
                let data = json!({
                    "conversationId": conversation,
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

async fn on_frame(
    run: &Run,
    me: &Member,
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
            let mut tally = lock(&run.tally);
            tally.ack.record_us(latency);
            if answer.get("ok") == Some(&Value::Bool(true)) {
                run.acked_ok.fetch_add(1, Ordering::Relaxed);
                tally.acked.insert(key(me.index, seq), sent_at);
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
                && let Some((sender, seq, _)) = crate::dm::parse_client_id(client_id, &run.nonce)
            {
                if sender / run.members != me.group || sender == me.index {
                    // Another group's message, or one's own: the server sent it to the wrong socket.
                    run.misdelivered.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                run.deliveries.fetch_add(1, Ordering::Relaxed);
                run.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                let mut tally = lock(&run.tally);
                let entry = tally.received.entry(key(sender, seq)).or_insert((0, 0));
                entry.0 += 1;
                entry.1 = entry.1.max(now);
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

//! `presence`: scoped presence under churn (issue 16). The users of the tokens and ids files,
//! seeded with `craftcode seed --partners K`, form a ring in the ids file's order: user i's
//! conversation partners are the K/2 users before it and the K/2 after it, cyclically. Sockets
//! connect in steps (users 0..n₁, then up to n₂, …; contiguous, so nearly every online user has
//! all its partners online). At each step a churn of users disconnects, stays away for a while
//! and reconnects, at a rate proportional to the online count, so every user comes and goes
//! equally often at every step. A window of steady churn then measures what one presence change
//! costs: bytes told to the watchers, the server's CPU, and the bytes each socket receives.
//! Scoped presence keeps the per-socket figures flat as the steps grow; a broadcast to everyone
//! would grow them with the online count.
//!
//! Counts, never timings, tell whether the server was right: every `presenceChanged` and welcome
//! `getOnlineUsers` a socket in scope `watched` receives may only name its partners, no socket
//! may hear about its own user, and after each step's churn every socket's view of its partners
//! (its welcome list plus the changes since) must come to match who is online.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;

use crate::client::Received;
use crate::fleet::Fleet;
use crate::protocol::{self, Kind, Packet};
use crate::stats::{cpu_time, round3, rss_kib};
use crate::{Common, read_lines};

#[derive(Args, Debug)]
pub struct PresenceArgs {
    #[command(flatten)]
    pub common: Common,
    /// One access token per line, of users seeded with `craftcode seed --partners K`.
    #[arg(long)]
    tokens: PathBuf,
    /// The user ids, in the same order; the whole file is the ring of partners.
    #[arg(long)]
    ids: PathBuf,
    /// Conversation partners per user, as seeded (even, 2 to 64).
    #[arg(long, default_value_t = 20)]
    partners: usize,
    /// Online counts to measure at, ascending and comma-separated; the last at most the users
    /// in the files.
    #[arg(long, value_delimiter = ',', required = true)]
    steps: Vec<usize>,
    /// Users reconnecting per second when every user of the ring is online; a step with n
    /// online churns rate × n / ring users.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Seconds a churned user stays away before reconnecting: longer than PRESENCE_INTERVAL, so
    /// its going and its coming back are two changes the watchers are told about.
    #[arg(long, default_value_t = 2.0)]
    offline: f64,
    /// Seconds measured at each step, once the churn is steady.
    #[arg(long, default_value_t = 20.0)]
    window: f64,
    /// Seconds between a step's sockets connecting and its churn (their presence settles).
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// The server's PRESENCE_INTERVAL in seconds: the churn runs this much longer than the time
    /// a user stays away before the window opens, so the window sees a steady state.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Seconds every socket's view of its partners may take to match who is online, once a
    /// step's churn is over.
    #[arg(long, default_value_t = 15)]
    converge: u64,
}

/// Sockets reconnected at once to leave scope `all` (few, so the online count stays above
/// PRESENCE_BROADCAST_MAX while they are away).
const RESCOPE_BATCH: usize = 16;

/// A socket's presence scope, from its welcome `getOnlineUsers`.
const SCOPE_NONE: u8 = 0;
const SCOPE_ALL: u8 = 1;
const SCOPE_WATCHED: u8 = 2;
/// A welcome list without a `scope` (a server from before scoped presence).
const SCOPE_UNSAID: u8 = 3;

/// Who partners whom: user i's partners are i−half … i−1 and i+1 … i+half, modulo `users`.
/// A socket's view of its partners is a bit mask: bits 0..half the ones before it (nearest
/// first), bits half..2·half the ones after it.
#[derive(Debug, Clone, Copy)]
struct Ring {
    users: usize,
    half: usize,
}

impl Ring {
    /// The bit of `j` in user `i`'s partner mask, or `None` when `j` is not its partner.
    fn partner(&self, i: usize, j: usize) -> Option<usize> {
        let after = (j + self.users - i) % self.users;
        let before = (i + self.users - j) % self.users;
        if (1..=self.half).contains(&after) {
            Some(self.half + after - 1)
        } else if (1..=self.half).contains(&before) {
            Some(before - 1)
        } else {
            None
        }
    }

    /// The user at `bit` of user `i`'s partner mask.
    fn partner_at(&self, i: usize, bit: usize) -> usize {
        if bit < self.half {
            (i + self.users - (bit + 1)) % self.users
        } else {
            (i + bit - self.half + 1) % self.users
        }
    }
}

/// One user of the ring and its socket, as the controller sees them.
#[derive(Default)]
struct Slot {
    /// The user's socket is connected.
    online: AtomicBool,
    /// The controller told the user to reconnect and it has not tried yet.
    churning: AtomicBool,
    /// How long to stay away when told to reconnect, in ms.
    away_ms: AtomicU32,
    /// Tells the user's task to reconnect.
    kick: Notify,
    scope: AtomicU8,
    /// What the socket was told of its partners: a bit set while it was told one is online.
    view: AtomicU64,
}

/// Running totals, read at the edges of each window.
#[derive(Default)]
struct Counts {
    /// Bytes every socket received, websocket framing included, as they arrive.
    rx_bytes: AtomicU64,
    presence_frames: AtomicU64,
    /// Bytes of those frames, websocket header included.
    presence_bytes: AtomicU64,
    /// Users named in them, online and offline.
    presence_entries: AtomicU64,
    welcome_frames: AtomicU64,
    welcome_bytes: AtomicU64,
    /// Sockets closed by the churn.
    disconnects: AtomicU64,
    /// Users named to a socket that does not watch them (not a partner, scope not `all`).
    outside_partners: AtomicU64,
    /// Users named to their own socket (but in a welcome list of scope `all`, which names
    /// every online user).
    about_self: AtomicU64,
}

/// What the sockets share.
struct Run {
    /// First connections.
    fleet: Fleet,
    /// Reconnections after the churn.
    rejoins: Fleet,
    ring: Ring,
    /// User id → position in the ring.
    index: HashMap<String, usize>,
    slots: Vec<Slot>,
    online: AtomicUsize,
    counts: Counts,
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    rx_bytes: u64,
    presence_frames: u64,
    presence_bytes: u64,
    presence_entries: u64,
    welcome_bytes: u64,
    disconnects: u64,
    reconnects: u64,
    server_cpu: Option<Duration>,
}

pub async fn run(args: PresenceArgs) -> crate::Result<Map<String, Value>> {
    let common = &args.common;
    if args.partners < 2 || args.partners > 64 || !args.partners.is_multiple_of(2) {
        return Err("--partners must be even, from 2 to 64".to_owned());
    }
    if args.steps.is_empty() || args.steps[0] == 0 || args.steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err("--steps must be positive and ascending".to_owned());
    }
    if args.rate <= 0.0 || args.window <= 0.0 || args.offline < 0.0 || args.settle < 0.0 {
        return Err(
            "--rate and --window must be positive, --offline and --settle not negative".to_owned(),
        );
    }
    let last = *args.steps.last().unwrap_or(&0);
    let ids = read_lines(&args.ids, last)?;
    let tokens = read_lines(&args.tokens, last)?;
    if ids.len() <= args.partners {
        return Err(format!(
            "{} users cannot each have {} distinct partners",
            ids.len(),
            args.partners
        ));
    }
    let ring = Ring {
        users: ids.len(),
        half: args.partners / 2,
    };
    let pid = common.server_pid;
    let target = common.target()?;
    let run = Arc::new(Run {
        fleet: Fleet::new(
            target.clone(),
            common.connect_timeout(),
            common.connect_concurrency,
        ),
        rejoins: Fleet::new(target, common.connect_timeout(), common.connect_concurrency),
        ring,
        index: ids.into_iter().enumerate().map(|(i, id)| (id, i)).collect(),
        slots: (0..ring.users).map(|_| Slot::default()).collect(),
        online: AtomicUsize::new(0),
        counts: Counts::default(),
    });
    let server_before = rss_kib(pid);
    crate::progress!(
        "presence: a ring of {} users with {} partners each; steps {:?}; {} reconnects/s at full size",
        ring.users,
        args.partners,
        args.steps,
        args.rate
    );

    let (stop, stopping) = watch::channel(false);
    let mut tasks = Vec::with_capacity(last);
    let mut tokens = tokens.into_iter();
    let mut steps = Vec::with_capacity(args.steps.len());
    let mut random = Xorshift(0x9E37_79B9_7F4A_7C15);
    let mut connected_before = 0;
    let mut rescoped = 0;
    let mut stale_views = 0;
    for &n in &args.steps {
        crate::progress!("presence: connecting users {connected_before}..{n}");
        for (user, token) in (connected_before..n).zip(tokens.by_ref()) {
            tasks.push(tokio::spawn(user_socket(
                run.clone(),
                user,
                token,
                stopping.clone(),
            )));
        }
        let limit = common.connect_timeout()
            * ((n - connected_before) / common.connect_concurrency.max(1) + 2) as u32;
        run.fleet.wait_attempted(n, limit).await;
        connected_before = n;
        run.await_welcomes(n, Duration::from_secs(10)).await;
        let step_rescoped = run.rescope(n, common.connect_timeout()).await;
        rescoped += step_rescoped;
        crate::progress!(
            "presence: {} online, {} failed, {step_rescoped} reconnected to leave scope all; churn in {} s",
            run.online.load(Ordering::Relaxed),
            run.fleet.failed(),
            args.settle
        );
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let mut step = run.churn(n, &args, &mut random, pid).await;
        let rss = rss_kib(pid);
        step.insert("server_rss_kib".into(), json!(rss));
        step.insert(
            "server_rss_per_socket_bytes".into(),
            match (server_before, rss) {
                (Some(b), Some(a)) => json!(((a as f64 - b as f64) * 1024.0 / n as f64).round()),
                _ => Value::Null,
            },
        );
        step.insert("rescoped".into(), json!(step_rescoped));
        stale_views += step["stale_views"].as_u64().unwrap_or(0);
        crate::progress!("presence: step {n}: {}", Value::Object(step.clone()));
        steps.push(Value::Object(step));
    }
    let mut scopes = [0u64; 4];
    for slot in &run.slots[..last] {
        if slot.online.load(Ordering::Relaxed) {
            scopes[usize::from(slot.scope.load(Ordering::Relaxed).min(3))] += 1;
        }
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }

    let mut out = common.result("presence");
    out.insert("users".into(), json!(ring.users));
    out.insert("partners".into(), json!(args.partners));
    out.insert("rate_target".into(), json!(args.rate));
    out.insert("offline_secs".into(), json!(args.offline));
    out.insert("window_secs".into(), json!(args.window));
    run.fleet.report(last, &mut out);
    // Steps of connecting with churn between them: a connect rate would mean nothing.
    out.remove("connect_secs");
    out.remove("connect_rate");
    let mut rejoins = Map::new();
    run.rejoins.report(0, &mut rejoins);
    for (key, value) in rejoins {
        let key = match key.as_str() {
            "connected" => "reconnects".to_owned(),
            "failed" => "reconnect_failed".to_owned(),
            "failures" => "reconnect_failures".to_owned(),
            other if other.starts_with("handshake_") => format!("reconnect_{other}"),
            _ => continue,
        };
        out.insert(key, value);
    }
    let counts = &run.counts;
    let load = |c: &AtomicU64| json!(c.load(Ordering::Relaxed));
    out.insert("rescoped".into(), json!(rescoped));
    out.insert("disconnects".into(), load(&counts.disconnects));
    out.insert("presence_frames".into(), load(&counts.presence_frames));
    out.insert("presence_entries".into(), load(&counts.presence_entries));
    out.insert("welcome_frames".into(), load(&counts.welcome_frames));
    out.insert("outside_partners".into(), load(&counts.outside_partners));
    out.insert("about_self".into(), load(&counts.about_self));
    out.insert("stale_views".into(), json!(stale_views));
    out.insert(
        "scope_watched".into(),
        json!(scopes[usize::from(SCOPE_WATCHED)]),
    );
    out.insert("scope_all".into(), json!(scopes[usize::from(SCOPE_ALL)]));
    out.insert(
        "scope_unsaid".into(),
        json!(scopes[usize::from(SCOPE_UNSAID)]),
    );
    out.insert("scope_none".into(), json!(scopes[usize::from(SCOPE_NONE)]));
    out.insert(
        "dropped".into(),
        json!(run.fleet.dropped.load(Ordering::Relaxed)),
    );
    out.insert(
        "skipped_frames".into(),
        json!(run.fleet.skipped_frames.load(Ordering::Relaxed)),
    );
    out.insert("server_rss_before_kib".into(), json!(server_before));
    out.insert("steps".into(), Value::Array(steps));
    Ok(out)
}

impl Run {
    fn snapshot(&self, pid: Option<u32>) -> Snapshot {
        let c = &self.counts;
        Snapshot {
            at: Instant::now(),
            rx_bytes: c.rx_bytes.load(Ordering::Relaxed),
            presence_frames: c.presence_frames.load(Ordering::Relaxed),
            presence_bytes: c.presence_bytes.load(Ordering::Relaxed),
            presence_entries: c.presence_entries.load(Ordering::Relaxed),
            welcome_bytes: c.welcome_bytes.load(Ordering::Relaxed),
            disconnects: c.disconnects.load(Ordering::Relaxed),
            reconnects: self.rejoins.connected() as u64,
            server_cpu: pid.and_then(cpu_time),
        }
    }

    /// Waits until every connected socket of users 0..n has had its welcome list.
    async fn await_welcomes(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline
            && self.slots[..n].iter().any(|s| {
                s.online.load(Ordering::Relaxed) && s.scope.load(Ordering::Relaxed) == SCOPE_NONE
            })
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Tells user `i` to reconnect after `away`.
    fn kick(&self, i: usize, away: Duration) {
        let slot = &self.slots[i];
        slot.churning.store(true, Ordering::Relaxed);
        slot.away_ms.store(
            away.as_millis().min(u128::from(u32::MAX)) as u32,
            Ordering::Relaxed,
        );
        slot.kick.notify_one();
    }

    /// Tells one online user of 0..n, chosen at random, to reconnect; false if none was found.
    fn kick_any(&self, n: usize, away: Duration, random: &mut Xorshift) -> bool {
        for _ in 0..64 {
            let i = (random.next() % n as u64) as usize;
            let slot = &self.slots[i];
            if slot.online.load(Ordering::Relaxed) && !slot.churning.load(Ordering::Relaxed) {
                self.kick(i, away);
                return true;
            }
        }
        false
    }

    /// Waits until none of users 0..n is still to reconnect (or `limit` passed).
    async fn await_rejoined(&self, users: impl Iterator<Item = usize> + Clone, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline
            && users.clone().any(|i| {
                let slot = &self.slots[i];
                slot.churning.load(Ordering::Relaxed)
                    || (slot.online.load(Ordering::Relaxed)
                        && slot.scope.load(Ordering::Relaxed) == SCOPE_NONE)
            })
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reconnects the sockets of users 0..n that got scope `all` (they authenticated while at
    /// most PRESENCE_BROADCAST_MAX users were online), a few at a time, so that every socket
    /// measured is in scope `watched`, as the issue asks. Answers how many.
    async fn rescope(&self, n: usize, timeout: Duration) -> usize {
        let everyone: Vec<usize> = (0..n)
            .filter(|&i| {
                let slot = &self.slots[i];
                slot.online.load(Ordering::Relaxed)
                    && slot.scope.load(Ordering::Relaxed) == SCOPE_ALL
            })
            .collect();
        for batch in everyone.chunks(RESCOPE_BATCH) {
            for &i in batch {
                self.kick(i, Duration::ZERO);
            }
            self.await_rejoined(batch.iter().copied(), timeout + Duration::from_secs(5))
                .await;
        }
        everyone.len()
    }

    /// One step's churn and its measured window; then waits for every churned user to be back
    /// and for every view to match. Answers the step's figures.
    async fn churn(
        &self,
        n: usize,
        args: &PresenceArgs,
        random: &mut Xorshift,
        pid: Option<u32>,
    ) -> Map<String, Value> {
        let rate = args.rate * n as f64 / self.ring.users as f64;
        let away = Duration::from_secs_f64(args.offline);
        let warmup = away + Duration::from_secs_f64(args.interval + 0.5);
        let window = Duration::from_secs_f64(args.window);
        crate::progress!(
            "presence: {n} online, {rate:.1} reconnects/s; measuring {} s after {:.1} s",
            args.window,
            warmup.as_secs_f64()
        );
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut kicked = 0u64;
        let mut not_found = 0u64;
        let mut opened: Option<Snapshot> = None;
        let (mut online_sum, mut online_samples) = (0u64, 0u64);
        loop {
            tick.tick().await;
            let elapsed = started.elapsed();
            let due = (rate * elapsed.as_secs_f64()) as u64;
            while kicked < due {
                kicked += 1;
                if !self.kick_any(n, away, random) {
                    not_found += 1;
                }
            }
            if opened.is_none() && elapsed >= warmup {
                opened = Some(self.snapshot(pid));
            }
            if opened.is_some() {
                online_sum += self.online.load(Ordering::Relaxed) as u64;
                online_samples += 1;
            }
            if elapsed >= warmup + window {
                break;
            }
        }
        let closed = self.snapshot(pid);
        let opened = opened.unwrap_or(closed);
        self.await_rejoined(
            0..n,
            away + args.common.connect_timeout() + Duration::from_secs(5),
        )
        .await;
        let converging = Instant::now();
        let limit = Duration::from_secs(args.converge);
        let stale = loop {
            let stale = self.stale_views(n);
            if stale == 0 || converging.elapsed() >= limit {
                break stale;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };

        let secs = closed.at.duration_since(opened.at).as_secs_f64().max(1e-9);
        let online = (online_sum as f64 / online_samples.max(1) as f64).max(1.0);
        let disconnects = closed.disconnects - opened.disconnects;
        let reconnects = closed.reconnects - opened.reconnects;
        let changes = disconnects + reconnects;
        let per_change = |x: u64| {
            if changes > 0 {
                json!(round3(x as f64 / changes as f64))
            } else {
                Value::Null
            }
        };
        let per_socket_second = |x: u64| json!(round3(x as f64 / online / secs));
        let presence_bytes = closed.presence_bytes - opened.presence_bytes;
        let cpu = match (opened.server_cpu, closed.server_cpu) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let mut step = Map::new();
        step.insert("online_target".into(), json!(n));
        step.insert("online_avg".into(), json!(round3(online)));
        step.insert("window_secs".into(), json!(round3(secs)));
        step.insert("churn_rate_target".into(), json!(round3(rate)));
        step.insert(
            "churn_rate".into(),
            json!(round3(disconnects as f64 / secs)),
        );
        step.insert("churn_not_found".into(), json!(not_found));
        step.insert("disconnects".into(), json!(disconnects));
        step.insert("reconnects".into(), json!(reconnects));
        step.insert("changes".into(), json!(changes));
        step.insert(
            "presence_frames_per_socket_per_sec".into(),
            per_socket_second(closed.presence_frames - opened.presence_frames),
        );
        step.insert(
            "presence_bytes_per_socket_per_sec".into(),
            per_socket_second(presence_bytes),
        );
        step.insert(
            "rx_bytes_per_socket_per_sec".into(),
            per_socket_second(closed.rx_bytes - opened.rx_bytes),
        );
        step.insert(
            "told_per_change".into(),
            per_change(closed.presence_entries - opened.presence_entries),
        );
        step.insert(
            "presence_bytes_per_change".into(),
            per_change(presence_bytes),
        );
        step.insert(
            "welcome_bytes_per_reconnect".into(),
            if reconnects > 0 {
                json!(round3(
                    (closed.welcome_bytes - opened.welcome_bytes) as f64 / reconnects as f64
                ))
            } else {
                Value::Null
            },
        );
        step.insert(
            "server_cpu_percent".into(),
            cpu.map_or(Value::Null, |c| {
                json!(round3(c.as_secs_f64() / secs * 100.0))
            }),
        );
        step.insert(
            "server_cpu_us_per_change".into(),
            match cpu {
                Some(c) if changes > 0 => json!(round3(c.as_micros() as f64 / changes as f64)),
                _ => Value::Null,
            },
        );
        step.insert("stale_views".into(), json!(stale));
        step.insert(
            "views_converged_secs".into(),
            json!(round3(converging.elapsed().as_secs_f64())),
        );
        step
    }

    /// (socket, partner) pairs among users 0..n whose view disagrees with who is online.
    fn stale_views(&self, n: usize) -> u64 {
        let mut stale = 0;
        for (i, slot) in self.slots[..n].iter().enumerate() {
            if !slot.online.load(Ordering::Relaxed) {
                continue;
            }
            let view = slot.view.load(Ordering::Relaxed);
            for bit in 0..2 * self.ring.half {
                let partner = self.ring.partner_at(i, bit);
                let online = self.slots[partner].online.load(Ordering::Relaxed);
                if online != (view & (1 << bit) != 0) {
                    stale += 1;
                }
            }
        }
        stale
    }

    /// What a socket of user `me` does with a frame: presence changes and welcome lists are
    /// counted, checked and applied to its view.
    fn on_frame(&self, me: usize, text: &str) {
        let Ok(Packet::Socket(packet)) = protocol::decode(text) else {
            return;
        };
        if packet.kind != Kind::Event {
            return;
        }
        let slot = &self.slots[me];
        let counts = &self.counts;
        match protocol::event_name(packet.data) {
            Some("presenceChanged") => {
                counts.presence_frames.fetch_add(1, Ordering::Relaxed);
                counts
                    .presence_bytes
                    .fetch_add(wire_len(text.len()), Ordering::Relaxed);
                let change = protocol::first_argument(&packet);
                let scope = slot.scope.load(Ordering::Relaxed);
                let mut view = slot.view.load(Ordering::Relaxed);
                for (id, online) in changes(&change) {
                    counts.presence_entries.fetch_add(1, Ordering::Relaxed);
                    if let Some(bit) = self.judge(me, scope, id, false) {
                        if online {
                            view |= 1 << bit;
                        } else {
                            view &= !(1 << bit);
                        }
                    }
                }
                slot.view.store(view, Ordering::Relaxed);
            }
            Some("getOnlineUsers") => {
                counts.welcome_frames.fetch_add(1, Ordering::Relaxed);
                counts
                    .welcome_bytes
                    .fetch_add(wire_len(text.len()), Ordering::Relaxed);
                let list = protocol::first_argument(&packet);
                let scope = match list.get("scope").and_then(Value::as_str) {
                    Some("all") => SCOPE_ALL,
                    Some("watched") => SCOPE_WATCHED,
                    _ => SCOPE_UNSAID,
                };
                let mut view = 0u64;
                for user in list
                    .get("users")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = user.get("userId").and_then(Value::as_str)
                        && let Some(bit) = self.judge(me, scope, id, true)
                    {
                        view |= 1 << bit;
                    }
                }
                slot.view.store(view, Ordering::Relaxed);
                slot.scope.store(scope, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Counts `id` named to user `me`'s socket if it should not have been; answers its bit in
    /// the partner mask when it is a partner. A welcome list in scope `all` lists every online
    /// user, the socket's own included; anything else never names the socket's own user.
    fn judge(&self, me: usize, scope: u8, id: &str, welcome: bool) -> Option<usize> {
        let user = self.index.get(id).copied();
        if user == Some(me) {
            if !(welcome && scope == SCOPE_ALL) {
                self.counts.about_self.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        }
        let bit = user.and_then(|j| self.ring.partner(me, j));
        if bit.is_none() && scope != SCOPE_ALL {
            self.counts.outside_partners.fetch_add(1, Ordering::Relaxed);
        }
        bit
    }

    fn came_online(&self, me: usize) {
        let slot = &self.slots[me];
        slot.scope.store(SCOPE_NONE, Ordering::Relaxed);
        slot.view.store(0, Ordering::Relaxed);
        slot.online.store(true, Ordering::Relaxed);
        self.online.fetch_add(1, Ordering::Relaxed);
    }

    fn went_offline(&self, me: usize) {
        let slot = &self.slots[me];
        slot.online.store(false, Ordering::Relaxed);
        slot.view.store(0, Ordering::Relaxed);
        self.online.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The users a `presenceChanged` names: (user id, online).
fn changes(change: &Value) -> impl Iterator<Item = (&str, bool)> {
    let list = |key: &str, online: bool| {
        change
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(move |entry| {
                entry
                    .as_str()
                    .or_else(|| entry.get("userId").and_then(Value::as_str))
                    .map(|id| (id, online))
            })
    };
    list("offline", false).chain(list("online", true))
}

/// A text message's size on the wire: its payload and the server's (unmasked) frame header.
fn wire_len(payload: usize) -> u64 {
    let header = match payload {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    (payload + header) as u64
}

/// Why a socket's connection ended.
enum End {
    Stop,
    Kicked,
    Dropped,
}

/// One user: connects, follows presence, reconnects when the churn says so, until the end.
async fn user_socket(run: Arc<Run>, me: usize, token: String, mut stop: watch::Receiver<bool>) {
    let mut connecting = run.fleet.connect(&token).await;
    loop {
        let Some(mut socket) = connecting.take() else {
            return;
        };
        run.came_online(me);
        let mut seen = socket.rx_bytes();
        run.counts.rx_bytes.fetch_add(seen, Ordering::Relaxed);
        let end = loop {
            tokio::select! {
                _ = stop.changed() => break End::Stop,
                _ = run.slots[me].kick.notified() => break End::Kicked,
                received = socket.recv() => {
                    let alive = match received {
                        Ok(received) => {
                            if let Received::Frame(text) = &received {
                                run.on_frame(me, text);
                            }
                            run.fleet.housekeep(&mut socket, &received).await
                        }
                        Err(_) => false,
                    };
                    let now = socket.rx_bytes();
                    run.counts.rx_bytes.fetch_add(now - seen, Ordering::Relaxed);
                    seen = now;
                    if !alive {
                        break End::Dropped;
                    }
                }
            }
        };
        drop(socket);
        run.went_offline(me);
        match end {
            End::Stop => return,
            End::Dropped => {
                run.fleet.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            End::Kicked => {
                run.counts.disconnects.fetch_add(1, Ordering::Relaxed);
                let away =
                    Duration::from_millis(u64::from(run.slots[me].away_ms.load(Ordering::Relaxed)));
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(away) => {}
                }
                connecting = run.rejoins.connect(&token).await;
                run.slots[me].churning.store(false, Ordering::Relaxed);
            }
        }
    }
}

/// Which user the churn takes next (xorshift64: any spread will do, and runs repeat).
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn partners_are_the_half_before_and_the_half_after_around_the_ring() {
        let ring = Ring { users: 10, half: 2 };
        let partners: Vec<usize> = (0..4).map(|bit| ring.partner_at(0, bit)).collect();
        assert_eq!(partners, vec![9, 8, 1, 2]);
        for i in 0..10 {
            for bit in 0..4 {
                let j = ring.partner_at(i, bit);
                assert_eq!(ring.partner(i, j), Some(bit), "{i} {j}");
                // Partnership goes both ways: the seed makes one conversation per pair.
                assert!(ring.partner(j, i).is_some());
            }
        }
        assert_eq!(ring.partner(0, 0), None);
        assert_eq!(ring.partner(0, 3), None);
        assert_eq!(ring.partner(0, 7), None);
        assert_eq!(ring.partner(5, 8), None);
    }

    #[test]
    fn a_presence_change_names_its_offline_ids_and_online_users() {
        let change = json!({
            "online": [{"userId": "a", "name": "A"}, {"userId": "b", "name": "B"}],
            "offline": ["c"],
        });
        let named: Vec<(&str, bool)> = changes(&change).collect();
        assert_eq!(named, vec![("c", false), ("a", true), ("b", true)]);
        assert_eq!(changes(&json!({})).count(), 0);
    }

    #[test]
    fn wire_length_counts_the_frame_header() {
        assert_eq!(wire_len(10), 12);
        assert_eq!(wire_len(200), 204);
        assert_eq!(wire_len(70_000), 70_010);
    }

    fn run_with(users: usize, half: usize) -> Run {
        let target = crate::client::Target {
            addr: "127.0.0.1:9".parse().unwrap(),
            path: "/api/socket".into(),
        };
        Run {
            fleet: Fleet::new(target.clone(), Duration::from_secs(1), 1),
            rejoins: Fleet::new(target, Duration::from_secs(1), 1),
            ring: Ring { users, half },
            index: (0..users).map(|i| (format!("u{i}"), i)).collect(),
            slots: (0..users).map(|_| Slot::default()).collect(),
            online: AtomicUsize::new(0),
            counts: Counts::default(),
        }
    }

    fn event(name: &str, payload: Value) -> String {
        protocol::event("/", None, name, &[&payload])
    }

    #[test]
    fn a_watched_socket_told_about_a_stranger_or_itself_is_counted() {
        let run = run_with(10, 1);
        for i in 0..10 {
            run.came_online(i);
        }
        let welcome =
            json!({"users": [{"userId": "u1", "name": "1"}], "total": 10, "scope": "watched"});
        run.on_frame(0, &event("getOnlineUsers", welcome));
        assert_eq!(run.slots[0].scope.load(Ordering::Relaxed), SCOPE_WATCHED);
        assert_eq!(run.slots[0].view.load(Ordering::Relaxed), 0b10);
        let change = json!({"online": [{"userId": "u9", "name": "9"}, {"userId": "u5", "name": "5"}], "offline": ["u0", "u1"]});
        run.on_frame(0, &event("presenceChanged", change));
        assert_eq!(run.counts.outside_partners.load(Ordering::Relaxed), 1);
        assert_eq!(run.counts.about_self.load(Ordering::Relaxed), 1);
        assert_eq!(run.counts.presence_entries.load(Ordering::Relaxed), 4);
        assert_eq!(run.slots[0].view.load(Ordering::Relaxed), 0b01);
    }

    #[test]
    fn a_socket_in_scope_all_hears_about_anyone_and_of_itself_only_in_its_welcome() {
        let run = run_with(10, 1);
        run.came_online(3);
        let welcome = json!({"users": [{"userId": "u7", "name": "7"}, {"userId": "u3", "name": "3"}], "total": 2, "scope": "all"});
        run.on_frame(3, &event("getOnlineUsers", welcome));
        assert_eq!(run.counts.outside_partners.load(Ordering::Relaxed), 0);
        assert_eq!(run.counts.about_self.load(Ordering::Relaxed), 0);
        let change = json!({"online": [], "offline": ["u8", "u3"]});
        run.on_frame(3, &event("presenceChanged", change));
        assert_eq!(run.counts.outside_partners.load(Ordering::Relaxed), 0);
        assert_eq!(run.counts.about_self.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn views_that_disagree_with_who_is_online_are_stale() {
        let run = run_with(10, 1);
        for i in 0..3 {
            run.came_online(i);
        }
        // User 1 sees 0 and 2 online; user 0 was told nothing; user 2 sees 1 but not 3 (offline).
        run.slots[1].view.store(0b11, Ordering::Relaxed);
        run.slots[2].view.store(0b01, Ordering::Relaxed);
        // User 0's partners are 9 (offline, right) and 1 (online, missed).
        assert_eq!(run.stale_views(3), 1);
        run.slots[0].view.store(0b10, Ordering::Relaxed);
        assert_eq!(run.stale_views(3), 0);
    }
}

//! Opening many sockets: a bounded number of handshakes in flight, and the counts every socket
//! scenario reports (connected, failed and why, connect rate, handshake latency).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use crate::client::{Received, Socket, Target};
use crate::stats::{Samples, round3};

/// The sockets of one run, as they connect.
pub struct Fleet {
    target: Target,
    timeout: Duration,
    /// Handshakes in flight at once.
    permits: Semaphore,
    /// When the first handshake may start; times below are counted from here.
    pub epoch: Instant,
    connected: AtomicUsize,
    failed: AtomicUsize,
    /// When the last socket finished connecting, in µs since `epoch`.
    last_connected_us: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    handshakes: Mutex<Samples>,
    /// Set to stop opening sockets (the sockets not yet started count as failed).
    pub abort: AtomicBool,
    /// Sockets that closed while the scenario still held them.
    pub dropped: AtomicUsize,
    /// Bytes all the sockets received.
    pub rx_bytes: AtomicU64,
    /// Frames too long to keep (online lists), and their bytes.
    pub skipped_frames: AtomicU64,
    pub skipped_bytes: AtomicU64,
}

impl Fleet {
    pub fn new(target: Target, timeout: Duration, concurrency: usize) -> Fleet {
        Fleet {
            target,
            timeout,
            permits: Semaphore::new(concurrency.max(1)),
            epoch: Instant::now(),
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            last_connected_us: AtomicU64::new(0),
            failures: Mutex::default(),
            handshakes: Mutex::default(),
            abort: AtomicBool::new(false),
            dropped: AtomicUsize::new(0),
            rx_bytes: AtomicU64::new(0),
            skipped_frames: AtomicU64::new(0),
            skipped_bytes: AtomicU64::new(0),
        }
    }

    /// Microseconds since the fleet's epoch.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Connects one socket with `token`, waiting for a handshake slot; `None` when it failed
    /// (counted with its reason).
    pub async fn connect(&self, token: &str) -> Option<Socket> {
        let _permit = self.permits.acquire().await.ok()?;
        if self.abort.load(Ordering::Relaxed) {
            *lock(&self.failures)
                .entry("not_attempted".to_owned())
                .or_default() += 1;
            self.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let started = Instant::now();
        match Socket::connect(&self.target, token, self.timeout).await {
            Ok(socket) => {
                lock(&self.handshakes).record(started.elapsed());
                self.last_connected_us
                    .fetch_max(self.now_us(), Ordering::Relaxed);
                self.connected.fetch_add(1, Ordering::Relaxed);
                Some(socket)
            }
            Err(failure) => {
                *lock(&self.failures).entry(failure.to_string()).or_default() += 1;
                self.failed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits until `n` sockets have connected or failed (or `limit` passed), printing progress.
    pub async fn wait_attempted(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last_print = Instant::now();
        while self.connected() + self.failed() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if last_print.elapsed() >= Duration::from_secs(2) {
                last_print = Instant::now();
                crate::progress!(
                    "{} / {n} sockets connected, {} failed",
                    self.connected(),
                    self.failed()
                );
            }
        }
    }

    /// What every socket does with what it received: counts skipped frames and answers pings.
    /// False when the socket has ended.
    pub async fn housekeep(&self, socket: &mut Socket, received: &Received) -> bool {
        if let Received::Skipped(len) = received {
            self.skipped_frames.fetch_add(1, Ordering::Relaxed);
            self.skipped_bytes.fetch_add(*len, Ordering::Relaxed);
        }
        matches!(socket.answer(received).await, Ok(true))
    }

    /// Counts one socket's traffic when it ends.
    pub fn retire(&self, socket: &Socket) {
        self.rx_bytes
            .fetch_add(socket.rx_bytes(), Ordering::Relaxed);
    }

    /// `sockets`, `connected`, `failed`, `failures`, `connect_secs`, `connect_rate`,
    /// `handshake_*_ms`.
    pub fn report(&self, requested: usize, out: &mut Map<String, Value>) {
        let connected = self.connected();
        let secs = self.last_connected_us.load(Ordering::Relaxed) as f64 / 1e6;
        out.insert("sockets".into(), json!(requested));
        out.insert("connected".into(), json!(connected));
        out.insert("failed".into(), json!(self.failed()));
        out.insert("failures".into(), json!(*lock(&self.failures)));
        out.insert("connect_secs".into(), json!(round3(secs)));
        out.insert(
            "connect_rate".into(),
            if secs > 0.0 {
                json!(round3(connected as f64 / secs))
            } else {
                Value::Null
            },
        );
        lock(&self.handshakes).clone().report("handshake", out);
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked (counters only).
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

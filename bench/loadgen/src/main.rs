//! `craftcode-loadgen`: drives a CraftCode Realtime server (or the Node.js reference) over
//! loopback with one of six scenarios and prints one JSON line of results on stdout (progress
//! goes to stderr):
//!
//! - `idle`: N authenticated sockets held open: connect rate, server memory per socket;
//! - `dm`: pairs of users exchanging `sendMessage` at a set rate: delivery and ack latency,
//!   losses, server CPU;
//! - `fanout`: N sockets, K broadcasts through `POST /api/socket-test`: time to the last delivery;
//! - `group`: groups of connected members sending group messages: delivery to the last member;
//! - `rest`: `POST /api/messages/send/{id}` throughput and latency;
//! - `presence`: users with conversation partners, connected in steps, reconnecting at a set
//!   rate: bytes and server CPU per presence change, bytes per socket as the online count grows.
//!
//! Every socket is one task with a 4 KiB read buffer, so one process holds 19,000 of them.

mod client;
mod dm;
mod fanout;
mod fleet;
mod group;
mod http;
mod idle;
mod presence;
mod protocol;
mod rest;
mod stats;
mod ws;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

use crate::client::Target;

#[derive(Parser, Debug)]
#[command(
    name = "craftcode-loadgen",
    version,
    about = "Load generator for CraftCode Realtime"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Open N authenticated sockets and hold them: connect rate, server RSS per socket.
    Idle(idle::IdleArgs),
    /// P pairs of users send each other messages at R msg/s in all for S seconds.
    Dm(dm::DmArgs),
    /// N sockets receive K broadcasts sent through `POST /api/socket-test`.
    Fanout(fanout::FanoutArgs),
    /// G groups of M connected members send group messages at R msg/s in all for S seconds.
    Group(group::GroupArgs),
    /// M `POST /api/messages/send/{id}` with C connections.
    Rest(rest::RestArgs),
    /// Users with K conversation partners connect in steps and reconnect at R/s: presence cost.
    Presence(presence::PresenceArgs),
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The server's base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// The Socket.IO server's path.
    #[arg(long, default_value = "/api/socket")]
    path: String,
    /// The server's process id, to read its memory and CPU time from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Which server this is, copied into the result line (e.g. `craftcode`, `node`).
    #[arg(long, default_value = "server")]
    label: String,
    /// Worker threads of the load generator (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Socket handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Seconds one socket may take to connect and authenticate.
    #[arg(long, default_value_t = 30)]
    connect_timeout: u64,
}

impl Common {
    /// The server's address, checked to be on this machine.
    pub fn addr(&self) -> Result<SocketAddr> {
        let rest = self
            .url
            .strip_prefix("http://")
            .ok_or_else(|| "--url must start with http://".to_owned())?;
        let authority = rest.split('/').next().unwrap_or_default();
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("--url {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url {authority}: no address"))?;
        if !addr.ip().is_loopback() {
            return Err(
                "--url must be a loopback address: load is only sent to this machine".to_owned(),
            );
        }
        Ok(addr)
    }

    pub fn target(&self) -> Result<Target> {
        Ok(Target {
            addr: self.addr()?,
            path: self.path.clone(),
        })
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout)
    }

    /// The start of a result line: scenario and server.
    pub fn result(&self, scenario: &str) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("scenario".into(), scenario.into());
        out.insert("server".into(), self.label.clone().into());
        out
    }
}

/// Errors are text: the load generator prints them and exits non-zero.
pub type Result<T> = std::result::Result<T, String>;

/// The non-empty lines of a file (tokens or user ids), at least `needed` of them.
pub fn read_lines(path: &Path, needed: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if lines.len() < needed {
        return Err(format!(
            "{} has {} lines; this run needs {needed}",
            path.display(),
            lines.len()
        ));
    }
    Ok(lines)
}

/// Progress for the person watching, on stderr.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("[loadgen] {}", format!($($arg)*)) };
}

fn main() {
    let cli = Cli::parse();
    let common = match &cli.scenario {
        Scenario::Idle(a) => &a.common,
        Scenario::Dm(a) => &a.common,
        Scenario::Fanout(a) => &a.common,
        Scenario::Group(a) => &a.common,
        Scenario::Rest(a) => &a.common,
        Scenario::Presence(a) => &a.common,
    };
    if let Some(limit) = stats::raise_open_files_limit() {
        progress!("open files limit: {limit}");
    }
    let runtime = if common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(common.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("craftcode-loadgen: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.scenario {
            Scenario::Idle(args) => idle::run(args).await,
            Scenario::Dm(args) => dm::run(args).await,
            Scenario::Fanout(args) => fanout::run(args).await,
            Scenario::Group(args) => group::run(args).await,
            Scenario::Rest(args) => rest::run(args).await,
            Scenario::Presence(args) => presence::run(args).await,
        }
    });
    // Sockets still open are closed with the process; don't wait for their tasks.
    runtime.shutdown_background();
    match outcome {
        Ok(line) => println!("{}", Value::Object(line)),
        Err(e) => {
            eprintln!("craftcode-loadgen: {e}");
            std::process::exit(1);
        }
    }
}

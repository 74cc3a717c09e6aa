//! Measurements: latency percentiles over recorded samples (microseconds, sorted once at the
//! end: exact, and small at these sizes), and a process's memory and CPU time from `/proc`.

use std::time::Duration;

use serde_json::{Map, Value, json};

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u32>);

impl Samples {
    pub fn record(&mut self, latency: Duration) {
        self.0
            .push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
    }

    pub fn record_us(&mut self, micros: u64) {
        self.0.push(micros.min(u64::from(u32::MAX)) as u32);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `<prefix>_p50_ms`, `_p95_ms`, `_p99_ms`, `_max_ms` and `_mean_ms` into `out` (null
    /// when there are no samples).
    pub fn report(mut self, prefix: &str, out: &mut Map<String, Value>) {
        self.0.sort_unstable();
        let ms = |us: Option<f64>| us.map_or(Value::Null, |us| json!(round3(us / 1000.0)));
        let mean = (!self.0.is_empty())
            .then(|| self.0.iter().map(|&v| f64::from(v)).sum::<f64>() / self.0.len() as f64);
        for (name, q) in [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)] {
            out.insert(
                format!("{prefix}_{name}_ms"),
                ms(self.quantile(q).map(f64::from)),
            );
        }
        out.insert(
            format!("{prefix}_max_ms"),
            ms(self.0.last().copied().map(f64::from)),
        );
        out.insert(format!("{prefix}_mean_ms"), ms(mean));
    }

    /// The nearest-rank quantile of sorted samples.
    fn quantile(&self, q: f64) -> Option<u32> {
        if self.0.is_empty() {
            return None;
        }
        let rank = (q * self.0.len() as f64).ceil() as usize;
        Some(self.0[rank.clamp(1, self.0.len()) - 1])
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A process's resident memory in KiB (`VmRSS`), if it can be read.
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| {
        // SAFETY: sysconf only reads a constant of the system.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_micros(ticks * 1_000_000 / per_second)
    })
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state), so field n is fields[n - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A server process's CPU use between [`CpuMeter::start`] and [`CpuMeter::percent`], in percent
/// of one core (so up to 200 on two cores).
pub struct CpuMeter {
    pid: Option<u32>,
    cpu: Option<Duration>,
    at: std::time::Instant,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> Self {
        CpuMeter {
            pid,
            cpu: pid.and_then(cpu_time),
            at: std::time::Instant::now(),
        }
    }

    pub fn percent(&self) -> Value {
        let now = self.pid.and_then(cpu_time);
        match (self.cpu, now) {
            (Some(before), Some(after)) => {
                let wall = self.at.elapsed().as_secs_f64().max(1e-9);
                json!(round3(
                    (after.saturating_sub(before)).as_secs_f64() / wall * 100.0
                ))
            }
            _ => Value::Null,
        }
    }
}

/// Raises this process's open-files limit to the hard limit (each socket is one file).
pub fn raise_open_files_limit() -> Option<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return None;
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples = Samples::default();
        for us in (1..=100).rev() {
            samples.record_us(us * 1000);
        }
        let mut out = Map::new();
        samples.report("x", &mut out);
        assert_eq!(out["x_p50_ms"], json!(50.0));
        assert_eq!(out["x_p95_ms"], json!(95.0));
        assert_eq!(out["x_p99_ms"], json!(99.0));
        assert_eq!(out["x_max_ms"], json!(100.0));
        assert_eq!(out["x_mean_ms"], json!(50.5));
    }

    #[test]
    fn no_samples_report_null() {
        let mut out = Map::new();
        Samples::default().report("y", &mut out);
        assert_eq!(out["y_p99_ms"], Value::Null);
        assert_eq!(out["y_mean_ms"], Value::Null);
    }

    #[test]
    fn cpu_ticks_are_read_past_a_command_name_with_spaces() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_kib(None).is_some_and(|kib| kib > 0));
        assert!(cpu_time(std::process::id()).is_some());
    }
}

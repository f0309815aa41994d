//! What the bench reads from the machine: /proc CPU and memory of the gateway, the broker and
//! itself, the owner of a listening port, the open-file limit, and the gateway's HTTP
//! endpoints (a minimal HTTP/1.1 GET, so no HTTP client crate is needed).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `host:port` of `scheme://host:port[/...]`, with the scheme's default port.
pub fn authority(url: &str, scheme: &str, default_port: u16) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix(&format!("{scheme}://"))
        .with_context(|| format!("'{url}' does not start with {scheme}://"))?;
    let auth = rest.split('/').next().unwrap_or_default();
    let auth = auth.rsplit('@').next().unwrap_or_default();
    let (host, port) = match auth.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6
                .split_once(']')
                .with_context(|| format!("unclosed '[' in '{url}'"))?;
            (h, after.strip_prefix(':'))
        }
        None => match auth.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (auth, None),
        },
    };
    anyhow::ensure!(!host.is_empty(), "no host in '{url}'");
    let port = match port {
        Some(p) => p.parse().with_context(|| format!("bad port in '{url}'"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

/// Resolves `host:port` to one socket address.
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving {host}:{port}"))?
        .next()
        .with_context(|| format!("{host}:{port} resolves to nothing"))
}

/// One HTTP/1.1 GET; the status and the body.
pub async fn http_get(addr: SocketAddr, host: &str, path: &str) -> Result<(u16, String)> {
    http_get_within(addr, host, path, Duration::from_secs(15)).await
}

/// One HTTP/1.1 GET that may take up to `timeout`; the status and the body.
pub async fn http_get_within(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("GET {path}: no answer in {timeout:?}"))?
        .with_context(|| format!("GET http://{addr}{path}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {path}: malformed response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("GET {path}: no status"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .context("bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("short chunk")?);
        body = rest.get(size + 2..).context("short chunk")?;
    }
}

/// The gateway's counters from `GET /api/ws/stats` that the bench uses.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct GatewayCounters {
    pub stored_vehicle_log: u64,
    pub frames_sent: u64,
    pub slow_clients_dropped: u64,
    /// Acks the gateway could not hand to its MQTT client (the broker keeps those in flight).
    #[serde(default)]
    pub acks_stale: u64,
    #[serde(default)]
    pub commit_failures: u64,
    #[serde(default)]
    pub rejected_total: u64,
    pub active_connections: u64,
    /// vehicle_log rows retention purged (this instance's count since it started).
    #[serde(default)]
    pub purged_vehicle_logs: u64,
    /// The last seq the gateway handed out (a reading, not a count: a delta keeps the later).
    #[serde(default)]
    pub last_seq: u64,
}

impl GatewayCounters {
    pub fn delta(self, start: GatewayCounters) -> GatewayCounters {
        GatewayCounters {
            stored_vehicle_log: self
                .stored_vehicle_log
                .saturating_sub(start.stored_vehicle_log),
            frames_sent: self.frames_sent.saturating_sub(start.frames_sent),
            slow_clients_dropped: self
                .slow_clients_dropped
                .saturating_sub(start.slow_clients_dropped),
            acks_stale: self.acks_stale.saturating_sub(start.acks_stale),
            commit_failures: self.commit_failures.saturating_sub(start.commit_failures),
            rejected_total: self.rejected_total.saturating_sub(start.rejected_total),
            active_connections: self.active_connections,
            purged_vehicle_logs: self
                .purged_vehicle_logs
                .saturating_sub(start.purged_vehicle_logs),
            last_seq: self.last_seq,
        }
    }

    /// Two instances' counters as one.
    pub fn sum(self, other: GatewayCounters) -> GatewayCounters {
        GatewayCounters {
            stored_vehicle_log: self.stored_vehicle_log + other.stored_vehicle_log,
            frames_sent: self.frames_sent + other.frames_sent,
            slow_clients_dropped: self.slow_clients_dropped + other.slow_clients_dropped,
            acks_stale: self.acks_stale + other.acks_stale,
            commit_failures: self.commit_failures + other.commit_failures,
            rejected_total: self.rejected_total + other.rejected_total,
            active_connections: self.active_connections + other.active_connections,
            purged_vehicle_logs: self.purged_vehicle_logs + other.purged_vehicle_logs,
            // Instances sharing a database share its seqs.
            last_seq: self.last_seq.max(other.last_seq),
        }
    }
}

/// The counters of every instance in `gateways`, summed.
pub async fn all_counters(gateways: &[(SocketAddr, String)]) -> Result<GatewayCounters> {
    let mut total = GatewayCounters::default();
    for (addr, host) in gateways {
        total = total.sum(gateway_counters(*addr, host).await?);
    }
    Ok(total)
}

pub async fn gateway_counters(addr: SocketAddr, host: &str) -> Result<GatewayCounters> {
    let (status, body) = http_get(addr, host, "/api/ws/stats").await?;
    if status != 200 {
        bail!("GET /api/ws/stats: HTTP {status}");
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("GET /api/ws/stats: JSON")?;
    let n = |p: &str| v.pointer(p).and_then(|x| x.as_u64()).unwrap_or(0);
    Ok(GatewayCounters {
        stored_vehicle_log: n("/messages/stored/vehicle_log"),
        frames_sent: n("/messages/frames_sent"),
        slow_clients_dropped: n("/messages/slow_clients_dropped"),
        acks_stale: n("/messages/acks_stale"),
        commit_failures: n("/messages/commit_failures"),
        rejected_total: n("/messages/rejected_total"),
        active_connections: n("/active_connections"),
        purged_vehicle_logs: n("/messages/purged/vehicle_logs"),
        last_seq: n("/messages/last_seq"),
    })
}

/// A Prometheus histogram read from /metrics: cumulative counts by upper bound (seconds),
/// with the sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// (le, cumulative count), in the order /metrics lists them (+Inf last).
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// Reads `name` from a /metrics text, adding up every label set (instances) per bound.
    pub fn parse(text: &str, name: &str) -> Option<Histogram> {
        let mut h = Histogram::default();
        let mut found = false;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let (series, value) = match rest.rsplit_once(' ') {
                Some(pair) => pair,
                None => continue,
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            if let Some(labels) = series.strip_prefix("_bucket") {
                let Some(le) = labels
                    .split_once("le=\"")
                    .and_then(|(_, after)| after.split_once('"'))
                    .map(|(le, _)| le)
                else {
                    continue;
                };
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    match le.parse() {
                        Ok(b) => b,
                        Err(_) => continue,
                    }
                };
                match h.buckets.iter_mut().find(|(b, _)| *b == bound) {
                    Some((_, n)) => *n += value as u64,
                    None => h.buckets.push((bound, value as u64)),
                }
                found = true;
            } else if series.starts_with("_sum") {
                h.sum += value;
            } else if series.starts_with("_count") {
                h.count += value as u64;
            }
        }
        found.then_some(h)
    }

    /// What was observed since `start` (an earlier reading of the same histogram).
    pub fn since(&self, start: &Histogram) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| {
                    let before = start
                        .buckets
                        .iter()
                        .find(|(b, _)| *b == le)
                        .map_or(0, |(_, n)| *n);
                    (le, n.saturating_sub(before))
                })
                .collect(),
            sum: self.sum - start.sum,
            count: self.count.saturating_sub(start.count),
        }
    }

    /// The upper bound of the bucket that holds quantile `q` (an observation at most this):
    /// `None` with no observation, infinite when it is past the last finite bound.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= rank)
            .map(|(le, _)| *le)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// The gateways' `seano_commit_seconds` histogram (GET /metrics), summed over all of them.
pub async fn commit_histogram(gateways: &[(SocketAddr, String)]) -> Result<Histogram> {
    let mut total = Histogram::default();
    for (addr, host) in gateways {
        let (status, body) = http_get(*addr, host, "/metrics").await?;
        if status != 200 {
            bail!("GET /metrics: HTTP {status}");
        }
        let h = Histogram::parse(&body, "seano_commit_seconds")
            .context("GET /metrics: no seano_commit_seconds histogram")?;
        if total.buckets.is_empty() {
            total = h;
        } else {
            for (le, n) in h.buckets {
                if let Some((_, t)) = total.buckets.iter_mut().find(|(b, _)| *b == le) {
                    *t += n;
                }
            }
            total.sum += h.sum;
            total.count += h.count;
        }
    }
    Ok(total)
}

/// The ids of the vehicles the gateway knows (`GET /api/vehicles`).
pub async fn vehicle_ids(addr: SocketAddr, host: &str) -> Result<Vec<i64>> {
    #[derive(Deserialize)]
    struct Listed {
        id: i64,
    }
    #[derive(Deserialize)]
    struct VehicleList {
        vehicles: Vec<Listed>,
    }
    let (status, body) = http_get(addr, host, "/api/vehicles").await?;
    if status != 200 {
        bail!("GET /api/vehicles: HTTP {status} {body}");
    }
    let list: VehicleList = serde_json::from_str(&body).context("GET /api/vehicles: JSON")?;
    Ok(list.vehicles.into_iter().map(|v| v.id).collect())
}

/// Waits for `GET /ready` to answer 200.
pub async fn wait_ready(addr: SocketAddr, host: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match http_get(addr, host, "/ready").await {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => format!("HTTP {status} {body}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!(
                "the gateway at {addr} is not ready after {timeout:?} (last answer: {last}); is it running, \
                 and on the same broker and topic prefix?"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Raises the soft open-file limit to the hard limit; fails when even that is below `needed`.
pub fn raise_nofile(needed: u64) -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            bail!(
                "cannot raise the open-file limit from {} to its hard limit {}: {}",
                lim.rlim_cur,
                lim.rlim_max,
                std::io::Error::last_os_error()
            );
        }
        lim = raised;
    }
    if lim.rlim_cur < needed {
        bail!(
            "this run needs about {needed} open files but the hard limit is {}; raise it \
             (as root: `ulimit -Hn {needed}` in the shell that starts the bench, or /etc/security/limits.conf) \
             or use fewer clients",
            lim.rlim_cur
        );
    }
    Ok(lim.rlim_cur)
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU time and memory of one process at one instant.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    pub at: Instant,
    /// utime + stime, seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// `None` when the process is gone or unreadable.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces and parentheses).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        at,
        cpu_s: (utime + stime) as f64 / clk_tck(),
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

/// CPU % of one core between two samples.
pub fn cpu_percent(a: &ProcSample, b: &ProcSample) -> f64 {
    let wall = b.at.duration_since(a.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    (b.cpu_s - a.cpu_s) / wall * 100.0
}

/// Machine-wide (idle, total) jiffies from /proc/stat.
pub fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((idle, total))
}

/// The machine's idle share (percent of all CPUs) between two `machine_jiffies` readings.
pub fn idle_percent(a: (u64, u64), b: (u64, u64)) -> Option<f64> {
    let total = b.1.checked_sub(a.1)?;
    (total > 0).then(|| (b.0.saturating_sub(a.0)) as f64 / total as f64 * 100.0)
}

/// The process that listens on TCP `port` (loopback or any address), found through
/// /proc/net/tcp{,6} and the owners of the socket inodes.
pub fn listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let lport = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && lport == Some(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Processes whose command name (/proc/PID/comm) is `name`.
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(
            authority("http://127.0.0.1:8000", "http", 80).unwrap(),
            ("127.0.0.1".into(), 8000)
        );
        assert_eq!(
            authority("mqtt://broker/", "mqtt", 1883).unwrap(),
            ("broker".into(), 1883)
        );
        assert_eq!(
            authority("mqtt://u:p@[::1]:1884", "mqtt", 1883).unwrap(),
            ("::1".into(), 1884)
        );
        assert!(authority("ws://x", "http", 80).is_err());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            "abcde"
        );
    }

    #[test]
    fn a_histogram_is_read_from_metrics_and_differenced() {
        let text = |n: [u64; 4], sum: f64| {
            format!(
                "# HELP seano_commit_seconds Seconds to write and commit one batch.\n\
                 # TYPE seano_commit_seconds histogram\n\
                 seano_commit_seconds_bucket{{instance=\"vm\",le=\"0.005\"}} {}\n\
                 seano_commit_seconds_bucket{{instance=\"vm\",le=\"0.05\"}} {}\n\
                 seano_commit_seconds_bucket{{instance=\"vm\",le=\"0.5\"}} {}\n\
                 seano_commit_seconds_bucket{{instance=\"vm\",le=\"+Inf\"}} {}\n\
                 seano_commit_seconds_sum{{instance=\"vm\"}} {sum}\n\
                 seano_commit_seconds_count{{instance=\"vm\"}} {}\n\
                 seano_commit_seconds_other 7\n\
                 seano_batch_size_bucket{{instance=\"vm\",le=\"1\"}} 99\n",
                n[0], n[1], n[2], n[3], n[3]
            )
        };
        let a = Histogram::parse(&text([1, 2, 2, 2], 0.01), "seano_commit_seconds").unwrap();
        assert_eq!(a.count, 2);
        assert_eq!(a.buckets.len(), 4);
        let b =
            Histogram::parse(&text([11, 110, 201, 202], 10.01), "seano_commit_seconds").unwrap();
        let d = b.since(&a);
        assert_eq!(d.count, 200);
        assert_eq!(d.buckets[0], (0.005, 10));
        assert!((d.mean().unwrap() - 0.05).abs() < 1e-9);
        assert_eq!(d.quantile_bound(0.5), Some(0.05));
        assert_eq!(d.quantile_bound(0.99), Some(0.5));
        assert_eq!(d.quantile_bound(1.0), Some(f64::INFINITY));
        assert_eq!(Histogram::default().quantile_bound(0.99), None);
        assert!(Histogram::parse("nothing here", "seano_commit_seconds").is_none());
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
    }
}

//! What `/proc` says about a process (this one, or the server by pid): its open-file limits,
//! checked before a run opens thousands of sockets, and its resident memory (`VmRSS`).

/// File descriptors a process needs besides its sockets (listeners, pipes, database, ...).
pub const FD_MARGIN: u64 = 128;

/// The soft and hard open-file limits of a process (`self` or a pid); `u64::MAX` = unlimited.
fn open_files_limit(pid: &str) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let parse = |v: &str| if v == "unlimited" { Some(u64::MAX) } else { v.parse().ok() };
    Some((parse(fields.next()?)?, parse(fields.next()?)?))
}

/// Raises this process's soft open-file limit towards `needed` (at most the hard limit), so a
/// run with thousands of sockets needs no `ulimit -n` first; a spawned server inherits it.
pub fn raise_fd_limit(needed: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= needed as libc::rlim_t {
            return;
        }
        limit.rlim_cur = limit.rlim_max.min(needed as libc::rlim_t);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// Fails with a clear message when `who`'s soft open-file limit is below `needed`; returns the
/// limit (`None` when /proc does not say).
pub fn check_fd_limit(who: &str, pid: &str, needed: u64) -> Result<Option<(u64, u64)>, String> {
    let limit = open_files_limit(pid);
    if let Some((soft, hard)) = limit {
        if soft < needed {
            return Err(format!(
                "{who} may open {soft} files (soft limit; hard {}), but this run needs about {needed}: \
                 raise it with `ulimit -n {needed}` (at most the hard limit) or open fewer sockets",
                describe_count(hard)
            ));
        }
    }
    Ok(limit)
}

pub fn describe_limit(limit: Option<(u64, u64)>) -> String {
    match limit {
        Some((soft, hard)) => format!("soft {} / hard {}", describe_count(soft), describe_count(hard)),
        None => "unknown".into(),
    }
}

fn describe_count(n: u64) -> String {
    if n == u64::MAX {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

pub use crate::process::rss_kib;

pub fn kib(n: u64) -> String {
    format!("{:.1} MiB ({n} KiB)", n as f64 / 1024.0)
}

/// utime + stime of a process in clock ticks (`/proc/<pid>/stat`, fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when it cannot be asked).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// A process's CPU time (user + system) from one point on: `per_op` divides what it used since
/// by a count of operations.
pub struct CpuMeter {
    pid: u32,
    start: Option<u64>,
}

impl CpuMeter {
    pub fn start(pid: u32) -> CpuMeter {
        CpuMeter { pid, start: cpu_ticks(pid) }
    }

    /// CPU seconds used since `start`.
    pub fn used_secs(&self) -> Option<f64> {
        let (start, now) = (self.start?, cpu_ticks(self.pid)?);
        Some(now.saturating_sub(start) as f64 / clock_ticks() as f64)
    }
}

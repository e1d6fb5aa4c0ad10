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

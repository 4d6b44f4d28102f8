//! Measuring a child process from outside, the same way for either side: CPU time
//! from `/proc/PID/stat` at chosen instants, peak RSS and total CPU from `wait4`,
//! and a clock (`CLOCK_MONOTONIC`) that means the same in every process.

use std::io;
use std::time::Duration;

/// Nanoseconds of `CLOCK_MONOTONIC`: the clock `Instant` reads, comparable across
/// processes of one machine.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User plus system CPU ticks of all threads of a process, from the text of its
/// `/proc/PID/stat` (fields 14 and 15, counted after the parenthesised name, which
/// may itself hold spaces and parentheses).
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time a running process has used so far.
pub(crate) fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&stat)
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/stat: unexpected format")))?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Whether a child has ended (a zombie waiting to be reaped, or gone).
pub(crate) fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_none_or(|state| matches!(state, "Z" | "X")),
        Err(_) => true,
    }
}

/// A value of `/proc/PID/status`, e.g. `Threads` or `VmHWM` (without its unit).
pub(crate) fn parse_status_field(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Threads of a running process.
pub(crate) fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_field(&status, "Threads")
}

/// How a child ended and what it used over its whole life.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exit {
    /// Exit code, or `None` when a signal ended it.
    pub(crate) code: Option<i32>,
    pub(crate) peak_rss_bytes: u64,
}

/// Reaps child `pid` with `wait4`, which gives its resource usage. The child's
/// `std::process::Child` must not be waited for afterwards.
pub(crate) fn wait_child(pid: u32) -> io::Result<Exit> {
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a status and a rusage owned by this frame.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Exit {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        // Linux gives kilobytes.
        peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
    })
}

/// The local ports of UDP sockets in the text of `/proc/net/udp` (or `udp6`).
fn parse_udp_ports(table: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let local = line.split_whitespace().nth(1)?;
            u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
        })
        .collect()
}

/// Whether every one of `ports` has a UDP socket bound on this machine.
pub(crate) fn udp_ports_bound(ports: &[u16]) -> bool {
    let mut bound = Vec::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            bound.extend(parse_udp_ports(&text));
        }
    }
    ports.iter().all(|p| bound.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_from_a_stat_line() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 7 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_ticks(line), Some(325));
        assert_eq!(parse_stat_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
        // This process's own stat parses.
        assert!(cpu_time(std::process::id()).is_ok());
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tffmpeg\nVmHWM:\t  123456 kB\nThreads:\t7\n";
        assert_eq!(parse_status_field(status, "VmHWM"), Some(123_456));
        assert_eq!(parse_status_field(status, "Threads"), Some(7));
        assert_eq!(parse_status_field(status, "VmRSS"), None);
        assert!(threads(std::process::id()).is_some_and(|n| n >= 1));
    }

    #[test]
    fn udp_ports_from_the_socket_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             12: 00000000:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0\n\
             13: 0100007F:C350 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0\n";
        assert_eq!(parse_udp_ports(table), vec![8080, 50000]);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(udp_ports_bound(&[socket.local_addr().unwrap().port()]));
    }
}

//! Clock skew with libfaketime. When the clock nemesis is on, every peer starts with
//! libfaketime preloaded, reading its offset from a file of its own (`peers/clock-N`,
//! `+0` at first, re-read every second). Skewing a peer rewrites its file; libfaketime
//! then shifts what the peer's wall clock (`CLOCK_REALTIME`) says, so the peer sees its
//! clock jump by the offset and run on from there. The monotonic clock, which Raft's
//! timers use, is left alone: real machines' monotonic clocks do not jump either.
//!
//! Each skew is confirmed three ways: libfaketime is mapped into the peer's process, a probe
//! process under the same file sees the offset, and, for a clock moved ahead, the `Date`
//! header of the peer's HTTP answers shows it. (A clock moved back cannot be seen in the
//! header: hyper refreshes its cached date only once the clock passes the next second it
//! expected, so the header stands still until the clock catches up.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::http;
use super::peers::http_addr;

/// Where Debian and Ubuntu's `libfaketime` package puts the library, per architecture.
const LIB: &str = "faketime/libfaketime.so.1";

/// The preloadable library, or an error that says how to install it.
pub fn find_libfaketime() -> Result<PathBuf, String> {
    let mut dirs = vec![PathBuf::from("/usr/lib"), PathBuf::from("/usr/local/lib"), PathBuf::from("/usr/lib64")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with("-linux-gnu")));
    }
    dirs.iter().map(|d| d.join(LIB)).find(|p| p.is_file()).ok_or_else(|| {
        format!(
            "the clock nemesis needs libfaketime, which is not installed (looked for {LIB} under {}); \
             install it with `apt-get install -y faketime libfaketime`",
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}

/// The file libfaketime reads peer `id`'s offset from.
pub fn file(dir: &Path, id: u64) -> PathBuf {
    dir.join("peers").join(format!("clock-{id}"))
}

/// The environment that makes a peer run under libfaketime; creates its offset file (at
/// `+0`, the true time) if it does not exist yet.
pub fn preload_env(lib: &Path, dir: &Path, id: u64) -> Result<Vec<(String, String)>, String> {
    let path = file(dir, id);
    if !path.exists() {
        write_offset(&path, 0)?;
    }
    Ok(vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), path.display().to_string()),
        ("FAKETIME_CACHE_DURATION".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ])
}

/// Sets peer `id`'s wall clock `offset` seconds off the true time (0: back to true time).
pub fn set(dir: &Path, id: u64, offset: i64) -> Result<(), String> {
    write_offset(&file(dir, id), offset)
}

fn write_offset(path: &Path, offset: i64) -> Result<(), String> {
    // Written aside and renamed, so libfaketime never reads half a line.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{offset:+}\n")).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Confirms that peer `id` (process `pid`) runs `offset` seconds off; returns how it was seen.
pub fn confirm(lib: &Path, dir: &Path, id: u64, pid: u32, offset: i64, timeout: Duration) -> Result<String, String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("cannot read /proc/{pid}/maps of peer {id}: {e}"))?;
    if !maps.contains("libfaketime") {
        return Err(format!("peer {id} (pid {pid}) does not have libfaketime loaded; its clock cannot be skewed"));
    }
    let probe = probe(lib, dir, id)?;
    if (probe - offset).abs() > 1 {
        return Err(format!("a probe under peer {id}'s clock file sees {probe:+} s, not {offset:+} s"));
    }
    if offset > 0 {
        await_offset(id, offset, timeout)?;
        return Ok(format!("peer {id}: libfaketime loaded, probe {probe:+} s, Date header {offset:+} s"));
    }
    Ok(format!("peer {id}: libfaketime loaded, probe {probe:+} s"))
}

/// The offset `date` sees when run under peer `id`'s clock file.
fn probe(lib: &Path, dir: &Path, id: u64) -> Result<i64, String> {
    let before = unix_now();
    let out = std::process::Command::new("date")
        .arg("+%s")
        .envs(preload_env(lib, dir, id)?)
        .output()
        .map_err(|e| format!("cannot run `date` under libfaketime: {e}"))?;
    let seen: i64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("`date +%s` under libfaketime printed {:?}", String::from_utf8_lossy(&out.stdout)))?;
    Ok(seen - before)
}

/// How far peer `id`'s wall clock is off, in seconds, as its `Date` header tells.
pub fn observed_offset(id: u64) -> Result<i64, String> {
    let before = unix_now();
    let r = http::get(http_addr(id), "/health", Duration::from_secs(1)).map_err(|e| e.to_string())?;
    let date = r.date.ok_or_else(|| format!("peer {id}'s answer carries no Date header"))?;
    let theirs = parse_http_date(&date).ok_or_else(|| format!("peer {id} sent a Date header I cannot read: {date}"))?;
    Ok(theirs - before)
}

/// Waits until peer `id`'s clock is `offset` seconds off (within 2 s: the header has
/// whole seconds, libfaketime re-reads its file every second).
pub fn await_offset(id: u64, offset: i64, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = observed_offset(id);
        match &seen {
            Ok(o) if (o - offset).abs() <= 2 => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "peer {id}'s clock did not move to {offset:+} s within {timeout:?} (last seen: {}); \
                     is libfaketime working for this binary?",
                    match seen {
                        Ok(o) => format!("{o:+} s"),
                        Err(e) => e,
                    }
                ))
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Seconds since the epoch of an IMF-fixdate, e.g. `Tue, 24 Nov 2026 01:05:52 GMT`.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace().skip(1);
    let day: i64 = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == name)? as i64
        + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    // Howard Hinnant's days-from-civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Tue, 29 Feb 2000 01:01:01 GMT"), Some(951_782_400 + 3_661));
        assert_eq!(parse_http_date("Wed, 31 Dec 2025 23:59:59 GMT"), Some(1_767_225_599));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn offsets_are_written_signed() {
        let dir = std::env::temp_dir().join(format!("jepsen-clock-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("peers")).unwrap();
        set(&dir, 2, -3600).unwrap();
        assert_eq!(std::fs::read_to_string(file(&dir, 2)).unwrap(), "-3600\n");
        set(&dir, 2, 0).unwrap();
        assert_eq!(std::fs::read_to_string(file(&dir, 2)).unwrap(), "+0\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

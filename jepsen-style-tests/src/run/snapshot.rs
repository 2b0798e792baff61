//! The snapshot-crash nemesis: kill -9 a follower right after its log shows a snapshot
//! step, restart it, and wait until it caught up.
//!
//! - `build`: the follower builds a snapshot of its own (`snapshot built`, logged once the
//!   snapshot is persisted, before the log before it is purged).
//! - `install`: the follower is killed and kept down until the leader's log is purged past
//!   the follower's last entry, so that on restart it must receive the leader's snapshot;
//!   it is killed again right after `snapshot installed from leader`, then restarted.
//!
//! The kill follows the log line within a few milliseconds: it lands in the steps after
//! the snapshot is written (purging, applying what follows), not inside the write itself.
//! For that, switchboard's crash points (`SWITCHBOARD_FAILPOINT`, `src/raft/failpoint.rs`):
//! the follower is restarted with one armed, before or after the snapshot it builds or
//! installs is written, and aborts there; the fault fails unless its log shows
//! `failpoint <name> fired` and it exited. Then it is restarted unarmed and must catch up.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::faults::leader;
use super::filler::Filler;
use super::http;
use super::logwatch::LogWatch;
use super::peers::{http_addr, Peers};

const REQUEST: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(100);
/// Longest wait for the leader to purge past a dead follower's log.
const PURGE_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for a restarted follower to receive the snapshot.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for a follower restarted with a crash point armed to get there.
const FAILPOINT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for a restarted follower to catch up with the leader.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(20);

/// `target`, or the next peer after it when it leads: the nemesis crashes a follower.
pub fn follower(target: u64, ids: &[u64]) -> u64 {
    if leader(ids) != Some(target) {
        return target;
    }
    let at = ids.iter().position(|&id| id == target).unwrap_or(0);
    ids[(at + 1) % ids.len()]
}

/// Waits (up to `timeout`) for `snapshot built` in peer `id`'s log, then kills it. The
/// nemesis writes meanwhile (`filler.rs`), so the follower gets there whatever the workload.
pub fn kill_after_build(peers: &mut Peers, id: u64, timeout: Duration) -> Result<String, String> {
    let started = Instant::now();
    let mut watch = LogWatch::from_end(&peers.log_path(id));
    let filler = Filler::start(&up(peers));
    let line = watch
        .wait_for("snapshot built", timeout)
        .map_err(|e| format!("{e}: the follower built no snapshot in time (too few writes for --snapshot-every?)"))?;
    peers.kill(id)?;
    let filled = filler.finish();
    Ok(format!(
        "killed right after `{}` (waited {:.1} s for it; nemesis writes: {filled})",
        summary(&line),
        started.elapsed().as_secs_f64()
    ))
}

/// kill -9 peer `id`, restart it with `failpoint` armed and wait until it aborted there
/// (building a snapshot of its own); it stays down until the heal.
pub fn crash_at_build(peers: &mut Peers, id: u64, failpoint: &str) -> Result<String, String> {
    peers.kill(id)?;
    let started = Instant::now();
    let filled = armed_crash(peers, id, failpoint)?;
    Ok(format!(
        "failpoint {failpoint} fired {:.1} s after the restart (nemesis writes: {filled})",
        started.elapsed().as_secs_f64()
    ))
}

/// Starts peer `id` with `failpoint` armed and waits until it logged that it fired and
/// exited, writing meanwhile; returns how many writes of the nemesis that took.
fn armed_crash(peers: &mut Peers, id: u64, failpoint: &str) -> Result<u64, String> {
    let mut watch = LogWatch::from_end(&peers.log_path(id));
    let filler = Filler::start(&up(peers));
    peers.start_armed(id, failpoint)?;
    let status =
        peers.await_exit(id, FAILPOINT_TIMEOUT).map_err(|e| format!("failpoint {failpoint} did not fire: {e}"))?;
    let filled = filler.finish();
    watch
        .wait_for(&format!("failpoint {failpoint} fired"), Duration::from_secs(1))
        .map_err(|e| format!("peer {id} exited ({status}) without firing failpoint {failpoint}: {e}"))?;
    Ok(filled)
}

/// The members that are up (not killed or paused).
fn up(peers: &Peers) -> Vec<u64> {
    peers.ids().into_iter().filter(|&p| peers.is_running(p)).collect()
}

/// Peer `id`'s last log index, then kill -9: the first half of the `install` fault.
pub fn kill_for_install(peers: &mut Peers, id: u64) -> Result<u64, String> {
    let last = status(id)?.get("last_log_index").and_then(Value::as_u64).unwrap_or(0);
    peers.kill(id)?;
    Ok(last)
}

/// The second half: once the leader purged past `last`, restart the follower, crash it
/// (kill -9 right after it installed the leader's snapshot, or with `failpoint` armed),
/// restart it and wait until it caught up.
pub fn crash_during_install(peers: &mut Peers, id: u64, last: u64, failpoint: Option<&str>) -> Result<String, String> {
    let others: Vec<u64> = peers.ids().into_iter().filter(|&p| p != id).collect();
    let deadline = Instant::now() + PURGE_TIMEOUT;
    let filler = Filler::start(&up(peers));
    let purged = loop {
        let purged = leader(&others).and_then(|l| status(l).ok()).and_then(|s| s.get("purged_index")?.as_u64());
        match purged {
            Some(p) if p > last => break p,
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "the leader did not purge its log past peer {id}'s last entry {last} within {PURGE_TIMEOUT:?} \
                     (purged: {purged:?}, nemesis writes: {})",
                    filler.finish()
                ))
            }
            _ => std::thread::sleep(POLL),
        }
    };
    let filled = filler.finish();
    let crash = match failpoint {
        Some(point) => {
            armed_crash(peers, id, point)?;
            format!("restarted with failpoint {point} armed, which fired")
        }
        None => {
            let mut watch = LogWatch::from_end(&peers.log_path(id));
            peers.start(id)?;
            let line = watch.wait_for("snapshot installed from leader", INSTALL_TIMEOUT)?;
            peers.kill(id)?;
            format!("restarted, killed right after `{}`", summary(&line))
        }
    };
    peers.start(id)?;
    let index = await_caught_up(id, &others, CATCH_UP_TIMEOUT)?;
    Ok(format!(
        "down while the leader purged to {purged} (its log ended at {last}; nemesis writes: {filled}); {crash}; \
         restarted, caught up to {index}"
    ))
}

/// Restarts peer `id` (unless the fault left it running) and waits until it caught up
/// with the leader.
pub fn restart_and_catch_up(peers: &mut Peers, id: u64) -> Result<(), String> {
    if peers.pid(id).is_none() {
        peers.start(id)?;
    }
    let others: Vec<u64> = peers.ids().into_iter().filter(|&p| p != id).collect();
    await_caught_up(id, &others, CATCH_UP_TIMEOUT).map(|_| ())
}

/// Waits until peer `id` applied everything the leader (among `others`) had committed
/// when the wait began; returns that index.
fn await_caught_up(id: u64, others: &[u64], timeout: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    let mut goal = None;
    let mut seen = None;
    loop {
        if goal.is_none() {
            goal = leader(others).and_then(|l| status(l).ok()).and_then(|s| s.get("commit_index")?.as_u64());
        }
        if let Some(goal) = goal {
            seen = status(id).ok().and_then(|s| s.get("applied_index")?.as_u64());
            if seen.is_some_and(|a| a >= goal) {
                return Ok(goal);
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "peer {id} did not catch up within {timeout:?}: applied {seen:?}, the leader had committed {goal:?}"
            ));
        }
        std::thread::sleep(POLL);
    }
}

fn status(id: u64) -> Result<Value, String> {
    let r = http::get(http_addr(id), "/v1/cluster", REQUEST).map_err(|e| e.to_string())?;
    if r.status == 200 {
        Ok(r.body)
    } else {
        Err(format!("GET /v1/cluster on peer {id}: {}", r.describe()))
    }
}

/// A snapshot log line in short: its message and the index it covers, e.g.
/// `snapshot built` at index 359.
fn summary(line: &str) -> String {
    let message = ["snapshot installed from leader", "snapshot built"].into_iter().find(|m| line.contains(m));
    let index: Option<String> =
        line.rsplit_once("index: ").map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect());
    match (message, index) {
        (Some(m), Some(i)) => format!("{m}` at index `{i}"),
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn summaries_of_snapshot_lines() {
        let line = "2026-11-24T01:21:53Z  INFO switchboard::raft::state_machine: snapshot built \
                    last_applied=Some(LogId { leader_id: LeaderId { term: 1, node_id: 1 }, index: 359 }) bytes=15390";
        assert_eq!(super::summary(line), "snapshot built` at index `359");
    }
}

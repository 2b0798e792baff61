//! The nemesis's own writes, which move the Raft log on when a fault waits for it.
//!
//! The snapshot-crash faults need the log to grow: a follower builds a snapshot every
//! `--snapshot-every` applied entries, and the leader purges past a dead follower's last
//! entry only after a snapshot beyond it. The register, set and change-feed clients write
//! enough for that; the DNS workload alone commits a few entries per node death, so the
//! fault would wait in vain. While a fault waits, a `Filler` writes region `nemesis`
//! (no CIDRs: it matches no client, no workload reads it, and no change feed carries
//! regions) through the peers in turn, and counts the writes acknowledged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use super::http;
use super::peers::http_addr;

/// The region the filler writes.
pub const REGION: &str = "nemesis";
/// Pause between two writes: about 20 entries a second, a snapshot every two seconds with
/// the snapshot-crash default of 40.
const PACE: Duration = Duration::from_millis(50);
const REQUEST: Duration = Duration::from_secs(2);

/// Writes in a thread of its own until dropped.
pub struct Filler {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Filler {
    /// Starts writing through `through` (peers that are up), one after the other.
    pub fn start(through: &[u64]) -> Filler {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let (ids, flag, count) = (through.to_vec(), stop.clone(), acknowledged.clone());
        let thread = std::thread::Builder::new()
            .name("nemesis-filler".into())
            .spawn(move || write_until(&ids, &flag, &count))
            .ok();
        Filler { stop, acknowledged, thread }
    }

    /// Stops writing; returns how many writes were acknowledged.
    pub fn finish(mut self) -> u64 {
        self.halt();
        self.acknowledged.load(Ordering::SeqCst)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.halt();
    }
}

fn write_until(ids: &[u64], stop: &AtomicBool, acknowledged: &AtomicU64) {
    let body = json!({"cidrs": [], "fallback": []});
    let path = format!("/v1/regions/{REGION}");
    for &id in ids.iter().cycle() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if http::put(http_addr(id), &path, &body, REQUEST).is_ok_and(|r| r.status == 200) {
            acknowledged.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(PACE);
    }
}

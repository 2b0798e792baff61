//! The leader's timer for lazy sync: a region whose held changes have waited
//! `sync.lazy_interval_ms` gets them released in one command.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::peer::Peer;
use crate::state::Command;

const TICK: Duration = Duration::from_millis(100);

pub async fn run(peer: Arc<Peer>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Since when this leader has seen each region holding changes.
    let mut holding: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !peer.is_leader() {
            holding.clear();
            continue;
        }
        let now = Instant::now();
        let (interval, held): (Duration, Vec<String>) = {
            let applied = peer.state.read();
            let meta = &applied.state.meta;
            let held = meta.feeds.iter().filter(|(_, f)| !f.held.is_empty()).map(|(r, _)| r.clone()).collect();
            (Duration::from_millis(meta.sync.lazy_interval_ms), held)
        };
        holding.retain(|r, _| held.contains(r));
        let mut due = Vec::new();
        for region in held {
            let since = *holding.entry(region.clone()).or_insert(now);
            if now.duration_since(since) >= interval {
                due.push(region);
            }
        }
        if due.is_empty() {
            continue;
        }
        match peer.write_as_leader(Command::ReleaseLazy { regions: due.clone() }).await {
            Ok(_) => {
                for region in &due {
                    holding.remove(region);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not release lazy sync batches"),
        }
    }
}

//! Execution: the leader's loop. On every tick it commits due health transitions, then
//! the differences between the decisions and the committed table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::analyse;
use crate::peer::Peer;
use crate::state::{Command, Reason};

const TICK: Duration = Duration::from_millis(100);
/// Changes of the table logged row by row at most; larger ones get one summary line.
const MAX_LOGGED_ROWS: usize = 100;
/// Without a change of state, metrics alone are re-examined this often.
const REANALYSE_EVERY: Duration = Duration::from_secs(1);

pub async fn run(peer: Arc<Peer>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut analysed: Option<(u64, Instant)> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let leading = peer.is_leader();
        peer.observations.set_leading(leading, now);
        if !leading {
            analysed = None;
            continue;
        }

        let transitions = {
            let applied = peer.state.read();
            peer.observations.transitions(&applied.state, now)
        };
        if !transitions.is_empty() {
            for (node, health) in &transitions {
                tracing::info!(node = %node, health = ?health, "node health changed");
            }
            if let Err(e) = peer.write_as_leader(Command::SetHealth { changes: transitions }).await {
                tracing::warn!(error = %e, "could not commit health changes");
            }
        }

        let applied_index = peer.state.read().last_applied.map(|l| l.index).unwrap_or(0);
        let due = match analysed {
            None => true,
            Some((index, at)) => index != applied_index || now.duration_since(at) >= REANALYSE_EVERY,
        };
        if !due {
            continue;
        }
        analysed = Some((applied_index, now));
        let metrics = peer.observations.metrics();
        // The analysis walks every (domain, region): off the async workers, so that DNS and
        // HTTP on the leader are not held up by it.
        let analyser = peer.clone();
        let Ok((changes, previous)) = tokio::task::spawn_blocking(move || {
            let applied = analyser.state.read();
            let changes = analyse::changes(&applied.state, &metrics);
            let previous: Vec<Option<String>> = changes
                .iter()
                .map(|c| applied.state.dispatch.get(&c.domain, &c.region).and_then(|r| r.node.map(String::from)))
                .collect();
            (changes, previous)
        })
        .await
        else {
            continue;
        };
        if changes.is_empty() {
            continue;
        }
        let at_ms = crate::peer::now_ms();
        match peer.write_as_leader(Command::Dispatch { changes: changes.clone(), at_ms }).await {
            Ok(_) => {
                let committed = Instant::now();
                // One line per changed row, up to a point: a bulk load logs a summary.
                let detailed = changes.len() <= MAX_LOGGED_ROWS;
                if !detailed {
                    tracing::info!(rows = changes.len(), "dispatch changed (rows not listed one by one)");
                }
                for (c, old) in changes.iter().zip(previous) {
                    if detailed {
                        tracing::info!(
                            domain = %c.domain, region = %c.region, node = ?c.node, previous = ?old,
                            reason = ?c.reason, "dispatch changed"
                        );
                    }
                    peer.metrics.dispatch_changes.inc();
                    if c.reason == Reason::Failover {
                        peer.metrics.failovers.inc();
                        if let Some(heard) = old.as_deref().and_then(|n| peer.observations.last_heard(n)) {
                            peer.metrics.failover_seconds.observe(committed.duration_since(heard).as_secs_f64());
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not commit dispatch changes"),
        }
    }
}

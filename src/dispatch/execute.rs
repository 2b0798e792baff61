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
/// Without a change of state, metrics alone are re-examined this often: a pass over every
/// domain. In between, a change of state is followed by a pass over the domains it
/// touched, unless it changed what every decision depends on (nodes, sites, regions,
/// policy): while domains are loaded, each pass then costs what the new domains cost, not
/// what the whole table does.
const REANALYSE_EVERY: Duration = Duration::from_secs(1);

/// The last pass: the applied index seen before it, when the last pass over every domain
/// began, and what the decisions depended on.
struct Analysed {
    index: u64,
    full_at: Instant,
    basis: analyse::Basis,
}

pub async fn run(peer: Arc<Peer>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut analysed: Option<Analysed> = None;
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
        let due = match &analysed {
            None => true,
            Some(a) => a.index != applied_index || now.duration_since(a.full_at) >= REANALYSE_EVERY,
        };
        if !due {
            continue;
        }
        // A pass over the domains touched since the last pass is enough if that one was
        // recent and nothing else changed (checked on the state the pass reads).
        let partial = analysed
            .as_ref()
            .filter(|a| now.duration_since(a.full_at) < REANALYSE_EVERY)
            .map(|a| (a.index, a.basis.clone()));
        let metrics = peer.observations.metrics();
        // A full pass walks every (domain, region): off the async workers, so that DNS and
        // HTTP on the leader are not held up by it.
        let analyser = peer.clone();
        let Ok((changes, previous, basis, full)) = tokio::task::spawn_blocking(move || {
            let applied = analyser.state.read();
            let basis = analyse::Basis::of(&applied.state);
            let (changes, full) = match partial {
                Some((since, before)) if before == basis => (
                    analyse::changes_of(&applied.state, &metrics, analyse::touched_since(&applied.state, since)),
                    false,
                ),
                _ => (analyse::changes(&applied.state, &metrics), true),
            };
            let previous: Vec<Option<String>> = changes
                .iter()
                .map(|c| applied.state.dispatch.get(&c.domain, &c.region).and_then(|r| r.node.map(String::from)))
                .collect();
            (changes, previous, basis, full)
        })
        .await
        else {
            continue;
        };
        let full_at = match (&analysed, full) {
            (Some(a), false) => a.full_at,
            _ => now,
        };
        analysed = Some(Analysed { index: applied_index, full_at, basis });
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
            Err(e) => {
                tracing::warn!(error = %e, "could not commit dispatch changes");
                // The next pass looks at every domain again, these ones included.
                analysed = None;
            }
        }
    }
}

//! The leader's loop: expire leases, run built-in actions, forget old history.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::ActionsConfig;
use crate::peer::{now_ms, Peer};
use crate::state::{Command, Detail};

const TICK: Duration = Duration::from_millis(100);
/// How often the leader looks for finished history past its retention.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

pub async fn run(peer: Arc<Peer>, retention: ActionsConfig, shutdown: CancellationToken) {
    let mut last_prune = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !peer.is_leader() {
            continue;
        }
        let at_ms = now_ms();
        let (expired, builtins) = {
            let applied = peer.state.read();
            let engine = &applied.state.engine;
            // Leases that ran out, or that a leader whose clock ran ahead stamped (re-based).
            let expired = engine.leases_to_expire(at_ms);
            let room = (engine.policy.max_active as usize).saturating_sub(engine.running());
            let builtins: Vec<u64> = engine
                .queue()
                .into_iter()
                .filter(|a| a.is_builtin() && engine.is_due(a, at_ms))
                .take(room)
                .map(|a| a.id)
                .collect();
            (expired, builtins)
        };
        if expired {
            if let Err(e) = peer.write_as_leader(Command::ExpireLeases { at_ms }).await {
                tracing::warn!(error = %e, "could not expire action leases");
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = tokio::time::Instant::now();
            prune(&peer, &retention, at_ms).await;
        }
        if !builtins.is_empty() {
            match peer.write_as_leader(Command::RunBuiltins { ids: builtins.clone(), at_ms }).await {
                Ok(_) => tracing::info!(actions = ?builtins, "built-in actions carried out"),
                Err(e) => tracing::warn!(error = %e, "could not run built-in actions"),
            }
        }
    }
}

/// Commits `PruneFinished` when finished actions or done anomalies are past retention.
async fn prune(peer: &Peer, retention: &ActionsConfig, at_ms: u64) {
    let (keep_ms, keep_max) = (retention.retain_ms, retention.retain_max);
    if !peer.state.read().state.engine.has_prunable(at_ms, keep_ms, keep_max) {
        return;
    }
    match peer.write_as_leader(Command::PruneFinished { at_ms, keep_ms, keep_max }).await {
        Ok(outcome) => {
            let forgotten = match outcome.detail {
                Some(Detail::Count(n)) => n,
                _ => 0,
            };
            tracing::info!(forgotten, "forgot finished actions and anomalies past retention")
        }
        Err(e) => tracing::warn!(error = %e, "could not prune finished actions"),
    }
}

//! The leader's loop: expire leases, run built-in actions.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::peer::{now_ms, Peer};
use crate::state::Command;

const TICK: Duration = Duration::from_millis(100);

pub async fn run(peer: Arc<Peer>, shutdown: CancellationToken) {
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
        if !builtins.is_empty() {
            match peer.write_as_leader(Command::RunBuiltins { ids: builtins.clone(), at_ms }).await {
                Ok(_) => tracing::info!(actions = ?builtins, "built-in actions carried out"),
                Err(e) => tracing::warn!(error = %e, "could not run built-in actions"),
            }
        }
    }
}

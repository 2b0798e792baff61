//! Prometheus metrics of one peer, served at `/metrics`. Counters and histograms are
//! updated where things happen; the Raft gauges are read from Raft's own metrics at
//! scrape time.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Most distinct action types that get a label of their own in `coordination_actions_total`;
/// further types are counted as `other`, so that the label set stays bounded whatever
/// clients submit. The built-in types always have their own.
pub const MAX_ACTION_TYPE_LABELS: usize = 64;

pub struct Metrics {
    registry: Registry,
    /// The action types that have a label of their own.
    action_types: std::sync::Mutex<std::collections::HashSet<String>>,
    pub term: IntGauge,
    pub leader_id: IntGauge,
    pub is_leader: IntGauge,
    pub commit_index: IntGauge,
    pub applied_index: IntGauge,
    pub last_log_index: IntGauge,
    pub proposals: IntCounter,
    pub proposed_commands: IntCounter,
    pub batch_size: Histogram,
    pub apply_seconds: Histogram,
    pub write_seconds: Histogram,
    pub forwarded_writes: IntCounter,
    pub snapshots_built: IntCounter,
    pub snapshots_installed: IntCounter,
    pub http_requests: IntCounterVec,
    pub heartbeats: IntCounter,
    pub heartbeats_dropped: IntCounter,
    pub heartbeats_refused: IntCounter,
    pub dispatch_changes: IntCounter,
    pub failovers: IntCounter,
    pub failover_seconds: Histogram,
    pub dns_queries: IntCounterVec,
    pub dns_answer_seconds: Histogram,
    pub dns_stale_answers: IntCounter,
    pub dns_rrl_dropped: IntCounter,
    pub dns_rrl_slipped: IntCounter,
    pub actions: IntCounterVec,
    pub action_conflicts: IntCounterVec,
    pub resolution_seconds: Histogram,
    pub active_actions: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
            registry.register(Box::new(h.clone())).expect("unique metric");
            h
        };
        let seconds = || prometheus::exponential_buckets(0.000_05, 2.0, 18).expect("valid buckets");
        let http_requests = IntCounterVec::new(
            Opts::new("switchboard_http_requests_total", "HTTP requests answered, by method and status"),
            &["method", "status"],
        )
        .expect("valid metric");
        registry.register(Box::new(http_requests.clone())).expect("unique metric");
        let actions = IntCounterVec::new(
            Opts::new("coordination_actions_total", "Actions accepted by this peer, by type and source"),
            &["type", "source"],
        )
        .expect("valid metric");
        registry.register(Box::new(actions.clone())).expect("unique metric");
        let action_conflicts = IntCounterVec::new(
            Opts::new(
                "coordination_conflicts_total",
                "Conflicts between actions detected for actions this peer accepted",
            ),
            &["conflict_type"],
        )
        .expect("valid metric");
        registry.register(Box::new(action_conflicts.clone())).expect("unique metric");
        let dns_queries = IntCounterVec::new(
            Opts::new("switchboard_dns_queries_total", "DNS queries answered, by response code and query type"),
            &["rcode", "qtype"],
        )
        .expect("valid metric");
        registry.register(Box::new(dns_queries.clone())).expect("unique metric");
        Self {
            dns_queries,
            dns_answer_seconds: histogram(
                "switchboard_dns_answer_seconds",
                "Time to answer one DNS query, from receipt to the reply being ready",
                prometheus::exponential_buckets(0.000_002, 2.0, 16).expect("valid buckets"),
            ),
            dns_stale_answers: counter(
                "switchboard_dns_stale_answers_total",
                "Queries answered SERVFAIL because this peer heard no leader for longer than dns.max_stale_ms",
            ),
            dns_rrl_dropped: counter(
                "switchboard_dns_rrl_dropped_total",
                "UDP responses not sent because their client prefix was over dns.rrl_rate",
            ),
            dns_rrl_slipped: counter(
                "switchboard_dns_rrl_slipped_total",
                "UDP responses sent truncated (TC=1) instead, every dns.rrl_slip-th over the rate",
            ),
            term: gauge("switchboard_raft_term", "Current Raft term"),
            leader_id: gauge("switchboard_raft_leader_id", "Id of the current leader, 0 when none is known"),
            is_leader: gauge("switchboard_raft_is_leader", "1 while this peer is the leader"),
            commit_index: gauge("switchboard_raft_commit_index", "Highest log index known to be committed"),
            applied_index: gauge("switchboard_raft_applied_index", "Highest log index applied to the state machine"),
            last_log_index: gauge("switchboard_raft_last_log_index", "Highest log index in this peer's log"),
            proposals: counter("switchboard_raft_proposals_total", "Log entries proposed by this peer as leader"),
            proposed_commands: counter("switchboard_raft_proposed_commands_total", "Commands carried by those entries"),
            batch_size: histogram(
                "switchboard_raft_batch_commands",
                "Commands per proposed log entry (group commit)",
                prometheus::exponential_buckets(1.0, 2.0, 11).expect("valid buckets"),
            ),
            apply_seconds: histogram("switchboard_raft_apply_seconds", "Time to apply one batch of entries", seconds()),
            write_seconds: histogram(
                "switchboard_write_seconds",
                "Time from a write's arrival to its commit",
                seconds(),
            ),
            forwarded_writes: counter("switchboard_forwarded_writes_total", "Writes this peer forwarded to the leader"),
            snapshots_built: counter("switchboard_raft_snapshots_total", "Snapshots built by this peer"),
            snapshots_installed: counter(
                "switchboard_raft_snapshots_installed_total",
                "Snapshots received from a leader",
            ),
            heartbeats: counter("switchboard_heartbeats_total", "Heartbeats accepted by this peer"),
            heartbeats_dropped: counter(
                "switchboard_heartbeats_dropped_total",
                "Heartbeats this peer accepted but could not deliver to the leader",
            ),
            heartbeats_refused: counter(
                "switchboard_heartbeats_refused_total",
                "Forwarded heartbeats this peer refused because they were meant for another leader or term",
            ),
            dispatch_changes: counter(
                "switchboard_dispatch_changes_total",
                "Rows of the elected table changed by this peer as leader",
            ),
            failovers: counter(
                "switchboard_failovers_total",
                "Rows moved off a node that went down, by this peer as leader",
            ),
            failover_seconds: histogram(
                "switchboard_failover_seconds",
                "From the last heartbeat of a node that went down to the commit of its replacement",
                // Fine around the default down_after (1.5 s) and its target (2.45 s).
                vec![
                    0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.25, 2.5, 3.0, 4.0, 6.0, 10.0, 30.0,
                    60.0,
                ],
            ),
            actions,
            action_conflicts,
            resolution_seconds: histogram(
                "coordination_resolution_time_seconds",
                "From an action's arrival to its conflicts being decided (committed), for actions that had conflicts",
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            ),
            active_actions: gauge("coordination_active_actions", "Actions running now"),
            http_requests,
            registry,
            action_types: Default::default(),
        }
    }

    /// The label an action type is counted under: its own name while fewer than
    /// [`MAX_ACTION_TYPE_LABELS`] types have one (built-ins always), else `other`.
    pub fn action_type_label<'k>(&self, kind: &'k str) -> &'k str {
        if crate::state::actions::BUILTIN.contains(&kind) {
            return kind;
        }
        let mut known = self.action_types.lock().unwrap_or_else(|p| p.into_inner());
        if known.contains(kind) {
            return kind;
        }
        if known.len() < MAX_ACTION_TYPE_LABELS {
            known.insert(kind.to_string());
            return kind;
        }
        "other"
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_type_labels_are_bounded() {
        let m = Metrics::new();
        for i in 0..MAX_ACTION_TYPE_LABELS {
            let kind = format!("t{i}");
            assert_eq!(m.action_type_label(&kind), kind);
        }
        assert_eq!(m.action_type_label("t0"), "t0", "a type seen before keeps its label");
        assert_eq!(m.action_type_label("one-too-many"), "other");
        assert_eq!(m.action_type_label("drain_node"), "drain_node", "built-ins always have their own");
    }
}

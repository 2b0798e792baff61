//! The remediation queue: actions with conflict rules, priorities, dedup, a rate limit per
//! target, leases for external workers, and anomalies that become actions.
//!
//! Every decision (which action supersedes which, which one a worker gets, when a lease
//! has expired) is made while applying a command, from the state and the command alone:
//! times travel in the command (`at_ms`, stamped by the peer that accepted the request or
//! by the leader's timer), so every peer reaches the same queue.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Command, Error, State};

/// A lease that began less than this far ahead of the leader's clock is taken as it is.
pub const CLOCK_SLACK_MS: u64 = 1_000;

/// Action types the cluster carries out itself, through its own log.
pub const BUILTIN: &[&str] = &["drain_node", "restore_node", "failover_domain", "lock_domain", "pin_site"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Engine {
    pub actions: BTreeMap<u64, Action>,
    pub anomalies: BTreeMap<u64, Anomaly>,
    pub next_action: u64,
    pub next_anomaly: u64,
    pub policy: ActionPolicy,
    pub stats: Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Deterministic,
    AiDriven,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Completed,
    Failed,
    Superseded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub id: u64,
    pub kind: String,
    pub target: String,
    pub source: Source,
    /// 1 (highest) to 5.
    pub priority: u8,
    pub confidence: f64,
    /// Parameter name → canonical JSON text.
    pub parameters: BTreeMap<String, String>,
    pub status: Status,
    /// Set when superseded: the winner and the rule that decided.
    pub superseded_by: Option<(u64, String)>,
    pub attempts: u32,
    pub worker: Option<String>,
    pub lease_until_ms: Option<u64>,
    /// A retried action waits until then.
    pub not_before_ms: u64,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// What the worker (or the built-in executor) reported last.
    pub message: Option<String>,
    pub anomaly: Option<u64>,
    pub revision: u64,
}

impl Action {
    pub fn is_open(&self) -> bool {
        matches!(self.status, Status::Queued | Status::Running)
    }

    pub fn is_builtin(&self) -> bool {
        BUILTIN.contains(&self.kind.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyStatus {
    Open,
    Resolved,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub id: u64,
    pub report: AnomalyReport,
    pub action: Option<u64>,
    pub status: AnomalyStatus,
    pub revision: u64,
}

/// An anomaly as seed 002 describes it, plus the Alertmanager fingerprint when it came
/// from an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyReport {
    pub timestamp: String,
    pub kind: String,
    pub severity: String,
    pub confidence: f64,
    /// Detail name → canonical JSON text.
    pub details: BTreeMap<String, String>,
    pub recommended_action: Option<String>,
    pub source: Source,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionPolicy {
    /// An AI-driven action below this confidence loses a conflict (rule 3).
    pub confidence_threshold: f64,
    /// Most actions running at once.
    pub max_active: u32,
    /// Attempts before an action is `failed`.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff_ms: u64,
    /// At most `rate_limit` actions per target within `rate_window_ms`.
    pub rate_limit: u32,
    pub rate_window_ms: u64,
    /// Types that may not be queued or run at the same time, whatever their targets.
    pub exclusive: Vec<(String, String)>,
    pub revision: u64,
}

impl Default for ActionPolicy {
    fn default() -> Self {
        Self {
            confidence_threshold: 0.7,
            max_active: 10,
            max_attempts: 3,
            retry_backoff_ms: 5_000,
            rate_limit: 5,
            rate_window_ms: 60_000,
            exclusive: vec![
                ("node_remediation".into(), "resource_scaling".into()),
                ("model_inference".into(), "alert_correlation".into()),
            ],
            revision: 0,
        }
    }
}

/// Counters of the engine, replicated so that `GET /v1/status` is the same everywhere.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub conflicts_detected: u64,
    pub conflicts_resolved: u64,
    /// Per source: actions that finished (completed or failed).
    pub processed: BTreeMap<String, u64>,
}

/// A request for an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    pub kind: String,
    pub target: String,
    pub source: Source,
    pub priority: u8,
    pub confidence: f64,
    pub parameters: BTreeMap<String, String>,
}

/// What a claim handed out: the attempt the worker now holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub id: u64,
    pub worker: String,
    pub attempt: u32,
    pub started_ms: u64,
    pub lease_until_ms: u64,
}

/// What a submission did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub id: u64,
    /// The same action was already queued or running: this is its id.
    pub duplicate: bool,
    pub status: Status,
    /// 1-based place among the queued actions, when queued.
    pub position: Option<usize>,
    /// Conflicts decided: (conflict type, loser, winner, rule). A tie keeps both.
    pub conflicts: Vec<ConflictDecision>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictDecision {
    pub conflict_type: String,
    pub other: u64,
    /// The loser, or `None` for a tie.
    pub loser: Option<u64>,
    pub rule: Option<String>,
}

/// How one conflicting pair is settled: the rules of seed 002, in order.
/// Returns the loser's index (0 or 1) and the rule, or `None` for a tie.
pub fn settle(a: &Action, b: &Action, threshold: f64) -> Option<(usize, &'static str)> {
    // Rule 1: deterministic beats AI-driven.
    match (a.source, b.source) {
        (Source::Deterministic, Source::AiDriven) => return Some((1, "deterministic_over_ai")),
        (Source::AiDriven, Source::Deterministic) => return Some((0, "deterministic_over_ai")),
        _ => {}
    }
    // Rule 2: the higher priority (the smaller number) wins.
    if a.priority != b.priority {
        return Some((if a.priority < b.priority { 1 } else { 0 }, "higher_priority"));
    }
    // Rule 3: an AI-driven action below the confidence threshold loses.
    let weak = |x: &Action| x.source == Source::AiDriven && x.confidence < threshold;
    match (weak(a), weak(b)) {
        (true, false) => Some((0, "low_confidence")),
        (false, true) => Some((1, "low_confidence")),
        _ => None,
    }
}

impl Engine {
    /// The queued actions in the order workers get them: priority, then age.
    pub fn queue(&self) -> Vec<&Action> {
        let mut queued: Vec<&Action> = self.actions.values().filter(|a| a.status == Status::Queued).collect();
        queued.sort_by_key(|a| (a.priority, a.id));
        queued
    }

    pub fn running(&self) -> usize {
        self.actions.values().filter(|a| a.status == Status::Running).count()
    }

    fn conflict_type(&self, a: &Action, b: &Action) -> Option<&'static str> {
        if a.target == b.target {
            return Some("same_target");
        }
        let pair =
            |x: &str, y: &str| self.policy.exclusive.iter().any(|(p, q)| (p == x && q == y) || (p == y && q == x));
        pair(&a.kind, &b.kind).then_some("exclusive_types")
    }

    /// Whether a queued action's backoff has passed at `at_ms`. A backoff ending further
    /// ahead than any backoff can reach was set by a leader whose clock ran ahead of this
    /// one: it is due now rather than stalled by the difference of the clocks.
    pub fn is_due(&self, a: &Action, at_ms: u64) -> bool {
        let longest = self.policy.retry_backoff_ms.saturating_mul(1u64 << self.policy.max_attempts.min(20));
        a.not_before_ms <= at_ms || a.not_before_ms > at_ms.saturating_add(longest)
    }

    /// Whether the lease of a running action has run out at `at_ms`.
    pub fn lease_expired(a: &Action, at_ms: u64) -> bool {
        a.status == Status::Running && a.lease_until_ms.is_some_and(|l| l <= at_ms)
    }

    /// Whether a running action's lease began more than [`CLOCK_SLACK_MS`] after `at_ms`:
    /// it was stamped by a leader whose clock ran ahead of this one (or before this clock
    /// was stepped back), and by this clock it would end late by the difference. The slack
    /// leaves alone the milliseconds by which concurrent proposals' stamps can disagree
    /// with the log's order.
    pub fn lease_from_ahead(a: &Action, at_ms: u64) -> bool {
        a.status == Status::Running
            && a.lease_until_ms.is_some()
            && a.started_ms.is_some_and(|s| s > at_ms.saturating_add(CLOCK_SLACK_MS))
    }

    /// Whether an `ExpireLeases` at `at_ms` would change anything.
    pub fn leases_to_expire(&self, at_ms: u64) -> bool {
        self.actions.values().any(|a| Self::lease_expired(a, at_ms) || Self::lease_from_ahead(a, at_ms))
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.queue().iter().position(|a| a.id == id).map(|p| p + 1)
    }

    fn finish(&mut self, id: u64, status: Status, message: Option<String>, at_ms: u64, index: u64) {
        let Some(a) = self.actions.get_mut(&id) else { return };
        a.status = status;
        a.message = message;
        a.finished_ms = Some(at_ms);
        a.worker = None;
        a.lease_until_ms = None;
        a.revision = index;
        if matches!(status, Status::Completed | Status::Failed) {
            let source = serde_json::to_value(a.source).ok().and_then(|v| v.as_str().map(String::from));
            let processed = self.stats.processed.entry(source.unwrap_or_default()).or_default();
            *processed = processed.saturating_add(1);
        }
    }

    /// A running action that failed (or whose lease ran out): retried after a backoff
    /// while attempts remain, else failed.
    fn retry_or_fail(&mut self, id: u64, message: String, at_ms: u64, index: u64) {
        let max = self.policy.max_attempts;
        let backoff = self.policy.retry_backoff_ms;
        let Some(a) = self.actions.get_mut(&id) else { return };
        if a.attempts >= max {
            let message = format!("{message}; gave up after {} attempts", a.attempts);
            self.finish(id, Status::Failed, Some(message), at_ms, index);
            return;
        }
        a.status = Status::Queued;
        a.worker = None;
        a.lease_until_ms = None;
        a.message = Some(message);
        a.not_before_ms = at_ms.saturating_add(backoff.saturating_mul(1u64 << (a.attempts.saturating_sub(1)).min(20)));
        a.revision = index;
    }
}

/// Retention of finished actions and done anomalies: which of them are kept.
impl Engine {
    /// Whether an anomaly needs nothing more: resolved, or (not an alert, which must stay
    /// open to deduplicate its next firing) its action finished or gone.
    fn anomaly_done(&self, a: &Anomaly) -> bool {
        a.status == AnomalyStatus::Resolved
            || (a.report.fingerprint.is_none()
                && a.action.is_none_or(|id| self.actions.get(&id).is_none_or(|x| !x.is_open())))
    }

    /// The finished actions and done anomalies that [`Engine::prune_finished`] would forget.
    fn prunable(&self, at_ms: u64, keep_ms: u64, keep_max: u32) -> (Vec<u64>, Vec<u64>) {
        let too_old = |finished: Option<u64>| finished.is_some_and(|f| f.saturating_add(keep_ms) < at_ms);
        let finished: Vec<&Action> = self.actions.values().filter(|a| !a.is_open()).collect();
        let over = finished.len().saturating_sub(keep_max as usize);
        let actions: Vec<u64> = finished
            .iter()
            .enumerate()
            .filter(|(i, a)| *i < over || too_old(a.finished_ms))
            .map(|(_, a)| a.id)
            .collect();
        let done: Vec<&Anomaly> = self.anomalies.values().filter(|a| self.anomaly_done(a)).collect();
        let over = done.len().saturating_sub(keep_max as usize);
        let finished_at = |a: &Anomaly| a.action.and_then(|id| self.actions.get(&id)).and_then(|x| x.finished_ms);
        let anomalies: Vec<u64> =
            done.iter().enumerate().filter(|(i, a)| *i < over || too_old(finished_at(a))).map(|(_, a)| a.id).collect();
        (actions, anomalies)
    }

    /// Whether a `PruneFinished` with these bounds would forget anything.
    pub fn has_prunable(&self, at_ms: u64, keep_ms: u64, keep_max: u32) -> bool {
        let (actions, anomalies) = self.prunable(at_ms, keep_ms, keep_max);
        !actions.is_empty() || !anomalies.is_empty()
    }

    /// Forgets finished actions (completed, failed, superseded) and done anomalies that
    /// finished more than `keep_ms` before `at_ms`, and the oldest beyond `keep_max` of
    /// each. Open ones are never forgotten. Returns how many went.
    pub(super) fn prune_finished(&mut self, at_ms: u64, keep_ms: u64, keep_max: u32) -> usize {
        let (actions, anomalies) = self.prunable(at_ms, keep_ms, keep_max);
        for id in &actions {
            self.actions.remove(id);
        }
        for id in &anomalies {
            self.anomalies.remove(id);
        }
        actions.len() + anomalies.len()
    }
}

impl State {
    pub(super) fn submit_action(&mut self, index: u64, spec: &ActionSpec, at_ms: u64) -> Result<Submitted, Error> {
        let engine = &self.engine;
        // Dedup: the same type, target and parameters while one is open.
        if let Some(existing) = engine
            .actions
            .values()
            .find(|a| a.is_open() && a.kind == spec.kind && a.target == spec.target && a.parameters == spec.parameters)
        {
            return Ok(Submitted {
                id: existing.id,
                duplicate: true,
                status: existing.status,
                position: engine.position(existing.id),
                conflicts: vec![],
            });
        }
        // Rate limit per target.
        let window_start = at_ms.saturating_sub(engine.policy.rate_window_ms);
        let mut recent: Vec<u64> = engine
            .actions
            .values()
            .filter(|a| a.target == spec.target && a.created_ms > window_start)
            .map(|a| a.created_ms)
            .collect();
        let limit = engine.policy.rate_limit.max(1) as usize;
        if let Some(&oldest) = recent.len().checked_sub(limit).and_then(|i| {
            recent.sort_unstable();
            recent.get(i)
        }) {
            let retry_after_ms = oldest.saturating_add(engine.policy.rate_window_ms).saturating_sub(at_ms).max(1);
            return Err(Error::RateLimited {
                target: spec.target.clone(),
                limit: engine.policy.rate_limit,
                window_ms: engine.policy.rate_window_ms,
                retry_after_ms,
            });
        }

        let id = engine.next_action.max(1);
        let mut action = Action {
            id,
            kind: spec.kind.clone(),
            target: spec.target.clone(),
            source: spec.source,
            priority: spec.priority,
            confidence: spec.confidence,
            parameters: spec.parameters.clone(),
            status: Status::Queued,
            superseded_by: None,
            attempts: 0,
            worker: None,
            lease_until_ms: None,
            not_before_ms: 0,
            created_ms: at_ms,
            started_ms: None,
            finished_ms: None,
            message: None,
            anomaly: None,
            revision: index,
        };
        // Conflicts with every open action.
        let threshold = engine.policy.confidence_threshold;
        let mut decisions = Vec::new();
        let mut losers: Vec<(u64, &'static str)> = Vec::new();
        let mut lost_to: Option<(u64, &'static str)> = None;
        for other in engine.actions.values().filter(|a| a.is_open()) {
            let Some(conflict_type) = engine.conflict_type(&action, other) else { continue };
            let verdict = settle(&action, other, threshold);
            decisions.push(ConflictDecision {
                conflict_type: conflict_type.into(),
                other: other.id,
                loser: verdict.map(|(i, _)| if i == 0 { id } else { other.id }),
                rule: verdict.map(|(_, r)| r.to_string()),
            });
            match verdict {
                Some((0, rule)) => {
                    lost_to.get_or_insert((other.id, rule));
                }
                Some((_, rule)) => losers.push((other.id, rule)),
                None => {}
            }
        }
        let engine = &mut self.engine;
        engine.next_action = id.saturating_add(1);
        let resolved = decisions.iter().filter(|d| d.loser.is_some()).count() as u64;
        engine.stats.conflicts_detected = engine.stats.conflicts_detected.saturating_add(decisions.len() as u64);
        engine.stats.conflicts_resolved = engine.stats.conflicts_resolved.saturating_add(resolved);
        if let Some((winner, rule)) = lost_to {
            // The new action loses: it is recorded as superseded, and supersedes nothing.
            action.status = Status::Superseded;
            action.superseded_by = Some((winner, rule.to_string()));
            action.finished_ms = Some(at_ms);
            engine.actions.insert(id, action);
            return Ok(Submitted {
                id,
                duplicate: false,
                status: Status::Superseded,
                position: None,
                conflicts: decisions,
            });
        }
        for (loser, rule) in losers {
            if let Some(a) = engine.actions.get_mut(&loser) {
                a.superseded_by = Some((id, rule.to_string()));
            }
            engine.finish(loser, Status::Superseded, Some(format!("superseded by action {id} ({rule})")), at_ms, index);
        }
        engine.actions.insert(id, action);
        Ok(Submitted {
            id,
            duplicate: false,
            status: Status::Queued,
            position: engine.position(id),
            conflicts: decisions,
        })
    }

    /// Hands the first queued action of one of `kinds` to `worker` for `lease_ms`.
    pub(super) fn claim_action(
        &mut self,
        index: u64,
        worker: &str,
        kinds: &[String],
        lease_ms: u64,
        at_ms: u64,
    ) -> Option<Claim> {
        let engine = &mut self.engine;
        if engine.running() >= engine.policy.max_active as usize {
            return None;
        }
        let id = engine
            .queue()
            .into_iter()
            .find(|a| !a.is_builtin() && kinds.contains(&a.kind) && engine.is_due(a, at_ms))
            .map(|a| a.id)?;
        let a = engine.actions.get_mut(&id)?;
        let lease_until_ms = at_ms.saturating_add(lease_ms);
        a.status = Status::Running;
        a.worker = Some(worker.to_string());
        a.lease_until_ms = Some(lease_until_ms);
        a.attempts = a.attempts.saturating_add(1);
        a.started_ms = Some(at_ms);
        a.revision = index;
        Some(Claim { id, worker: worker.to_string(), attempt: a.attempts, started_ms: at_ms, lease_until_ms })
    }

    /// The worker holding the action reports its end.
    pub(super) fn report_action(
        &mut self,
        index: u64,
        id: u64,
        worker: &str,
        attempt: Option<u32>,
        ok: bool,
        message: Option<String>,
        at_ms: u64,
    ) -> Result<(), Error> {
        let a = self.engine.actions.get(&id).ok_or_else(|| Error::not_found("action", &id.to_string()))?;
        let stale_attempt = attempt.is_some_and(|n| n != a.attempts);
        if a.status != Status::Running || a.worker.as_deref() != Some(worker) || stale_attempt {
            let holder = a.worker.as_deref().map(|w| format!(" by worker '{w}'")).unwrap_or_default();
            return Err(Error::Refused {
                message: format!(
                    "action {id} is {}{holder}, not held by worker '{worker}': its lease may have expired and \
                     it was retried or handed to another worker",
                    serde_json::to_value(a.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
                ),
            });
        }
        if ok {
            self.engine.finish(id, Status::Completed, message, at_ms, index);
        } else {
            let message = message.unwrap_or_else(|| "the worker reported a failure".into());
            self.engine.retry_or_fail(id, message, at_ms, index);
        }
        Ok(())
    }

    /// Running actions whose lease ran out by `at_ms` (the leader's clock) are retried or failed.
    ///
    /// A lease that began after `at_ms` (by more than [`CLOCK_SLACK_MS`]) was stamped by a
    /// leader whose clock ran ahead of this one: it is re-based to this clock, keeping its
    /// length (start and end move back to `at_ms` and `at_ms + length`). That only shortens
    /// it, never below a full lease from now, so a worker still holds it at least as long
    /// as it was granted; without it, a lease stamped by a clock two minutes ahead would
    /// hold its action two minutes past its end.
    pub(super) fn expire_leases(&mut self, index: u64, at_ms: u64) {
        for a in self.engine.actions.values_mut().filter(|a| Engine::lease_from_ahead(a, at_ms)) {
            let (Some(start), Some(end)) = (a.started_ms, a.lease_until_ms) else { continue };
            a.started_ms = Some(at_ms);
            a.lease_until_ms = Some(at_ms.saturating_add(end.saturating_sub(start)));
            a.revision = index;
        }
        let expired: Vec<(u64, String)> = self
            .engine
            .actions
            .values()
            .filter(|a| Engine::lease_expired(a, at_ms))
            .map(|a| (a.id, a.worker.clone().unwrap_or_default()))
            .collect();
        for (id, worker) in expired {
            self.engine.retry_or_fail(id, format!("the lease of worker '{worker}' expired"), at_ms, index);
        }
    }

    /// Carries out queued built-in actions, in queue order, through the cluster's own
    /// commands. Returns how many ran.
    pub(super) fn run_builtins(&mut self, index: u64, ids: &[u64], at_ms: u64) -> usize {
        let mut ran = 0;
        for id in ids {
            let Some(a) = self.engine.actions.get(id).filter(|a| a.status == Status::Queued && a.is_builtin()) else {
                continue;
            };
            let a = a.clone();
            let outcome = self.builtin_command(&a).and_then(|c| self.apply(index, &c));
            if let Some(x) = self.engine.actions.get_mut(id) {
                x.attempts = x.attempts.saturating_add(1);
                x.started_ms = Some(at_ms);
            }
            match outcome {
                Ok(_) => self.engine.finish(*id, Status::Completed, None, at_ms, index),
                Err(e) => self.engine.finish(*id, Status::Failed, Some(e.to_string()), at_ms, index),
            }
            ran += 1;
        }
        ran
    }

    fn builtin_command(&self, a: &Action) -> Result<Command, Error> {
        let param = |name: &str| -> Option<String> {
            a.parameters.get(name).map(|v| serde_json::from_str::<String>(v).unwrap_or_else(|_| v.clone()))
        };
        let reason = || format!("action {} ({})", a.id, a.kind);
        Ok(match a.kind.as_str() {
            "drain_node" => {
                Command::SetMaintenance { id: a.target.clone(), reason: Some(param("reason").unwrap_or_else(reason)) }
            }
            "restore_node" => Command::SetMaintenance { id: a.target.clone(), reason: None },
            "lock_domain" => Command::LockDomain { name: a.target.clone(), site: param("site") },
            "pin_site" => Command::PinSite { id: a.target.clone(), node: param("node") },
            "failover_domain" => {
                let domain = self.domains.get(&a.target).ok_or_else(|| Error::not_found("domain", &a.target))?;
                let site = match param("site") {
                    Some(s) => s,
                    None => {
                        // The first site of the domain, other than the one it is locked to,
                        // with an up node that is not drained.
                        let has_up = |s: &String| {
                            self.nodes
                                .values()
                                .any(|n| &n.site == s && n.health == super::Health::Up && n.maintenance.is_none())
                        };
                        domain
                            .sites
                            .iter()
                            .find(|s| Some(*s) != domain.lock.as_ref() && has_up(s))
                            .cloned()
                            .ok_or_else(|| Error::Refused {
                                message: format!("domain '{}' has no other site with an up node", a.target),
                            })?
                    }
                };
                Command::LockDomain { name: a.target.clone(), site: Some(site) }
            }
            other => return Err(Error::invalid("type", format!("'{other}' is not a built-in action"))),
        })
    }

    /// Records an anomaly and submits the action it maps to (if it names one and no open
    /// anomaly with the same fingerprint exists).
    pub(super) fn report_anomaly(
        &mut self,
        index: u64,
        report: &AnomalyReport,
        action: Option<&ActionSpec>,
        at_ms: u64,
    ) -> Result<(u64, Option<Submitted>), Error> {
        if let Some(fp) = &report.fingerprint {
            if let Some(open) = self
                .engine
                .anomalies
                .values()
                .find(|a| a.status == AnomalyStatus::Open && a.report.fingerprint.as_ref() == Some(fp))
            {
                return Ok((open.id, None));
            }
        }
        let submitted = match action {
            Some(spec) => Some(self.submit_action(index, spec, at_ms)?),
            None => None,
        };
        let engine = &mut self.engine;
        let id = engine.next_anomaly.max(1);
        engine.next_anomaly = id.saturating_add(1);
        let action_id = submitted.as_ref().map(|s| s.id);
        if let Some(a) = action_id.and_then(|i| engine.actions.get_mut(&i)) {
            a.anomaly.get_or_insert(id);
        }
        engine.anomalies.insert(
            id,
            Anomaly { id, report: report.clone(), action: action_id, status: AnomalyStatus::Open, revision: index },
        );
        Ok((id, submitted))
    }

    /// An alert was resolved: its open anomaly closes, and its action, if still queued, is
    /// withdrawn. Returns the anomaly closed.
    pub(super) fn resolve_alert(&mut self, index: u64, fingerprint: &str, at_ms: u64) -> Option<u64> {
        let anomaly = self
            .engine
            .anomalies
            .values_mut()
            .find(|a| a.status == AnomalyStatus::Open && a.report.fingerprint.as_deref() == Some(fingerprint))?;
        anomaly.status = AnomalyStatus::Resolved;
        anomaly.revision = index;
        let (id, action) = (anomaly.id, anomaly.action);
        if let Some(action) = action.filter(|a| self.engine.actions.get(a).is_some_and(|x| x.status == Status::Queued))
        {
            self.engine.finish(
                action,
                Status::Superseded,
                Some("the alert resolved before it ran".into()),
                at_ms,
                index,
            );
            if let Some(a) = self.engine.actions.get_mut(&action) {
                a.superseded_by = None;
            }
        }
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: &str, target: &str, source: Source, priority: u8, confidence: f64) -> ActionSpec {
        ActionSpec {
            kind: kind.into(),
            target: target.into(),
            source,
            priority,
            confidence,
            parameters: BTreeMap::new(),
        }
    }

    fn submit(s: &mut State, index: u64, sp: ActionSpec) -> Submitted {
        s.submit_action(index, &sp, index * 1000).unwrap()
    }

    #[test]
    fn finished_history_is_forgotten_by_age_and_count_and_open_work_never() {
        let mut s = State::default();
        let kinds = vec!["t1".to_string()];
        for i in 1..=6u64 {
            submit(&mut s, i, spec("t1", &format!("x{i}"), Source::Deterministic, 3, 1.0));
        }
        // Actions 1 to 4 finish at 10 s, 20 s, 30 s and 40 s; 5 runs, 6 stays queued.
        for i in 1..=5u64 {
            let c = s.claim_action(10 + i, "w", &kinds, 60_000, i * 10_000).unwrap();
            if i < 5 {
                s.report_action(20 + i, c.id, "w", None, true, None, i * 10_000).unwrap();
            }
        }
        let report = |fp: Option<&str>| AnomalyReport {
            timestamp: String::new(),
            kind: "k".into(),
            severity: "low".into(),
            confidence: 1.0,
            details: BTreeMap::new(),
            recommended_action: None,
            source: Source::AiDriven,
            fingerprint: fp.map(String::from),
        };
        s.report_anomaly(30, &report(None), None, 0).unwrap();
        s.report_anomaly(31, &report(Some("alert")), None, 0).unwrap();

        // Older than 25 s at 50 s: actions 1 and 2 (finished at 10 s and 20 s).
        assert!(s.engine.has_prunable(50_000, 25_000, 100));
        s.engine.prune_finished(50_000, 25_000, 100);
        assert_eq!(s.engine.actions.keys().copied().collect::<Vec<_>>(), [3, 4, 5, 6]);
        // At most one finished: 3 goes, the running and the queued stay.
        s.engine.prune_finished(50_000, u64::MAX, 1);
        assert_eq!(s.engine.actions.keys().copied().collect::<Vec<_>>(), [4, 5, 6]);
        assert!(!s.engine.has_prunable(50_000, u64::MAX, 1));
        // Keeping none: every finished action goes, and the plain anomaly (no action, so
        // done); an open alert's anomaly stays for its dedup, and open actions stay.
        s.engine.prune_finished(50_000, u64::MAX, 0);
        assert_eq!(s.engine.actions.keys().copied().collect::<Vec<_>>(), [5, 6]);
        assert_eq!(s.engine.anomalies.len(), 1);
        assert!(s.engine.anomalies.values().all(|a| a.report.fingerprint.is_some()));
    }

    #[test]
    fn the_three_rules_in_order() {
        // Rule 1: deterministic beats AI, whatever the priorities.
        let mut s = State::default();
        let ai = submit(&mut s, 1, spec("restart", "n1", Source::AiDriven, 1, 0.99));
        let det = submit(&mut s, 2, spec("reboot", "n1", Source::Deterministic, 2, 1.0));
        assert_eq!(det.status, Status::Queued);
        assert_eq!(s.engine.actions[&ai.id].status, Status::Superseded);
        assert_eq!(s.engine.actions[&ai.id].superseded_by, Some((det.id, "deterministic_over_ai".into())));
        // Rule 2: the higher priority wins; the newcomer may lose.
        let low = submit(&mut s, 3, spec("scale", "n1", Source::Deterministic, 4, 1.0));
        assert_eq!(low.status, Status::Superseded);
        assert_eq!(s.engine.actions[&low.id].superseded_by, Some((det.id, "higher_priority".into())));
        // Rule 3: same source and priority: the AI action under the threshold loses.
        let mut s = State::default();
        let sure = submit(&mut s, 1, spec("a", "n2", Source::AiDriven, 2, 0.9));
        let unsure = submit(&mut s, 2, spec("b", "n2", Source::AiDriven, 2, 0.5));
        assert_eq!((unsure.status, s.engine.actions[&sure.id].status), (Status::Superseded, Status::Queued));
        // A tie keeps both, in order.
        let tie = submit(&mut s, 3, spec("c", "n2", Source::AiDriven, 2, 0.8));
        assert_eq!(tie.status, Status::Queued);
        assert_eq!(tie.conflicts[0].loser, None);
        assert_eq!(s.engine.queue().iter().map(|a| a.id).collect::<Vec<_>>(), vec![sure.id, tie.id]);
        assert_eq!(s.engine.stats.conflicts_detected, 2, "the superseded action conflicts no more");
        assert_eq!(s.engine.stats.conflicts_resolved, 1);
    }

    #[test]
    fn exclusive_types_conflict_across_targets() {
        let mut s = State::default();
        let a = submit(&mut s, 1, spec("node_remediation", "n1", Source::Deterministic, 3, 1.0));
        let b = submit(&mut s, 2, spec("resource_scaling", "deploy-x", Source::Deterministic, 1, 1.0));
        assert_eq!(b.conflicts[0].conflict_type, "exclusive_types");
        assert_eq!(s.engine.actions[&a.id].status, Status::Superseded);
    }

    #[test]
    fn dedup_rate_limit_and_queue_order() {
        let mut s = State::default();
        s.engine.policy.rate_limit = 2;
        let a = submit(&mut s, 1, spec("x", "t1", Source::Deterministic, 3, 1.0));
        let again = submit(&mut s, 2, spec("x", "t1", Source::Deterministic, 3, 1.0));
        assert_eq!((again.id, again.duplicate), (a.id, true));
        submit(&mut s, 3, spec("y", "t1", Source::Deterministic, 3, 1.0));
        let err = s.submit_action(4, &spec("z", "t1", Source::Deterministic, 3, 1.0), 4000).unwrap_err();
        assert!(matches!(err, Error::RateLimited { retry_after_ms: 57_000, .. }), "{err:?}");
        let c = submit(&mut s, 5, spec("w", "t2", Source::Deterministic, 1, 1.0));
        assert_eq!(c.position, Some(1), "priority before age");
    }

    #[test]
    fn leases_expire_retry_with_backoff_and_fail_after_max_attempts() {
        let mut s = State::default();
        s.engine.policy.max_attempts = 2;
        let a = submit(&mut s, 1, spec("probe", "t", Source::Deterministic, 3, 1.0));
        let kinds = vec!["probe".to_string()];
        assert_eq!(s.claim_action(2, "w1", &kinds, 1000, 10_000).map(|c| (c.id, c.attempt)), Some((a.id, 1)));
        assert!(s.claim_action(3, "w2", &kinds, 1000, 10_000).is_none(), "held by w1");
        s.expire_leases(4, 11_000);
        let x = &s.engine.actions[&a.id];
        assert_eq!((x.status, x.not_before_ms), (Status::Queued, 16_000));
        assert!(s.claim_action(5, "w2", &kinds, 1000, 15_000).is_none(), "backing off");
        // A leader whose clock is far behind the one that set the backoff (beyond any
        // backoff's reach) does not wait out the difference.
        let mut ahead = s.engine.actions[&a.id].clone();
        ahead.not_before_ms = 30_000;
        assert!(!s.engine.is_due(&ahead, 16_000), "within reach of a backoff: wait");
        ahead.not_before_ms = 10_000_000;
        assert!(s.engine.is_due(&ahead, 16_000), "beyond any backoff: set by a clock far ahead");
        assert_eq!(s.claim_action(6, "w2", &kinds, 1000, 16_000).map(|c| c.attempt), Some(2));
        assert!(s.report_action(7, a.id, "w1", None, true, None, 16_500).is_err(), "w1 lost the lease");
        assert!(s.report_action(7, a.id, "w2", Some(1), true, None, 16_500).is_err(), "attempt 1 is over");
        s.report_action(8, a.id, "w2", Some(2), false, Some("boom".into()), 16_600).unwrap();
        assert_eq!(s.engine.actions[&a.id].status, Status::Failed);
        assert_eq!(s.engine.stats.processed["deterministic"], 1);
    }

    #[test]
    fn a_lease_stamped_by_a_clock_ahead_is_rebased_to_the_leaders_clock() {
        let mut s = State::default();
        let kinds = vec!["probe".to_string()];
        let a = submit(&mut s, 1, spec("probe", "t", Source::Deterministic, 3, 1.0));
        let b = submit(&mut s, 2, spec("probe", "u", Source::Deterministic, 3, 1.0));
        // Claimed through a leader 120 s ahead: a 2 s lease ending at 132 s by that clock.
        s.claim_action(3, "w1", &kinds, 2_000, 130_000).unwrap();
        // Claimed by a leader on time: a 30 s lease.
        s.claim_action(4, "w2", &kinds, 30_000, 10_000).unwrap();
        let w2 = &s.engine.actions[&b.id];
        assert!(!Engine::lease_from_ahead(w2, 9_500), "w2's began 0.5 s ahead: within the slack");
        assert!(Engine::lease_from_ahead(w2, 8_900), "1.1 s ahead: beyond it");
        assert!(s.engine.leases_to_expire(10_100), "w1's began 120 s after this leader's now");
        s.expire_leases(5, 10_100);
        let (x, y) = (&s.engine.actions[&a.id], &s.engine.actions[&b.id]);
        assert_eq!((x.status, x.started_ms, x.lease_until_ms), (Status::Running, Some(10_100), Some(12_100)));
        assert_eq!((x.revision, x.worker.as_deref()), (5, Some("w1")), "still held, for a full lease from now");
        assert_eq!((y.started_ms, y.lease_until_ms, y.revision), (Some(10_000), Some(40_000), 4), "left alone");
        assert!(!s.engine.leases_to_expire(10_200), "nothing more to do until the lease ends");
        // It ends a lease length later by this clock, not 120 s later.
        s.expire_leases(6, 12_100);
        let x = &s.engine.actions[&a.id];
        assert_eq!((x.status, x.attempts, x.worker.as_deref()), (Status::Queued, 1, None));
        assert!(s.report_action(7, a.id, "w1", Some(1), true, None, 12_200).is_err(), "w1 lost it");
        // A lease from a clock ahead that has also run out by this one is simply expired.
        let mut t = State::default();
        let c = submit(&mut t, 1, spec("probe", "v", Source::Deterministic, 3, 1.0));
        t.claim_action(2, "w1", &kinds, 2_000, 130_000).unwrap();
        t.expire_leases(3, 200_000);
        assert_eq!(t.engine.actions[&c.id].status, Status::Queued);
    }
}

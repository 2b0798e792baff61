//! The action queue: every accepted action completes or fails, none is lost, none is run
//! twice under overlapping leases, none is completed twice.
//!
//! The history (see docs/jepsen.md) holds, under key `aq-queue` or `aq-ID`:
//!
//! - `submit` (`aq-queue`): invoked with `{"target"}` (unique per submission); `ok` with
//!   `{"action_id", "status", "duplicate"}`: the action is accepted.
//! - `claim` (`aq-queue`): invoked with `{"worker"}`; `ok` with `null` (nothing to run) or
//!   the claimed action `{"action_id", "worker", "attempts", "started_ms",
//!   "lease_until_ms"}` as the cluster answered it (its times by the cluster's clock).
//! - `run` (`aq-ID`): the worker starts executing the action it claimed; invoked and `ok`
//!   at once with `{"action_id", "worker", "attempt"}`.
//! - `complete` and `fail` (`aq-ID`): the worker's report, invoked with `{"worker",
//!   "attempt"}`; `ok` when the cluster took it, `fail` when it refused it (409: the lease
//!   was gone).
//! - `read` (`aq-queue`): the final read after the drain, invoked with `{"final": true}`,
//!   `ok` with `{"max_attempts", "clock_faults", "actions": [{"action_id", "target",
//!   "status", "attempts"}]}`: the policy's attempt limit and whether the clock nemesis ran.
//!
//! Checked: every accepted action is in the final read, `completed` or `failed` (`lost`,
//! `unfinished`); an action in the final read was submitted with its target and was
//! accepted or indeterminate (`unexpected`, `failed-submit-applied`); no two completions
//! of one action were taken (`double-completion`); an action whose completion was taken
//! ends `completed` (`completion-overturned`), and one that ends `completed` had a
//! completion taken or maybe taken (`completed-without-report`); attempts never exceed
//! the policy's limit (`too-many-attempts`); no attempt is handed out twice
//! (`double-claim`); a claim is answered only after the previous holder's lease ran out
//! by the cluster's own `lease_until_ms` and `started_ms`, unless the holder reported a
//! failure first (`overlapping-leases`; skipped when the clock nemesis ran, since the
//! times come from different peers' clocks); a claim is answered no sooner than the
//! previous claim's `lease_s` after that claim was sent, by the harness's clock, unless
//! the holder reported a failure first (`lease-cut-short`; under the clock nemesis only
//! reported, not judged); a completion is taken only from the worker
//! that holds the latest claim (`stale-completion`); a worker runs only what a claim
//! handed to it (`run-without-claim`); a claim's answer shows the action `running`,
//! held by the claimer (`claim-not-held`). Running an action again after its
//! lease expired is at-least-once execution, as designed, and is only counted.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::{Anomaly, Report, Validity};
use crate::history::{Operation, Type, F};

/// Every key of the workload starts with this.
pub const KEY_PREFIX: &str = "aq-";
/// The key of submissions, claims and the final read.
pub const QUEUE_KEY: &str = "aq-queue";

/// The history key of one action's runs and reports.
pub fn action_key(id: u64) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// An action as the final read returned it.
struct Final {
    target: String,
    status: String,
    attempts: u64,
}

/// A claim the cluster answered with an action.
struct Claim<'a> {
    op: &'a Operation,
    worker: String,
    attempt: u64,
    started_ms: u64,
    lease_until_ms: u64,
}

fn num(v: &Value, field: &str) -> Option<u64> {
    v.get(field).and_then(Value::as_u64)
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(String::from)
}

fn id_of_key(key: &str) -> Option<u64> {
    key.strip_prefix(KEY_PREFIX)?.parse().ok()
}

pub fn check(ops: &[Operation]) -> Report {
    let unknown = |summary: String| Report {
        checker: "actions".into(),
        valid: Validity::Unknown,
        summary,
        anomalies: vec![],
        stats: Value::Null,
    };
    let Some(final_read) = ops.iter().rev().find(|o| o.f == F::Read && o.key == QUEUE_KEY && o.outcome == Type::Ok)
    else {
        return unknown("no final read of the actions: no verdict".into());
    };
    let Some(list) = final_read.value.get("actions").and_then(Value::as_array) else {
        return unknown(format!("the final read carries no list of actions: {final_read}"));
    };
    let max_attempts = num(&final_read.value, "max_attempts");
    let clock_faults = final_read.value.get("clock_faults").and_then(Value::as_bool).unwrap_or(false);
    let mut finals: BTreeMap<u64, Final> = BTreeMap::new();
    for a in list {
        let (Some(id), Some(target), Some(status)) = (num(a, "action_id"), text(a, "target"), text(a, "status")) else {
            return unknown(format!("an action of the final read lacks action_id, target or status: {a}"));
        };
        finals.insert(id, Final { target, status, attempts: num(a, "attempts").unwrap_or(0) });
    }

    let mut anomalies = Vec::new();
    let mut add = |kind: &str, id: Option<u64>, message: String, ops: Vec<&Operation>| {
        anomalies.push(Anomaly {
            kind: kind.into(),
            key: id.map(action_key),
            message,
            ops: ops.iter().map(|o| o.to_string()).collect(),
        });
    };

    // Submissions.
    let submits: Vec<&Operation> = ops.iter().filter(|o| o.f == F::Submit).collect();
    let mut by_target: HashMap<String, Vec<&Operation>> = HashMap::new();
    let mut accepted: BTreeMap<u64, &Operation> = BTreeMap::new();
    let (mut n_ok, mut n_fail, mut n_info) = (0, 0, 0);
    for op in &submits {
        if let Some(t) = text(&op.invoke_value, "target") {
            by_target.entry(t).or_default().push(op);
        }
        match op.outcome {
            Type::Ok => {
                n_ok += 1;
                match num(&op.value, "action_id") {
                    Some(id) => {
                        accepted.insert(id, op);
                    }
                    None => return unknown(format!("an accepted submission carries no action_id: {op}")),
                }
            }
            Type::Fail => n_fail += 1,
            _ => n_info += 1,
        }
    }
    for (&id, op) in &accepted {
        let target = text(&op.invoke_value, "target").unwrap_or_default();
        match finals.get(&id) {
            None => {
                add("lost", Some(id), format!("accepted action {id} is not in the final read"), vec![op, final_read])
            }
            Some(f) if f.target != target => add(
                "wrong-target",
                Some(id),
                format!("accepted action {id} was submitted for target {target}, the final read says {}", f.target),
                vec![op],
            ),
            Some(f) if f.status == "completed" || f.status == "failed" => {}
            Some(f) if f.status == "superseded" && text(&op.value, "status").as_deref() == Some("superseded") => {}
            Some(f) => add(
                "unfinished",
                Some(id),
                format!(
                    "accepted action {id} is still {} after the drain, after {} attempts: it neither completed nor failed",
                    f.status, f.attempts
                ),
                vec![op],
            ),
        }
    }
    for (&id, f) in &finals {
        if accepted.contains_key(&id) {
            continue;
        }
        let subs = by_target.get(&f.target).map(Vec::as_slice).unwrap_or(&[]);
        if subs.iter().any(|o| o.outcome == Type::Info) {
            continue;
        }
        if subs.is_empty() {
            add("unexpected", Some(id), format!("action {id} (target {}) was never submitted", f.target), vec![]);
        } else {
            add(
                "failed-submit-applied",
                Some(id),
                format!(
                    "action {id} exists though its submission (target {}) failed or was answered another id",
                    f.target
                ),
                subs.to_vec(),
            );
        }
    }

    // Claims, runs and reports.
    let mut claims: BTreeMap<u64, Vec<Claim>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.f == F::Claim && o.outcome == Type::Ok && !o.value.is_null()) {
        let v = &op.value;
        let (Some(id), Some(attempt)) = (num(v, "action_id"), num(v, "attempts")) else {
            return unknown(format!("a claim's answer lacks action_id or attempts: {op}"));
        };
        let Some(worker) = text(&op.invoke_value, "worker") else {
            return unknown(format!("a claim names no worker: {op}"));
        };
        // The answer must show the action running, held by the claimer.
        if text(v, "status").is_some_and(|s| s != "running") || text(v, "worker").as_ref() != Some(&worker) {
            add(
                "claim-not-held",
                Some(id),
                format!(
                    "a claim by {worker} was answered with action {id} {}, held by {}: not running for the claimer",
                    text(v, "status").unwrap_or_default(),
                    v.get("worker").unwrap_or(&Value::Null)
                ),
                vec![op],
            );
        }
        let (started_ms, lease_until_ms) = (num(v, "started_ms").unwrap_or(0), num(v, "lease_until_ms").unwrap_or(0));
        claims.entry(id).or_default().push(Claim { op, worker, attempt, started_ms, lease_until_ms });
    }
    let reports = |f: F, id: u64| ops.iter().filter(move |o| o.f == f && id_of_key(&o.key) == Some(id));
    let mut lease_checks = 0;
    // Leases cut short by the harness's clock while the clock nemesis ran: reported, not a
    // verdict (leases are kept by wall clocks).
    let mut cut_short: Vec<String> = Vec::new();
    let mut reruns = 0;
    for (&id, list) in claims.iter_mut() {
        list.sort_by_key(|c| (c.attempt, c.op.invoke_index));
        if list.len() > 1 {
            reruns += 1;
        }
        for c in list.iter() {
            if let Some(max) = max_attempts.filter(|&m| c.attempt > m) {
                add(
                    "too-many-attempts",
                    Some(id),
                    format!("attempt {} of action {id} was handed out; the limit is {max}", c.attempt),
                    vec![c.op],
                );
            }
        }
        for pair in list.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.attempt == b.attempt {
                add(
                    "double-claim",
                    Some(id),
                    format!("attempt {} of action {id} was handed to {} and to {}", a.attempt, a.worker, b.worker),
                    vec![a.op, b.op],
                );
                continue;
            }
            // The holder gave the action back before the next claim was answered.
            let released = reports(F::Fail, id).any(|r| {
                r.outcome != Type::Fail
                    && text(&r.invoke_value, "worker").as_deref() == Some(&a.worker)
                    && num(&r.invoke_value, "attempt") == Some(a.attempt)
                    && b.op.complete_time.is_some_and(|t| r.invoke_time < t)
            });
            // By the harness's own clock: a lease of `lease_s` begins after the claim was
            // invoked, so the next claim must not be answered within `lease_s` of that.
            let lease_ns = num(&a.op.invoke_value, "lease_s").map(|s| s * 1_000_000_000);
            let early = lease_ns.zip(b.op.complete_time).filter(|&(l, t)| t < a.op.invoke_time + l);
            if let (Some((l, t)), false) = (early, released) {
                let message = format!(
                    "action {id} was handed to {} {:.3}s after {}'s claim of attempt {} was sent, within its {}s \
                     lease, by the harness's clock",
                    b.worker,
                    t.saturating_sub(a.op.invoke_time) as f64 / 1e9,
                    a.worker,
                    a.attempt,
                    l / 1_000_000_000
                );
                if clock_faults {
                    cut_short.push(message);
                } else {
                    add("lease-cut-short", Some(id), message, vec![a.op, b.op]);
                }
            }
            if clock_faults {
                continue;
            }
            lease_checks += 1;
            if b.started_ms < a.lease_until_ms && !released {
                add(
                    "overlapping-leases",
                    Some(id),
                    format!(
                        "action {id} was handed to {} at {} ms (attempt {}) while {}'s lease of attempt {} ran until \
                         {} ms, by the cluster's clock",
                        b.worker, b.started_ms, b.attempt, a.worker, a.attempt, a.lease_until_ms
                    ),
                    vec![a.op, b.op],
                );
            }
        }
    }
    let mut completions = 0;
    for &id in claims.keys().chain(finals.keys()).collect::<std::collections::BTreeSet<_>>() {
        let taken: Vec<&Operation> = reports(F::Complete, id).filter(|o| o.outcome == Type::Ok).collect();
        completions += taken.len();
        let status = finals.get(&id).map(|f| f.status.as_str());
        if taken.len() > 1 {
            add(
                "double-completion",
                Some(id),
                format!("action {id} was completed {} times", taken.len()),
                taken.clone(),
            );
        }
        if let (Some(op), Some(s)) = (taken.first(), status) {
            if s != "completed" {
                add(
                    "completion-overturned",
                    Some(id),
                    format!("a completion of action {id} was taken, but the final read says {s}"),
                    vec![op, final_read],
                );
            }
        }
        if status == Some("completed") && !reports(F::Complete, id).any(|o| o.outcome != Type::Fail) {
            add(
                "completed-without-report",
                Some(id),
                format!("action {id} is completed, but no completion was taken or maybe taken"),
                vec![final_read],
            );
        }
        // A completion taken from a worker whose claim was no longer the latest one.
        for op in &taken {
            let (Some(worker), Some(attempt)) = (text(&op.invoke_value, "worker"), num(&op.invoke_value, "attempt"))
            else {
                continue;
            };
            let newer = claims.get(&id).and_then(|l| {
                l.iter().find(|c| {
                    c.attempt > attempt && c.worker != worker && c.op.complete_time.is_some_and(|t| t < op.invoke_time)
                })
            });
            if let Some(c) = newer {
                add(
                    "stale-completion",
                    Some(id),
                    format!(
                        "{worker}'s completion of attempt {attempt} of action {id} was taken after attempt {} was \
                         handed to {}",
                        c.attempt, c.worker
                    ),
                    vec![c.op, op],
                );
            }
        }
        if let (Some(max), Some(f)) = (max_attempts, finals.get(&id)) {
            if f.attempts > max {
                add(
                    "too-many-attempts",
                    Some(id),
                    format!("action {id} ends with {} attempts; the limit is {max}", f.attempts),
                    vec![final_read],
                );
            }
        }
    }
    // Every run follows the claim that handed its attempt to its worker.
    let runs = ops.iter().filter(|o| o.f == F::Run).count();
    for op in ops.iter().filter(|o| o.f == F::Run) {
        let v = &op.invoke_value;
        let (id, worker, attempt) = (num(v, "action_id"), text(v, "worker"), num(v, "attempt"));
        let claimed = id.and_then(|id| claims.get(&id)).is_some_and(|l| {
            l.iter().any(|c| {
                Some(&c.worker) == worker.as_ref()
                    && Some(c.attempt) == attempt
                    && c.op.complete_time.is_some_and(|t| t <= op.invoke_time)
            })
        });
        if !claimed {
            add("run-without-claim", id, format!("a run of {v} follows no claim that handed it over"), vec![op]);
        }
    }
    let count = |s: &str| finals.values().filter(|f| f.status == s).count();
    let valid = if anomalies.is_empty() { Validity::Valid } else { Validity::Invalid };
    let lease_note = if clock_faults {
        format!(
            "; lease overlap by the cluster's clock not checked (the clock nemesis ran); {} leases cut short by the \
             harness's clock (not judged)",
            cut_short.len()
        )
    } else {
        format!("; {lease_checks} lease hand-overs checked")
    };
    let summary = format!(
        "{n_ok} accepted, {n_info} indeterminate, {n_fail} failed submissions; final: {} completed, {} failed, {} \
         other; {runs} runs, {reruns} actions claimed more than once{lease_note}; {} anomalies",
        count("completed"),
        count("failed"),
        finals.len() - count("completed") - count("failed"),
        anomalies.len()
    );
    Report {
        checker: "actions".into(),
        valid,
        summary,
        anomalies,
        stats: json!({
            "accepted": n_ok, "indeterminate": n_info, "failed_submissions": n_fail, "final_actions": finals.len(),
            "completed": count("completed"), "failed": count("failed"), "runs": runs, "completions_taken": completions,
            "claimed_more_than_once": reruns, "lease_checks": lease_checks, "clock_faults": clock_faults,
            "leases_cut_short_under_clock_faults": cut_short,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds histories: operations one after another, 1 ms apart.
    #[derive(Default)]
    struct H {
        ops: Vec<Operation>,
        t: u64,
        /// The lease claims ask for; 0 (the default) never expires by the harness's clock.
        lease_s: u64,
    }

    impl H {
        fn op(&mut self, process: u64, f: F, key: &str, invoke: Value, outcome: Type, value: Value) {
            self.t += 1_000_000;
            let n = self.ops.len();
            self.ops.push(Operation {
                process,
                f,
                key: key.into(),
                invoke_value: invoke,
                value,
                outcome,
                invoke_time: self.t,
                complete_time: (outcome != Type::Info).then_some(self.t + 500_000),
                invoke_index: 2 * n,
                complete_index: Some(2 * n + 1),
                error: None,
            });
        }
        fn submit(&mut self, target: &str, outcome: Type, id: u64) {
            self.op(1, F::Submit, QUEUE_KEY, json!({"target": target}), outcome, json!({"action_id": id}));
        }
        fn claim(&mut self, id: u64, worker: &str, attempt: u64, started: u64, lease_until: u64) {
            let v = json!({"action_id": id, "worker": worker, "attempts": attempt, "started_ms": started,
                           "lease_until_ms": lease_until});
            self.op(2, F::Claim, QUEUE_KEY, json!({"worker": worker, "lease_s": self.lease_s}), Type::Ok, v);
            let run = json!({"action_id": id, "worker": worker, "attempt": attempt});
            self.op(2, F::Run, &action_key(id), run.clone(), Type::Ok, run);
        }
        fn report(&mut self, f: F, id: u64, worker: &str, attempt: u64, outcome: Type) {
            let v = json!({"worker": worker, "attempt": attempt});
            self.op(2, f, &action_key(id), v, outcome, Value::Null);
        }
        fn final_read(&mut self, actions: &[(u64, &str, &str, u64)]) {
            let list: Vec<Value> = actions
                .iter()
                .map(|(id, t, s, a)| json!({"action_id": id, "target": t, "status": s, "attempts": a}))
                .collect();
            let v = json!({"max_attempts": 3, "clock_faults": false, "actions": list});
            self.op(9, F::Read, QUEUE_KEY, json!({"final": true}), Type::Ok, v);
        }
        fn check(&self) -> Report {
            check(&self.ops)
        }
    }

    fn kinds(r: &Report) -> Vec<&str> {
        r.anomalies.iter().map(|a| a.kind.as_str()).collect()
    }

    fn good() -> H {
        let mut h = H::default();
        h.submit("job-1", Type::Ok, 1);
        h.submit("job-2", Type::Ok, 2);
        h.claim(1, "w1", 1, 1000, 3000);
        h.report(F::Complete, 1, "w1", 1, Type::Ok);
        h.claim(2, "w2", 1, 1100, 3100);
        h.report(F::Fail, 2, "w2", 1, Type::Ok);
        h.claim(2, "w1", 2, 1400, 3400);
        h.report(F::Complete, 2, "w1", 2, Type::Ok);
        h
    }

    #[test]
    fn a_clean_queue_is_valid() {
        let mut h = good();
        h.final_read(&[(1, "job-1", "completed", 1), (2, "job-2", "completed", 2)]);
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert_eq!(r.stats["lease_checks"], 1);
    }

    #[test]
    fn no_final_read_is_no_verdict() {
        assert_eq!(good().check().valid, Validity::Unknown);
    }

    #[test]
    fn a_lost_or_unfinished_action_is_found() {
        let mut h = good();
        h.submit("job-3", Type::Ok, 3);
        h.submit("job-4", Type::Ok, 4);
        h.final_read(&[(1, "job-1", "completed", 1), (2, "job-2", "completed", 2), (4, "job-4", "queued", 0)]);
        assert_eq!(kinds(&h.check()), ["lost", "unfinished"]);
    }

    #[test]
    fn a_double_completion_is_found() {
        let mut h = good();
        h.report(F::Complete, 1, "w2", 1, Type::Ok);
        h.final_read(&[(1, "job-1", "completed", 1), (2, "job-2", "completed", 2)]);
        assert_eq!(kinds(&h.check()), ["double-completion"]);
    }

    #[test]
    fn a_completion_overturned_by_failure_is_found() {
        let mut h = good();
        h.final_read(&[(1, "job-1", "failed", 1), (2, "job-2", "completed", 2)]);
        assert_eq!(kinds(&h.check()), ["completion-overturned"]);
    }

    #[test]
    fn indeterminate_submissions_may_or_may_not_create_an_action() {
        let mut h = good();
        h.submit("job-3", Type::Info, 0);
        h.submit("job-4", Type::Info, 0);
        h.claim(5, "w2", 1, 2000, 4000);
        h.report(F::Complete, 5, "w2", 1, Type::Ok);
        h.final_read(&[(1, "job-1", "completed", 1), (2, "job-2", "completed", 2), (5, "job-3", "completed", 1)]);
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
    }

    #[test]
    fn an_action_from_a_failed_or_no_submission_is_found() {
        let mut h = good();
        h.submit("job-3", Type::Fail, 0);
        h.final_read(&[
            (1, "job-1", "completed", 1),
            (2, "job-2", "completed", 2),
            (3, "job-3", "failed", 3),
            (4, "job-9", "failed", 3),
        ]);
        assert_eq!(kinds(&h.check()), ["failed-submit-applied", "unexpected"]);
    }

    #[test]
    fn a_rerun_after_an_expired_lease_is_valid() {
        let mut h = H::default();
        h.submit("job-1", Type::Ok, 1);
        h.claim(1, "w1", 1, 1000, 3000);
        // w1 runs late: its lease expired, w2 ran the action again, w1's report is refused.
        h.claim(1, "w2", 2, 3100, 5100);
        h.report(F::Complete, 1, "w1", 1, Type::Fail);
        h.report(F::Complete, 1, "w2", 2, Type::Ok);
        h.final_read(&[(1, "job-1", "completed", 2)]);
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert_eq!(r.stats["claimed_more_than_once"], 1);
    }

    #[test]
    fn overlapping_leases_and_double_claims_are_found() {
        let mut h = H::default();
        h.submit("job-1", Type::Ok, 1);
        h.claim(1, "w1", 1, 1000, 3000);
        h.claim(1, "w2", 2, 2000, 4000);
        h.claim(1, "w3", 2, 4100, 6000);
        h.report(F::Complete, 1, "w3", 2, Type::Ok);
        h.final_read(&[(1, "job-1", "completed", 2)]);
        assert_eq!(kinds(&h.check()), ["overlapping-leases", "double-claim"]);
    }

    #[test]
    fn the_lease_check_is_skipped_under_the_clock_nemesis() {
        let mut h = H::default();
        h.submit("job-1", Type::Ok, 1);
        h.claim(1, "w1", 1, 1000, 3000);
        h.claim(1, "w2", 2, 2000, 4000);
        h.report(F::Complete, 1, "w2", 2, Type::Ok);
        h.final_read(&[(1, "job-1", "completed", 2)]);
        if let Some(read) = h.ops.last_mut() {
            read.value["clock_faults"] = json!(true);
        }
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert!(r.summary.contains("not checked (the clock nemesis ran)"), "{}", r.summary);
    }

    #[test]
    fn too_many_attempts_and_stale_completions_are_found() {
        let mut h = H::default();
        h.submit("job-1", Type::Ok, 1);
        h.claim(1, "w1", 1, 1000, 3000);
        h.claim(1, "w2", 2, 3000, 5000);
        h.report(F::Complete, 1, "w1", 1, Type::Ok);
        h.final_read(&[(1, "job-1", "completed", 4)]);
        assert_eq!(kinds(&h.check()), ["stale-completion", "too-many-attempts"]);
    }

    #[test]
    fn a_lease_cut_short_by_the_harness_clock_is_found_or_reported_under_clock_faults() {
        let mut h = H { lease_s: 2, ..H::default() };
        h.submit("job-1", Type::Ok, 1);
        // The cluster's times say the lease had expired; the harness saw 2 ms pass.
        h.claim(1, "w1", 1, 1000, 3000);
        h.claim(1, "w2", 2, 3100, 5100);
        h.report(F::Complete, 1, "w2", 2, Type::Ok);
        h.final_read(&[(1, "job-1", "completed", 2)]);
        assert_eq!(kinds(&h.check()), ["lease-cut-short"]);
        if let Some(read) = h.ops.last_mut() {
            read.value["clock_faults"] = json!(true);
        }
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert!(r.summary.contains("1 leases cut short"), "{}", r.summary);
    }

    #[test]
    fn a_claim_answered_with_an_action_not_held_is_found() {
        let mut h = good();
        let v = json!({"action_id": 3, "worker": null, "attempts": 1, "status": "queued", "started_ms": 2000,
                       "lease_until_ms": null});
        h.op(2, F::Claim, QUEUE_KEY, json!({"worker": "w1"}), Type::Ok, v);
        h.submit("job-3", Type::Ok, 3);
        h.final_read(&[(1, "job-1", "completed", 1), (2, "job-2", "completed", 2), (3, "job-3", "failed", 3)]);
        assert_eq!(kinds(&h.check()), ["claim-not-held"]);
    }

    #[test]
    fn a_run_without_a_claim_is_found() {
        let mut h = good();
        let run = json!({"action_id": 1, "worker": "w2", "attempt": 1});
        h.op(3, F::Run, &action_key(1), run.clone(), Type::Ok, run);
        h.final_read(&[(1, "job-1", "completed", 1), (2, "job-2", "completed", 2)]);
        assert_eq!(kinds(&h.check()), ["run-without-claim"]);
    }

    #[test]
    fn a_completion_nobody_reported_is_found() {
        let mut h = H::default();
        h.submit("job-1", Type::Ok, 1);
        h.claim(1, "w1", 1, 1000, 3000);
        h.final_read(&[(1, "job-1", "completed", 1)]);
        assert_eq!(kinds(&h.check()), ["completed-without-report"]);
    }
}

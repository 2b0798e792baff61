//! Linearizability of each key as a register ([`super::register`]), checked key by key
//! (registers compose: a history is linearizable iff each key's sub-history is).
//!
//! The search is Wing & Gong's, with Lowe's memoisation as in Porcupine: depth-first, it
//! picks a next operation among those that may take effect now (invoked before every
//! pending acknowledged operation returned), applies it to the model, and remembers every
//! (set of operations taken, model state) it has seen so that no configuration is explored
//! twice.
//!
//! - `ok` operations must take effect between invocation and completion.
//! - `fail` operations never took effect and are left out.
//! - `info` operations (indeterminate) may take effect at any time after their invocation,
//!   or never: their window never closes and they are not required for success. An
//!   indeterminate read returned nothing, so it is left out.
//!
//! Past the time budget the search gives up with [`Validity::Unknown`].

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::json;

use super::register::{State, Step};
use super::{Anomaly, Report, Validity};
use crate::history::{Operation, Type};

/// How many search steps run between two looks at the clock.
const CLOCK_EVERY: u64 = 1024;
/// Most concurrent operations listed in a counterexample.
const MAX_SHOWN: usize = 10;

/// Checks every key of the history; stops with `unknown` after `budget` in total.
pub fn check(ops: &[Operation], budget: Duration) -> Report {
    let deadline = Instant::now() + budget;
    let mut keys: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops {
        keys.entry(op.key.as_str()).or_default().push(op);
    }
    let mut anomalies = Vec::new();
    let mut unknown = Vec::new();
    let mut per_key = serde_json::Map::new();
    for (key, key_ops) in &keys {
        let result = check_key(key_ops, deadline);
        let verdict = match &result {
            KeyResult::Valid => "valid",
            KeyResult::Invalid(a) => {
                anomalies.push(Anomaly { key: Some(key.to_string()), ..a.clone() });
                "invalid"
            }
            KeyResult::Unknown(why) => {
                unknown.push(format!("{key}: {why}"));
                "unknown"
            }
        };
        let count = |t: Type| key_ops.iter().filter(|o| o.outcome == t).count();
        per_key.insert(
            key.to_string(),
            json!({"verdict": verdict, "ok": count(Type::Ok), "fail": count(Type::Fail), "info": count(Type::Info)}),
        );
    }
    let valid = if !anomalies.is_empty() {
        Validity::Invalid
    } else if !unknown.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let summary = match valid {
        Validity::Valid => format!("{} operations on {} keys are linearizable", ops.len(), keys.len()),
        Validity::Invalid => format!("{} of {} keys are not linearizable", anomalies.len(), keys.len()),
        Validity::Unknown => format!("no verdict for {}", unknown.join("; ")),
    };
    Report { checker: "linearizable".into(), valid, summary, anomalies, stats: json!({ "keys": per_key }) }
}

#[derive(Debug, Clone, PartialEq)]
pub enum KeyResult {
    Valid,
    Invalid(Anomaly),
    Unknown(String),
}

/// An operation as the search sees it.
struct Entry<'a> {
    step: Step,
    /// Position of the invocation in the history.
    call: usize,
    /// Position of the completion; `usize::MAX` for an indeterminate operation.
    ret: usize,
    /// Must take effect (`ok`); otherwise optional (`info`).
    required: bool,
    op: &'a Operation,
}

/// One level of the depth-first search: the entry taken and the state before it.
struct Frame {
    entry: usize,
    before: State,
}

/// The deepest point the search reached, for the report.
struct Best {
    required_done: usize,
    path: Vec<usize>,
    state: State,
}

/// Checks one key's operations.
pub fn check_key(ops: &[&Operation], deadline: Instant) -> KeyResult {
    let mut entries = Vec::new();
    for op in ops {
        if op.outcome == Type::Fail {
            continue;
        }
        let step = match Step::of(op) {
            Ok(Some(step)) => step,
            Ok(None) => continue,
            Err(e) => return KeyResult::Unknown(format!("malformed history: {e}")),
        };
        let required = op.outcome == Type::Ok;
        let ret = if required { op.complete_index.unwrap_or(usize::MAX) } else { usize::MAX };
        entries.push(Entry { step, call: op.invoke_index, ret, required, op });
    }
    entries.sort_by_key(|e| e.call);
    search(&entries, deadline)
}

fn search(entries: &[Entry], deadline: Instant) -> KeyResult {
    let n = entries.len();
    let required_total = entries.iter().filter(|e| e.required).count();
    let mut taken = vec![0u64; n.div_ceil(64).max(1)];
    let is_taken = |taken: &[u64], i: usize| taken[i / 64] & (1 << (i % 64)) != 0;
    let flip = |taken: &mut [u64], i: usize| taken[i / 64] ^= 1 << (i % 64);

    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut state: State = None;
    let mut required_done = 0;
    let mut start = 0;
    let mut steps: u64 = 0;
    let mut best = Best { required_done: 0, path: Vec::new(), state: None };

    loop {
        if required_done == required_total {
            return KeyResult::Valid;
        }
        steps += 1;
        if steps.is_multiple_of(CLOCK_EVERY) && Instant::now() > deadline {
            return KeyResult::Unknown(format!(
                "time budget exhausted after {steps} search steps and {} configurations ({n} operations)",
                seen.len()
            ));
        }
        // The earliest completion among required operations not yet taken: whatever is
        // taken next must have been invoked before it.
        let horizon = (0..n).filter(|&i| entries[i].required && !is_taken(&taken, i)).map(|i| entries[i].ret).min();
        let horizon = horizon.unwrap_or(usize::MAX);
        let mut advanced = false;
        for (i, entry) in entries.iter().enumerate().skip(start) {
            if entry.call > horizon {
                break;
            }
            if is_taken(&taken, i) {
                continue;
            }
            let Some(next) = entry.step.apply(state) else { continue };
            flip(&mut taken, i);
            if seen.insert((taken.clone(), next)) {
                stack.push(Frame { entry: i, before: state });
                state = next;
                if entry.required {
                    required_done += 1;
                }
                if required_done > best.required_done {
                    best = Best { required_done, path: stack.iter().map(|f| f.entry).collect(), state };
                }
                advanced = true;
                break;
            }
            flip(&mut taken, i);
        }
        if advanced {
            start = 0;
            continue;
        }
        let Some(frame) = stack.pop() else {
            return KeyResult::Invalid(counterexample(entries, &best));
        };
        flip(&mut taken, frame.entry);
        if entries[frame.entry].required {
            required_done -= 1;
        }
        state = frame.before;
        start = frame.entry + 1;
    }
}

/// Describes where the search got stuck at its deepest: the state reached, the required
/// operation that could not follow, and what was concurrent with it.
fn counterexample(entries: &[Entry], best: &Best) -> Anomaly {
    let on_path: HashSet<usize> = best.path.iter().copied().collect();
    let stuck = (0..entries.len())
        .filter(|i| entries[*i].required && !on_path.contains(i))
        .min_by_key(|&i| entries[i].ret)
        .unwrap_or(0);
    let show = |s: State| s.map_or("null (absent)".to_string(), |v| v.to_string());
    let message = format!(
        "no linearization: after {} acknowledged operations the register holds {}, and {} cannot take effect \
         (nor can any operation concurrent with it)",
        best.required_done,
        show(best.state),
        entries[stuck].op
    );
    let mut ops: Vec<String> = Vec::new();
    let tail = best.path.len().saturating_sub(5);
    for &i in &best.path[tail..] {
        ops.push(format!("linearized: {}", entries[i].op));
    }
    ops.push(format!("cannot linearize: {}", entries[stuck].op));
    let (lo, hi) = (entries[stuck].call, entries[stuck].ret);
    let concurrent: Vec<&Entry> = entries
        .iter()
        .enumerate()
        .filter(|(i, e)| *i != stuck && !on_path.contains(i) && e.call < hi && e.ret > lo)
        .map(|(_, e)| e)
        .collect();
    for e in concurrent.iter().take(MAX_SHOWN) {
        ops.push(format!("concurrent: {}", e.op));
    }
    if concurrent.len() > MAX_SHOWN {
        ops.push(format!("... and {} more concurrent operations", concurrent.len() - MAX_SHOWN));
    }
    Anomaly { kind: "nonlinearizable".into(), key: None, message, ops }
}

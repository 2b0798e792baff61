//! Set completeness: every read of the set holds every add acknowledged before the read
//! began, and nothing that was never added (nor anything whose add definitely failed).
//! Indeterminate adds may or may not be present. Checked per key.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::{Anomaly, Report, Validity};
use crate::history::{Operation, Type, F};

/// What the history says about one element.
#[derive(Default)]
struct Element<'a> {
    ok: Vec<&'a Operation>,
    info: Vec<&'a Operation>,
    fail: Vec<&'a Operation>,
}

pub fn check(ops: &[Operation]) -> Report {
    let mut keys: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops {
        keys.entry(op.key.as_str()).or_default().push(op);
    }
    let mut anomalies = Vec::new();
    let mut unknown = Vec::new();
    let mut stats = serde_json::Map::new();
    for (key, key_ops) in &keys {
        match check_key(key, key_ops) {
            Ok((found, s)) => {
                anomalies.extend(found);
                stats.insert(key.to_string(), s);
            }
            Err(why) => unknown.push(format!("{key}: {why}")),
        }
    }
    let valid = if !anomalies.is_empty() {
        Validity::Invalid
    } else if !unknown.is_empty() || keys.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let summary = match valid {
        Validity::Valid => "every acknowledged add was read, and nothing else".to_string(),
        Validity::Invalid => format!("{} anomalies", anomalies.len()),
        Validity::Unknown if keys.is_empty() => "the history holds no set operations".to_string(),
        Validity::Unknown => format!("no verdict for {}", unknown.join("; ")),
    };
    Report { checker: "set".into(), valid, summary, anomalies, stats: json!({ "keys": stats }) }
}

/// The anomalies of one key, and its counts; `Err` when there is nothing to judge by.
fn check_key(key: &str, ops: &[&Operation]) -> Result<(Vec<Anomaly>, Value), String> {
    let mut elements: HashMap<String, Element> = HashMap::new();
    let mut reads = Vec::new();
    for op in ops {
        match op.f {
            F::Add => {
                let e = elements.entry(op.invoke_value.to_string()).or_default();
                match op.outcome {
                    Type::Ok => e.ok.push(op),
                    Type::Fail => e.fail.push(op),
                    _ => e.info.push(op),
                }
            }
            F::Read if op.outcome == Type::Ok => {
                let Some(items) = op.value.as_array() else {
                    return Err(format!("malformed history: a set read must return a list, in {op}"));
                };
                reads.push((*op, items.iter().map(|v| v.to_string()).collect::<Vec<_>>()));
            }
            F::Read => {}
            f => return Err(format!("malformed history: '{f}' is not a set operation (use --workload register)")),
        }
    }
    if reads.is_empty() {
        return Err("no read of the set succeeded, so nothing can be judged".into());
    }
    let mut anomalies = Vec::new();
    let anomaly = |kind: &str, message: String, ops: Vec<String>| Anomaly {
        kind: kind.into(),
        key: Some(key.to_string()),
        message,
        ops,
    };
    let (mut recovered, mut unrecovered) = (0, 0);
    for (i, (read, items)) in reads.iter().enumerate() {
        let present: std::collections::HashSet<&String> = items.iter().collect();
        let mut lost: Vec<&Operation> = Vec::new();
        for e in elements.values() {
            let acked_before = e.ok.iter().find(|a| a.complete_index.is_some_and(|c| c < read.invoke_index));
            if let Some(add) = acked_before {
                if !present.contains(&add.invoke_value.to_string()) {
                    lost.push(add);
                }
            }
        }
        lost.sort_by_key(|o| o.invoke_index);
        if !lost.is_empty() {
            let mut shown: Vec<String> = lost.iter().map(|o| format!("lost: {o}")).collect();
            shown.push(format!("read: p{} read of {} elements", read.process, items.len()));
            anomalies.push(anomaly(
                "lost",
                format!("{} acknowledged adds are missing from a read that began after they completed", lost.len()),
                shown,
            ));
        }
        let mut unexpected = Vec::new();
        let mut resurrected = Vec::new();
        for item in items {
            match elements.get(item) {
                None => unexpected.push(format!("unexpected: {item} (never added)")),
                Some(e) if e.ok.is_empty() && e.info.is_empty() => {
                    resurrected.extend(e.fail.iter().map(|o| format!("failed add present: {o}")))
                }
                Some(e) if e.ok.iter().chain(&e.info).all(|a| a.invoke_index > read.complete_index.unwrap_or(0)) => {
                    unexpected.push(format!("unexpected: {item} (read before its add was invoked)"))
                }
                Some(_) => {}
            }
        }
        if !unexpected.is_empty() {
            anomalies.push(anomaly(
                "unexpected",
                format!("{} elements read that were never added", unexpected.len()),
                unexpected,
            ));
        }
        if !resurrected.is_empty() {
            anomalies.push(anomaly(
                "failed-add-present",
                format!("{} elements read whose add definitely failed", resurrected.len()),
                resurrected,
            ));
        }
        if i == reads.len() - 1 {
            for e in elements.values().filter(|e| e.ok.is_empty() && !e.info.is_empty()) {
                if present.contains(&e.info[0].invoke_value.to_string()) {
                    recovered += 1;
                } else {
                    unrecovered += 1;
                }
            }
        }
    }
    let count = |f: fn(&Element) -> bool| elements.values().filter(|e| f(e)).count();
    let stats = json!({
        "attempted": elements.len(),
        "acknowledged": count(|e| !e.ok.is_empty()),
        "failed": count(|e| e.ok.is_empty() && e.info.is_empty()),
        "indeterminate": count(|e| e.ok.is_empty() && !e.info.is_empty()),
        "indeterminate_present": recovered,
        "indeterminate_absent": unrecovered,
        "reads": reads.len(),
        "final_read_size": reads.last().map_or(0, |(_, items)| items.len()),
    });
    Ok((anomalies, stats))
}

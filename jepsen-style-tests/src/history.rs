//! The history of a run: every operation's invocation and completion, one JSON object per
//! line (see docs/jepsen.md).
//!
//! ```text
//! {"process": 3, "type": "invoke", "f": "write", "key": "k1", "value": 5, "time": 1200}
//! {"process": 3, "type": "ok",     "f": "write", "key": "k1", "value": 5, "time": 3400}
//! ```

use std::fmt;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an event says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Type {
    /// The client is about to send the operation.
    Invoke,
    /// The operation took effect (and, for a read, returned `value`).
    Ok,
    /// The operation certainly did not take effect.
    Fail,
    /// Indeterminate: the operation may or may not have taken effect, at any time after
    /// its invocation (a timeout, a lost connection).
    Info,
}

/// The operation's function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    Read,
    Write,
    /// Compare-and-set; `value` is `[expected, new]`.
    Cas,
    /// Add an element to a set; `value` is the element.
    Add,
    /// A read of a region's change feed (changefeed workload): `value` is `{"since": C}`
    /// on invoke, the events, cursor and pending count on `ok`.
    Deliver,
    /// An acknowledgement of change-feed events (changefeed workload): `value` is the list
    /// of event ids.
    Ack,
    /// A submission of an action (actions workload): `value` is `{"target"}` on invoke,
    /// `{"action_id", "status", "duplicate"}` on `ok`.
    Submit,
    /// A worker's claim (actions workload): `value` is `{"worker"}` on invoke, the claimed
    /// action (`{"action_id", "worker", "attempts", "started_ms", "lease_until_ms"}`) or
    /// `null` on `ok`.
    Claim,
    /// A worker starts executing a claimed action (actions workload): invoked and `ok` at
    /// once with `{"action_id", "worker", "attempt"}`.
    Run,
    /// A worker reports an action done (actions workload): `{"worker", "attempt"}`.
    Complete,
    /// A worker reports an action failed (actions workload): `{"worker", "attempt"}`.
    Fail,
}

impl fmt::Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            F::Read => "read",
            F::Write => "write",
            F::Cas => "cas",
            F::Add => "add",
            F::Deliver => "deliver",
            F::Ack => "ack",
            F::Submit => "submit",
            F::Claim => "claim",
            F::Run => "run",
            F::Complete => "complete",
            F::Fail => "fail",
        };
        f.write_str(s)
    }
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: Type,
    pub f: F,
    pub key: String,
    #[serde(default)]
    pub value: Value,
    /// Nanoseconds since the start of the run.
    pub time: u64,
    /// Which peer the client talked to (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// Why an operation failed or is indeterminate (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    pub fn new(process: u64, kind: Type, f: F, key: impl Into<String>, value: Value, time: u64) -> Self {
        Self { process, kind, f, key: key.into(), value, time, node: None, error: None }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Type::Invoke => "invoke",
            Type::Ok => "ok",
            Type::Fail => "fail",
            Type::Info => "info",
        };
        write!(
            f,
            "t={:.3}s p{} {:<6} {} {} {}",
            self.time as f64 / 1e9,
            self.process,
            kind,
            self.f,
            self.key,
            self.value
        )?;
        if let Some(e) = &self.error {
            write!(f, " ({e})")?;
        }
        Ok(())
    }
}

/// A history file could not be read.
#[derive(Debug)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads a history; blank lines and lines starting with `#` are skipped.
pub fn read(reader: impl BufRead) -> Result<Vec<Event>, ParseError> {
    let mut events = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| ParseError { line: i + 1, message: e.to_string() })?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let event: Event = serde_json::from_str(trimmed).map_err(|e| ParseError {
            line: i + 1,
            message: format!(
                "not a history event ({e}); expected {{\"process\", \"type\", \"f\", \"key\", \"value\", \"time\"}}"
            ),
        })?;
        events.push(event);
    }
    Ok(events)
}

pub fn read_file(path: &Path) -> Result<Vec<Event>, ParseError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ParseError { line: 0, message: format!("cannot open {}: {e}", path.display()) })?;
    read(std::io::BufReader::new(file))
}

pub fn write_event(out: &mut impl Write, event: &Event) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, event)?;
    out.write_all(b"\n")
}

/// One operation: an invocation paired with its completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub process: u64,
    pub f: F,
    pub key: String,
    /// The invocation's value (what a write writes, what a cas expects and sets).
    pub invoke_value: Value,
    /// The completion's value (what a read returned); `Null` when indeterminate.
    pub value: Value,
    /// `Ok`, `Fail` or `Info`; an invocation without completion counts as `Info`.
    pub outcome: Type,
    pub invoke_time: u64,
    /// `None` when the operation never completed definitely (`info`, or no completion).
    pub complete_time: Option<u64>,
    /// Positions of the invocation and the completion in the event list.
    pub invoke_index: usize,
    pub complete_index: Option<usize>,
    pub error: Option<String>,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match self.outcome {
            Type::Invoke => "invoke",
            Type::Ok => "ok",
            Type::Fail => "fail",
            Type::Info => "info",
        };
        let value = match (self.f, self.outcome) {
            (F::Read, Type::Ok) => &self.value,
            _ => &self.invoke_value,
        };
        write!(f, "p{} {} {} {} -> {}", self.process, self.f, self.key, value, outcome)?;
        let end = match self.complete_time {
            Some(t) => format!("{:.6}s", t as f64 / 1e9),
            None => "?".into(),
        };
        write!(f, " [{:.6}s .. {end}]", self.invoke_time as f64 / 1e9)?;
        if let Some(e) = &self.error {
            write!(f, " ({e})")?;
        }
        Ok(())
    }
}

/// Pairs every invocation with the next completion of the same process. A completion
/// without an invocation, or a second invocation before the completion, is an error: the
/// history is malformed and no verdict could be trusted.
pub fn pair(events: &[Event]) -> Result<Vec<Operation>, ParseError> {
    let mut open: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut ops: Vec<Operation> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        match e.kind {
            Type::Invoke => {
                if let Some(&prev) = open.get(&e.process) {
                    return Err(ParseError {
                        line: 0,
                        message: format!(
                            "event {}: process {} invokes again while its operation of event {} is still open",
                            i + 1,
                            e.process,
                            ops[prev].invoke_index + 1
                        ),
                    });
                }
                open.insert(e.process, ops.len());
                ops.push(Operation {
                    process: e.process,
                    f: e.f,
                    key: e.key.clone(),
                    invoke_value: e.value.clone(),
                    value: Value::Null,
                    outcome: Type::Info,
                    invoke_time: e.time,
                    complete_time: None,
                    invoke_index: i,
                    complete_index: None,
                    error: None,
                });
            }
            kind => {
                let Some(at) = open.remove(&e.process) else {
                    return Err(ParseError {
                        line: 0,
                        message: format!(
                            "event {}: process {} completes an operation it never invoked",
                            i + 1,
                            e.process
                        ),
                    });
                };
                let op = &mut ops[at];
                if op.f != e.f || op.key != e.key {
                    return Err(ParseError {
                        line: 0,
                        message: format!(
                            "event {}: completion {} {} does not match the invocation {} {} of process {}",
                            i + 1,
                            e.f,
                            e.key,
                            op.f,
                            op.key,
                            e.process
                        ),
                    });
                }
                op.outcome = kind;
                op.value = e.value.clone();
                op.complete_index = Some(i);
                op.error = e.error.clone();
                if kind != Type::Info {
                    op.complete_time = Some(e.time);
                }
            }
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_pairing() {
        let events = vec![
            Event::new(1, Type::Invoke, F::Write, "k1", json!(3), 10),
            Event::new(2, Type::Invoke, F::Read, "k1", Value::Null, 11),
            Event::new(1, Type::Ok, F::Write, "k1", json!(3), 20),
            Event::new(2, Type::Info, F::Read, "k1", Value::Null, 30),
            Event::new(3, Type::Invoke, F::Cas, "k1", json!([3, 4]), 40),
        ];
        let mut buf = Vec::new();
        for e in &events {
            write_event(&mut buf, e).unwrap();
        }
        let text = String::from_utf8(buf).unwrap();
        assert!(text.lines().next().unwrap().contains("\"type\":\"invoke\""));
        let back = read(text.as_bytes()).unwrap();
        assert_eq!(back, events);
        let ops = pair(&back).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!((ops[0].outcome, ops[0].complete_time), (Type::Ok, Some(20)));
        assert_eq!((ops[1].outcome, ops[1].complete_time), (Type::Info, None));
        assert_eq!((ops[2].outcome, ops[2].complete_time), (Type::Info, None), "no completion counts as info");
    }

    #[test]
    fn malformed_histories_are_refused() {
        let e = read("{\"process\": 1}\n".as_bytes()).unwrap_err();
        assert_eq!(e.line, 1);
        let orphan = vec![Event::new(1, Type::Ok, F::Read, "k", Value::Null, 1)];
        assert!(pair(&orphan).unwrap_err().message.contains("never invoked"));
        let twice = vec![
            Event::new(1, Type::Invoke, F::Read, "k", Value::Null, 1),
            Event::new(1, Type::Invoke, F::Read, "k", Value::Null, 2),
        ];
        assert!(pair(&twice).unwrap_err().message.contains("still open"));
    }
}

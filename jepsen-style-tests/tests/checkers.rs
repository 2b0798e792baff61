//! The checkers must fail on broken histories and pass on correct ones.

use std::path::Path;
use std::time::Duration;

use jepsen::check::{check_events, check_file, Workload};
use jepsen::checker::Validity;
use jepsen::history::{Event, Type, F};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

const BUDGET: Duration = Duration::from_secs(20);

/// Every file in histories/ is named `<workload>-<pass|fail>-<what>.jsonl`.
#[test]
fn shipped_histories_have_the_verdict_their_name_says() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("histories");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut parts = name.trim_end_matches(".jsonl").split('-');
        let workload = match parts.next() {
            Some("register") => Workload::Register,
            Some("set") => Workload::Set,
            Some("changefeed") => Workload::Changefeed,
            Some("dns") => Workload::Dns,
            _ => panic!("{name}: unknown workload prefix"),
        };
        let expected = match parts.next() {
            Some("pass") => Validity::Valid,
            Some("fail") => Validity::Invalid,
            _ => panic!("{name}: expected pass or fail after the workload"),
        };
        let report = check_file(workload, &path, BUDGET).unwrap();
        assert_eq!(report.valid, expected, "{name}:\n{}", report.render());
        if expected == Validity::Invalid {
            assert!(!report.anomalies.is_empty() && !report.anomalies[0].ops.is_empty(), "{name}: names no operation");
        }
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} histories found in {}", dir.display());
}

/// A history recorder for tests.
#[derive(Default)]
struct H {
    events: Vec<Event>,
}

impl H {
    fn invoke(&mut self, p: u64, f: F, key: &str, value: Value) {
        let t = self.events.len() as u64;
        self.events.push(Event::new(p, Type::Invoke, f, key, value, t));
    }
    fn complete(&mut self, p: u64, kind: Type, f: F, key: &str, value: Value) {
        let t = self.events.len() as u64;
        self.events.push(Event::new(p, kind, f, key, value, t));
    }
}

/// A real atomic register driven by several simulated clients: every operation takes
/// effect at a random moment between its invocation and its completion, and some
/// completions are lost (info).
fn simulate(seed: u64, processes: u64, ops: usize) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut h = H::default();
    let mut register: Option<i64> = None;
    // Per process: (f, invoke value, phase) where phase 0 = invoked, 1 = applied (result).
    let mut pending: Vec<Option<(F, Value, Option<Value>)>> = vec![None; processes as usize];
    let mut next_value = 1;
    let mut started = 0;
    while started < ops || pending.iter().any(|p| p.is_some()) {
        let p = rng.gen_range(0..processes) as usize;
        let pid = p as u64 + 1;
        match pending[p].take() {
            None if started < ops => {
                started += 1;
                let (f, v) = match rng.gen_range(0..3) {
                    0 => (F::Read, Value::Null),
                    1 => {
                        next_value += 1;
                        (F::Write, json!(next_value))
                    }
                    _ => {
                        next_value += 1;
                        (F::Cas, json!([rng.gen_range(1..=next_value.max(2) - 1), next_value]))
                    }
                };
                h.invoke(pid, f, "k", v.clone());
                pending[p] = Some((f, v, None));
            }
            None => {}
            Some((f, v, None)) => {
                // Take effect now.
                let result = match f {
                    F::Read => json!(register),
                    F::Write => {
                        register = v.as_i64();
                        json!(true)
                    }
                    _ => {
                        let (e, n) = (v[0].as_i64(), v[1].as_i64());
                        if register == e {
                            register = n;
                            json!(true)
                        } else {
                            json!(false)
                        }
                    }
                };
                pending[p] = Some((f, v, Some(result)));
            }
            Some((f, v, Some(result))) => {
                let lost = rng.gen_bool(0.1);
                match f {
                    F::Read if lost => h.complete(pid, Type::Info, f, "k", Value::Null),
                    F::Read => h.complete(pid, Type::Ok, f, "k", result),
                    _ if lost => h.complete(pid, Type::Info, f, "k", v),
                    F::Cas if result == json!(false) => h.complete(pid, Type::Fail, f, "k", v),
                    _ => h.complete(pid, Type::Ok, f, "k", v),
                }
            }
        }
    }
    h.events
}

#[test]
fn simulated_atomic_registers_are_linearizable() {
    for seed in 0..40 {
        let events = simulate(seed, 5, 150);
        let report = check_events(Workload::Register, &events, BUDGET).unwrap();
        assert_eq!(report.valid, Validity::Valid, "seed {seed}:\n{}", report.render());
    }
}

#[test]
fn a_corrupted_read_in_a_simulated_history_is_found() {
    let mut found = 0;
    for seed in 0..40 {
        let mut events = simulate(seed, 4, 120);
        // Make one successful read return a value nobody ever wrote.
        let Some(read) = events.iter_mut().rev().find(|e| e.f == F::Read && e.kind == Type::Ok && !e.value.is_null())
        else {
            continue;
        };
        read.value = json!(1_000_000);
        let report = check_events(Workload::Register, &events, BUDGET).unwrap();
        assert_eq!(report.valid, Validity::Invalid, "seed {seed}: a read of 1000000 passed");
        found += 1;
    }
    assert!(found > 30);
}

/// Many overlapping acknowledged writes followed by an impossible read: the search must
/// visit every order before it can say no. With no time it must say "unknown", not hang
/// and not guess.
#[test]
fn the_search_gives_up_past_its_budget() {
    let mut h = H::default();
    for p in 1..=14 {
        h.invoke(p, F::Write, "k", json!(p));
    }
    for p in 1..=14 {
        h.complete(p, Type::Ok, F::Write, "k", json!(p));
    }
    h.invoke(99, F::Read, "k", Value::Null);
    h.complete(99, Type::Ok, F::Read, "k", json!(500));
    let report = check_events(Workload::Register, &h.events, Duration::ZERO).unwrap();
    assert_eq!(report.valid, Validity::Unknown, "{}", report.render());
    assert_eq!(report.valid.exit_code(), 2);
    let report = check_events(Workload::Register, &h.events, BUDGET).unwrap();
    assert_eq!(report.valid, Validity::Invalid, "{}", report.render());
}

#[test]
fn a_set_without_a_successful_read_has_no_verdict() {
    let mut h = H::default();
    h.invoke(1, F::Add, "set", json!(1));
    h.complete(1, Type::Ok, F::Add, "set", json!(1));
    h.invoke(1, F::Read, "set", Value::Null);
    h.complete(1, Type::Info, F::Read, "set", Value::Null);
    let report = check_events(Workload::Set, &h.events, BUDGET).unwrap();
    assert_eq!(report.valid, Validity::Unknown, "{}", report.render());
}

#[test]
fn a_read_of_an_add_that_completed_later_is_fine_but_one_acknowledged_before_must_be_there() {
    let mut h = H::default();
    h.invoke(1, F::Add, "set", json!(1));
    h.invoke(2, F::Read, "set", Value::Null);
    h.complete(2, Type::Ok, F::Read, "set", json!([]));
    h.complete(1, Type::Ok, F::Add, "set", json!(1));
    h.invoke(2, F::Read, "set", Value::Null);
    h.complete(2, Type::Ok, F::Read, "set", json!([1]));
    assert_eq!(check_events(Workload::Set, &h.events, BUDGET).unwrap().valid, Validity::Valid);
    h.invoke(3, F::Read, "set", Value::Null);
    h.complete(3, Type::Ok, F::Read, "set", json!([]));
    assert_eq!(check_events(Workload::Set, &h.events, BUDGET).unwrap().valid, Validity::Invalid);
}

#[test]
fn wrong_workload_or_malformed_history_is_no_verdict_never_a_pass() {
    let mut h = H::default();
    h.invoke(1, F::Add, "set", json!(1));
    h.complete(1, Type::Ok, F::Add, "set", json!(1));
    let report = check_events(Workload::Register, &h.events, BUDGET).unwrap();
    assert_eq!(report.valid, Validity::Unknown, "{}", report.render());
    h.complete(1, Type::Ok, F::Add, "set", json!(1));
    assert!(check_events(Workload::Set, &h.events, BUDGET).is_err());
}

#[test]
fn a_long_busy_history_is_checked_quickly() {
    let started = std::time::Instant::now();
    for seed in 100..103 {
        let events = simulate(seed, 10, 1500);
        let report = check_events(Workload::Register, &events, BUDGET).unwrap();
        assert_eq!(report.valid, Validity::Valid, "seed {seed}:\n{}", report.render());
    }
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}

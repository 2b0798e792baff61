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
            Some("actions") => Workload::Actions,
            Some("dns") => Workload::Dns,
            Some("leadership") => Workload::Leadership,
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

/// A change feed simulated step by step: writes of four objects (some acknowledged, some
/// failed, some indeterminate whether applied or not), two consumers of region eu reading
/// with a cursor and acknowledging (some acknowledgements fail or are lost), a drain and a
/// final read. Each step is atomic, so the history is correct by construction.
fn simulate_feed(seed: u64, steps: usize) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut h = H::default();
    let mut feed: std::collections::BTreeMap<u64, Value> = std::collections::BTreeMap::new();
    let (mut next_id, mut index) = (1u64, 100u64);
    let mut clocks = [0u64; 4];
    let mut cursors = [0u64; 2];
    let mut unacked: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    let mut process = 10;
    let key = |c: usize| format!("cf-feed-eu-{}", c + 1);
    let read = |h: &mut H, process: u64, c: usize, since: u64, feed: &std::collections::BTreeMap<u64, Value>| {
        let events: Vec<Value> = feed.range(since + 1..).map(|(_, e)| e.clone()).collect();
        let cursor = events.last().map_or(since, |e| e["id"].as_u64().unwrap());
        let invoke = if c == 9 { json!({"since": 0, "final": true}) } else { json!({"since": since}) };
        let k = if c == 9 { "cf-feed-eu-0".to_string() } else { key(c) };
        h.invoke(process, F::Deliver, &k, invoke);
        h.complete(
            process,
            Type::Ok,
            F::Deliver,
            &k,
            json!({"events": events, "cursor": cursor, "pending": feed.len()}),
        );
        (events.iter().map(|e| e["id"].as_u64().unwrap()).collect::<Vec<_>>(), cursor)
    };
    let ack = |h: &mut H, process: u64, c: usize, ids: &[u64], outcome: Type| {
        h.invoke(process, F::Ack, &key(c), json!(ids));
        h.complete(process, outcome, F::Ack, &key(c), json!(ids));
    };
    for step in 0..steps + 200 {
        let draining = step >= steps;
        match rng.gen_range(0..3) {
            0 if !draining => {
                let k = rng.gen_range(0..4);
                clocks[k] += 1;
                let (object, n) = (format!("cf-obj-0-{k}"), clocks[k]);
                index += rng.gen_range(1..3);
                let clock = json!({"sea": n});
                h.invoke(k as u64, F::Write, &object, json!({ "clock": clock }));
                let (outcome, applied) = match rng.gen_range(0..10) {
                    0 => (Type::Fail, false),
                    1 => (Type::Info, rng.gen_bool(0.5)),
                    _ => (Type::Ok, true),
                };
                if applied {
                    let event =
                        json!({"id": next_id, "object": object, "revision": index, "clock": clock, "kind": "put"});
                    feed.insert(next_id, event);
                    next_id += 1;
                }
                let value = json!({"clock": clock, "revision": index, "outcome": "applied"});
                h.complete(
                    k as u64,
                    outcome,
                    F::Write,
                    &object,
                    if outcome == Type::Ok { value } else { json!({ "clock": clock }) },
                );
            }
            1 | 2 => {
                let c = rng.gen_range(0..2);
                if !unacked[c].is_empty() {
                    let ids = std::mem::take(&mut unacked[c]);
                    let choices = if draining {
                        &[Type::Ok, Type::Ok, Type::Ok, Type::Info][..]
                    } else {
                        &[Type::Ok, Type::Ok, Type::Fail, Type::Info][..]
                    };
                    let outcome = choices[rng.gen_range(0..4)];
                    let applied = outcome == Type::Ok || (outcome == Type::Info && rng.gen_bool(0.5));
                    process += 1;
                    ack(&mut h, process, c, &ids, outcome);
                    if applied {
                        ids.iter().for_each(|id| drop(feed.remove(id)));
                    }
                    if outcome != Type::Ok {
                        unacked[c] = ids;
                    }
                }
                process += 1;
                let (ids, cursor) = read(&mut h, process, c, cursors[c], &feed);
                cursors[c] = cursor;
                unacked[c].extend(ids);
            }
            _ => {}
        }
    }
    // Sometimes the last acknowledgement is lost: its event stays pending.
    if rng.gen_bool(0.5) {
        let object = "cf-obj-0-0";
        clocks[0] += 1;
        index += 1;
        let clock = json!({"sea": clocks[0]});
        h.invoke(0, F::Write, object, json!({ "clock": clock }));
        h.complete(0, Type::Ok, F::Write, object, json!({"clock": clock, "revision": index, "outcome": "applied"}));
        let event = json!({"id": next_id, "object": object, "revision": index, "clock": clock, "kind": "put"});
        feed.insert(next_id, event);
        process += 1;
        let (ids, _) = read(&mut h, process, 0, cursors[0], &feed);
        process += 1;
        ack(&mut h, process, 0, &ids, Type::Info);
    }
    process += 1;
    read(&mut h, process, 9, 0, &feed);
    h.events
}

#[test]
fn simulated_change_feeds_are_valid_and_corruptions_are_found() {
    let (mut delivered, mut absent, mut unacked) = (0, 0, 0);
    for seed in 0..30 {
        let events = simulate_feed(seed, 300);
        let report = check_events(Workload::Changefeed, &events, BUDGET).unwrap();
        assert_eq!(report.valid, Validity::Valid, "seed {seed}:\n{}", report.render());
        let eu = &report.stats["regions"]["eu"];
        delivered += eu["indeterminate_delivered"].as_u64().unwrap();
        absent += eu["indeterminate_absent"].as_u64().unwrap();
        unacked += eu["final_read"]["events"].as_u64().unwrap();
        // Drop one delivery of an acknowledged write from every read: it is lost.
        let mut lost = events.clone();
        let victim = events.iter().rev().find(|e| e.f == F::Write && e.kind == Type::Ok).unwrap().key.clone();
        let clock = events.iter().rev().find(|e| e.f == F::Write && e.kind == Type::Ok).unwrap().value["clock"].clone();
        for e in lost.iter_mut().filter(|e| e.f == F::Deliver && e.kind == Type::Ok) {
            let list = e.value["events"].as_array_mut().unwrap();
            list.retain(|x| !(x["object"] == json!(victim) && x["clock"] == clock));
            let n = list.len();
            if e.value["pending"].as_u64().is_some() && e.key.ends_with("-0") {
                e.value["pending"] = json!(n);
            }
        }
        let report = check_events(Workload::Changefeed, &lost, BUDGET).unwrap();
        assert!(report.anomalies.iter().any(|a| a.kind == "lost"), "seed {seed}:\n{}", report.render());
        // Deliver one event twice to the same consumer.
        let mut twice = events.clone();
        let i = twice
            .iter()
            .position(|e| {
                e.f == F::Deliver
                    && e.kind == Type::Ok
                    && e.value["events"].as_array().is_some_and(|l| !l.is_empty())
                    && !e.key.ends_with("-0")
            })
            .unwrap();
        let (p, key, value) = (twice[i].process, twice[i].key.clone(), twice[i].value.clone());
        let since = value["cursor"].as_u64().unwrap();
        twice.push(Event::new(p + 100_000, Type::Invoke, F::Deliver, &key, json!({"since": since}), 1_000_000));
        twice.push(Event::new(p + 100_000, Type::Ok, F::Deliver, &key, value, 1_000_001));
        let report = check_events(Workload::Changefeed, &twice, BUDGET).unwrap();
        assert!(report.anomalies.iter().any(|a| a.kind == "duplicate-delivery"), "seed {seed}:\n{}", report.render());
    }
    assert!(delivered > 0 && absent > 0 && unacked > 0, "{delivered} {absent} {unacked}: the simulation lacks variety");
}

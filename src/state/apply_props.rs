//! Property tests of [`State::apply`]: it is total and deterministic.
//!
//! Arbitrary commands, well-formed and hostile alike (0 and `u64::MAX`, NaN, infinities
//! and subnormal floats, empty and over-long names, references to things that do not
//! exist, ids out of order), are applied as long random sequences. Names come from small
//! pools so that commands often refer to what earlier ones created.
//!
//! Checked for every sequence:
//! - no panic, whatever the build (debug builds check overflow);
//! - two fresh states given the same sequence end byte for byte the same, with the same
//!   outcome for every command;
//! - a command that fails changes nothing;
//! - a snapshot taken anywhere and restored gives the same state, and the rest of the
//!   sequence applied to the restored copy ends where the original ends.
//!
//! `PROPTEST_CASES` sets the number of sequences (`scripts/fuzz` runs a long search).

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use super::actions::{ActionPolicy, ActionSpec, AnomalyReport, Source};
use super::clock::VClock;
use super::objects::{
    ObjectWrite, RegionState, Resolution, SchedulerWeights, Strategy as Conflict, SyncMode, SyncPolicy,
};
use super::{
    Command, DomainSpec, Health, NodeSpec, Reason, RegionReport, RegionSpec, RowChange, State, Weights, ZoneSpec,
};

/// Names that refer to each other, plus the edges of what a name may be.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec!["a", "b", "c", "eu", "sea"]).prop_map(String::from),
        1 => Just(String::new()),
        1 => Just("x".repeat(63)),
        1 => Just("x".repeat(64)),
        1 => Just("Bad_Name".to_string()),
        1 => "[a-z0-9-]{0,8}",
    ]
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["example.com", "a.example.com", "b.example.com", "com"]).prop_map(String::from),
        1 => Just(String::new()),
        1 => Just(format!("{}.com", "a".repeat(250))),
        1 => Just("a..b".to_string()),
        1 => "[a-z.]{0,12}",
    ]
}

fn object_id() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["o1", "o2", "o3"]).prop_map(String::from),
        1 => Just(String::new()),
        1 => Just("o".repeat(257)),
        1 => Just("a/b".to_string()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["drain_node", "restore_node", "lock_domain", "pin_site", "failover_domain", "t1", "w1", "a", "example.com"])
            .prop_map(String::from),
        1 => Just(String::new()),
        1 => Just("t".repeat(257)),
    ]
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(u32::MAX as u64),
        0..100u64,
        1_000..2_000_000u64,
        any::<u64>(),
    ]
}

fn small() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(1), Just(u32::MAX), 0..20u32, any::<u32>()]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        Just(-0.0),
        Just(0.0),
        Just(1.0),
        Just(-1.0),
        Just(1e308),
        0.0..1.0f64,
        any::<f64>(),
    ]
}

fn cas() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![3 => Just(None), 1 => Just(Some(0)), 1 => number().prop_map(Some), 1 => (0..40u64).prop_map(Some)]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        Just("192.0.2.1".parse().unwrap()),
        Just("2001:db8::1".parse().unwrap()),
        Just("0.0.0.0".parse().unwrap()),
        Just("224.0.0.1".parse().unwrap()),
        any::<u32>().prop_map(|n| IpAddr::from(n.to_be_bytes())),
    ]
}

fn clock() -> impl Strategy<Value = VClock> {
    btree_map(label(), number(), 0..4).prop_map(VClock)
}

fn attrs() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(label(), prop_oneof![Just("1".to_string()), Just("x".repeat(1025))], 0..3)
}

fn write() -> impl Strategy<Value = ObjectWrite> {
    (
        label(),
        clock(),
        number(),
        number(),
        prop_oneof![Just("h1".to_string()), Just("h2".to_string()), Just(String::new())],
        attrs(),
        prop::option::of(prop::sample::select(vec![
            Conflict::LastWriterWins,
            Conflict::Merge,
            Conflict::Manual,
            Conflict::Fork,
        ])),
        prop::option::of(prop::sample::select(vec![SyncMode::Eager, SyncMode::Lazy, SyncMode::OnDemand])),
        prop::option::of(small()),
    )
        .prop_map(|(region, clock, timestamp_ms, size, hash, attrs, strategy, sync, replicas)| ObjectWrite {
            region,
            clock,
            timestamp_ms,
            size,
            hash,
            attrs,
            strategy,
            sync,
            replicas,
        })
}

fn action_spec() -> impl Strategy<Value = ActionSpec> {
    (text(), text(), prop::sample::select(vec![Source::Deterministic, Source::AiDriven]), any::<u8>(), float(), attrs())
        .prop_map(|(kind, target, source, priority, confidence, parameters)| ActionSpec {
            kind,
            target,
            source,
            priority: priority % 7,
            confidence,
            parameters,
        })
}

fn action_policy() -> impl Strategy<Value = ActionPolicy> {
    (float(), small(), small(), number(), small(), number(), vec((text(), text()), 0..3)).prop_map(
        |(confidence_threshold, max_active, max_attempts, retry_backoff_ms, rate_limit, rate_window_ms, exclusive)| {
            ActionPolicy {
                confidence_threshold,
                max_active,
                max_attempts,
                retry_backoff_ms,
                rate_limit,
                rate_window_ms,
                exclusive,
                revision: 0,
            }
        },
    )
}

fn anomaly() -> impl Strategy<Value = AnomalyReport> {
    (text(), text(), float(), attrs(), prop::option::of(text()), prop::option::of(text())).prop_map(
        |(kind, severity, confidence, details, recommended_action, fingerprint)| AnomalyReport {
            timestamp: "2026-01-01T00:00:00Z".into(),
            kind,
            severity,
            confidence,
            details,
            recommended_action,
            source: Source::AiDriven,
            fingerprint,
        },
    )
}

fn row_change() -> impl Strategy<Value = RowChange> {
    let reasons = vec![Reason::Initial, Reason::Failover, Reason::Fallback, Reason::Empty, Reason::Pin];
    (
        domain(),
        label(),
        prop::option::of(label()),
        prop::option::of(ip()),
        prop::option::of(float()),
        prop::sample::select(reasons),
    )
        .prop_map(|(domain, region, node, ip, score, reason)| RowChange {
            domain,
            region,
            node,
            ip,
            score,
            reason,
        })
}

/// The registry and dispatch commands.
fn registry_command() -> impl Strategy<Value = Command> {
    let health = prop::sample::select(vec![Health::Unknown, Health::Up, Health::Down, Health::Maintenance]);
    prop_oneof![
        (
            label(),
            vec(prop_oneof![Just("10.0.0.0/8".parse().unwrap()), Just("10.0.0.1/8".parse().unwrap())], 0..3),
            vec(label(), 0..3),
            cas()
        )
            .prop_map(|(name, cidrs, fallback, cas)| Command::PutRegion {
                name,
                spec: RegionSpec { cidrs, fallback },
                cas
            }),
        (label(), cas()).prop_map(|(name, cas)| Command::DeleteRegion { name, cas }),
        (label(), ip(), label(), label(), small(), cas()).prop_map(|(id, ip, region, site, capacity, cas)| {
            Command::PutNode { id, spec: NodeSpec { ip, region, site, capacity }, cas }
        }),
        (label(), cas()).prop_map(|(id, cas)| Command::DeleteNode { id, cas }),
        (domain(), vec(domain(), 0..3), domain(), cas()).prop_map(|(name, ns, hostmaster, cas)| Command::PutZone {
            name,
            spec: ZoneSpec { ns, hostmaster },
            cas
        }),
        (domain(), cas()).prop_map(|(name, cas)| Command::DeleteZone { name, cas }),
        (label(), label(), cas()).prop_map(|(id, region, cas)| Command::PutSite { id, region, cas }),
        (label(), cas()).prop_map(|(id, cas)| Command::DeleteSite { id, cas }),
        (label(), prop::option::of(label())).prop_map(|(id, node)| Command::PinSite { id, node }),
        (domain(), vec(label(), 0..3), small(), prop::option::of(domain()), cas()).prop_map(
            |(name, sites, ttl, cname, cas)| {
                Command::PutDomain { name, spec: DomainSpec { sites, ttl: ttl % 100_000, cname }, cas }
            }
        ),
        (domain(), cas()).prop_map(|(name, cas)| Command::DeleteDomain { name, cas }),
        (domain(), prop::option::of(label())).prop_map(|(name, site)| Command::LockDomain { name, site }),
        (label(), prop::option::of(text())).prop_map(|(id, reason)| Command::SetMaintenance { id, reason }),
        (float(), float(), float(), float(), float(), number()).prop_map(
            |(latency, load, error_rate, cpu, hysteresis, down_after_ms)| {
                Command::PutPolicy { weights: Weights { latency, load, error_rate, cpu }, hysteresis, down_after_ms }
            }
        ),
        vec((label(), health), 0..4).prop_map(|changes| Command::SetHealth { changes }),
        (vec(row_change(), 0..4), number()).prop_map(|(changes, at_ms)| Command::Dispatch { changes, at_ms }),
    ]
}

/// The object and sync commands.
fn object_command() -> impl Strategy<Value = Command> {
    let region_state = prop::sample::select(vec![RegionState::Healthy, RegionState::Degraded, RegionState::Offline]);
    prop_oneof![
        4 => (object_id(), write(), cas(), number()).prop_map(|(id, write, cas, at_ms)| Command::PutObject { id, write, cas, at_ms }),
        1 => (object_id(), cas()).prop_map(|(id, cas)| Command::DeleteObject { id, cas }),
        1 => (object_id(), prop_oneof![any::<usize>().prop_map(Resolution::Pick), (0..3usize).prop_map(Resolution::Pick), write().prop_map(Resolution::Version)], number())
            .prop_map(|(id, resolution, at_ms)| Command::ResolveConflict { id, resolution, at_ms }),
        1 => (object_id(), label(), any::<bool>()).prop_map(|(id, node, healthy)| Command::MarkReplica { id, node, healthy }),
        1 => (label(), vec(number(), 0..4), prop::option::of(number()), number())
            .prop_map(|(region, events, upto, at_ms)| Command::AckEvents { region, events, upto, at_ms }),
        1 => (label(), vec(object_id(), 0..3)).prop_map(|(region, objects)| Command::PullObjects { region, objects }),
        1 => vec(label(), 0..3).prop_map(|regions| Command::ReleaseLazy { regions }),
        1 => (label(), region_state, number(), number(), float(), number()).prop_map(|(region, state, sync_lag, storage_used, load_level, at_ms)| {
            Command::RegionHeartbeat { region, report: RegionReport { state, sync_lag, storage_used, load_level }, at_ms }
        }),
        1 => (small(), small(), number(), small()).prop_map(|(default_replicas, batch_size, lazy_interval_ms, max_pending)| {
            Command::PutSyncPolicy {
                policy: SyncPolicy { default_replicas, batch_size, lazy_interval_ms, max_pending, ..SyncPolicy::default() },
            }
        }),
        1 => (float(), float(), float(), float(), float()).prop_map(|(w_cpu, w_ram, w_gpu, w_latency, w_io)| Command::PutScheduler {
            weights: SchedulerWeights { w_cpu, w_ram, w_gpu, w_latency, w_io, revision: 0 },
        }),
    ]
}

/// The remediation queue's commands.
fn action_command() -> impl Strategy<Value = Command> {
    let id = || prop_oneof![0..6u64, number()];
    prop_oneof![
        3 => (action_spec(), number()).prop_map(|(spec, at_ms)| Command::SubmitAction { spec, at_ms }),
        2 => (text(), vec(text(), 0..3), number(), number())
            .prop_map(|(worker, kinds, lease_ms, at_ms)| Command::ClaimAction { worker, kinds, lease_ms, at_ms }),
        2 => (id(), text(), prop::option::of(small()), any::<bool>(), prop::option::of(text()), number()).prop_map(
            |(id, worker, attempt, ok, message, at_ms)| Command::ReportAction { id, worker, attempt, ok, message, at_ms }
        ),
        1 => number().prop_map(|at_ms| Command::ExpireLeases { at_ms }),
        1 => (vec(id(), 0..4), number()).prop_map(|(ids, at_ms)| Command::RunBuiltins { ids, at_ms }),
        1 => (anomaly(), prop::option::of(action_spec()), number())
            .prop_map(|(report, action, at_ms)| Command::ReportAnomaly { report, action, at_ms }),
        1 => (text(), number()).prop_map(|(fingerprint, at_ms)| Command::ResolveAlert { fingerprint, at_ms }),
        1 => action_policy().prop_map(|policy| Command::PutActionPolicy { policy }),
        1 => (number(), number(), small()).prop_map(|(at_ms, keep_ms, keep_max)| Command::PruneFinished { at_ms, keep_ms, keep_max }),
    ]
}

/// Any command under `?cas=`: guardable ones at a revision that may or may not match,
/// and others, which must be refused.
fn guarded_command() -> impl Strategy<Value = Command> {
    let command = prop_oneof![registry_command().boxed(), object_command().boxed(), action_command().boxed()];
    (command, prop_oneof![0..12u64, number()]).prop_map(|(command, cas)| command.guarded(Some(cas)))
}

/// Commands that build the state a later command can refer to, always well-formed.
fn setup() -> Vec<Command> {
    let region = |name: &str| Command::PutRegion {
        name: name.into(),
        spec: RegionSpec { cidrs: vec!["10.0.0.0/8".parse().unwrap()], fallback: vec![] },
        cas: None,
    };
    let node = |id: &str, site: &str| Command::PutNode {
        id: id.into(),
        spec: NodeSpec { ip: "192.0.2.1".parse().unwrap(), region: "a".into(), site: site.into(), capacity: 10 },
        cas: None,
    };
    vec![
        region("a"),
        region("b"),
        Command::PutSite { id: "a".into(), region: "a".into(), cas: None },
        Command::PutSite { id: "b".into(), region: "a".into(), cas: None },
        node("a", "a"),
        node("b", "b"),
        Command::PutZone {
            name: "example.com".into(),
            spec: ZoneSpec { ns: vec![], hostmaster: "h.example.com".into() },
            cas: None,
        },
        Command::PutDomain {
            name: "example.com".into(),
            spec: DomainSpec { sites: vec!["a".into(), "b".into()], ttl: 20, cname: None },
            cas: None,
        },
        Command::SetHealth { changes: vec![("a".into(), Health::Up), ("b".into(), Health::Up)] },
    ]
}

fn commands() -> impl Strategy<Value = Vec<Command>> {
    vec(
        prop_oneof![6 => registry_command(), 6 => object_command(), 6 => action_command(), 1 => guarded_command()],
        1..120,
    )
}

fn bytes(state: &State) -> Vec<u8> {
    bincode::serialize(state).expect("a state serializes")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn apply_is_total_deterministic_and_survives_a_snapshot(
        commands in commands(),
        with_setup in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut all = if with_setup { setup() } else { vec![] };
        all.extend(commands);
        let cut = cut.index(all.len() + 1);
        let (mut a, mut b) = (State::default(), State::default());
        let mut restored: Option<State> = None;
        for (i, command) in all.iter().enumerate() {
            if i == cut {
                let snapshot: State = bincode::deserialize(&bytes(&a)).expect("a snapshot loads");
                prop_assert_eq!(bytes(&snapshot), bytes(&a), "a snapshot round trip changes the state");
                restored = Some(snapshot);
            }
            let index = i as u64 + 1;
            let before = bytes(&a);
            let outcome = a.apply(index, command);
            prop_assert_eq!(&outcome, &b.apply(index, command), "two peers disagree on {:?}", command);
            if outcome.is_err() {
                prop_assert_eq!(&bytes(&a), &before, "a refused command changed the state: {:?}", command);
            }
            if let Some(r) = restored.as_mut() {
                prop_assert_eq!(&r.apply(index, command), &outcome, "a restored peer disagrees on {:?}", command);
            }
        }
        prop_assert_eq!(bytes(&a), bytes(&b));
        prop_assert!(a == b, "equal bytes, unequal states: a NaN got into the state");
        if let Some(r) = restored {
            prop_assert_eq!(bytes(&r), bytes(&a), "a peer restored from a snapshot ends elsewhere");
        }
    }
}

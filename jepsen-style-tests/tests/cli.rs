//! The `jepsen` binary's exit codes: 0 valid, 1 anomaly, 2 unknown or harness failure.

use std::path::Path;
use std::process::Command;

fn jepsen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jepsen")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn history(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("histories").join(name).to_string_lossy().into_owned()
}

#[test]
fn check_exits_0_on_a_valid_history_and_1_with_the_offending_operations() {
    let (code, out, _) = jepsen(&["check", "--workload", "register", &history("register-pass-sequential.jsonl")]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = jepsen(&["check", "--workload", "register", &history("register-fail-double-cas.jsonl")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot linearize: p3 cas k1 [1,3]"), "{out}");
    let (code, out, _) = jepsen(&["check", "--workload", "set", &history("set-fail-lost-add.jsonl")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lost: p1 add set 1"), "{out}");
    let (code, out, _) =
        jepsen(&["check", "--workload", "changefeed", &history("changefeed-pass-indeterminate-either-way.jsonl")]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = jepsen(&["check", "--workload", "changefeed", &history("changefeed-fail-lost-write.jsonl")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lost: p3 write cf-obj-2-0"), "{out}");
    let (code, out, _) = jepsen(&["check", "--workload", "dns", &history("dns-pass-failover.jsonl")]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = jepsen(&["check", "--workload", "dns", &history("dns-fail-late-failover.jsonl")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("peer 2 still answered the dead node dn-1"), "{out}");
}

#[test]
fn check_exits_2_when_it_cannot_judge() {
    let (code, _, err) = jepsen(&["check", "--workload", "set", "/nonexistent/history.jsonl"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot open /nonexistent/history.jsonl"), "{err}");
    let (code, out, _) = jepsen(&["check", "--workload", "set", &history("register-pass-sequential.jsonl")]);
    assert_eq!(code, 2, "a register history has no set read: {out}");
}

#[test]
fn a_run_that_cannot_start_is_a_harness_failure_never_a_pass() {
    let out = std::env::temp_dir().join(format!("jepsen-cli-test-{}", std::process::id()));
    let (code, stdout, err) =
        jepsen(&["run", "--binary", "/nonexistent/switchboard", "--seed", "9", "--out", &out.to_string_lossy()]);
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(code, 2, "{stdout}{err}");
    assert!(err.contains("harness failure"), "{err}");
    assert!(stdout.contains("reproduce with: jepsen run --seed 9"), "{stdout}");
}

/// End to end, on real peers in network namespaces: needs root, iproute2, iptables and
/// target/debug/switchboard. Opt in with `cargo test -p jepsen-style-tests -- --ignored`.
fn end_to_end(time: &str, extra: &[&str]) -> (i32, String) {
    end_to_end_seed(time, "4", extra)
}

fn end_to_end_seed(time: &str, seed: &str, extra: &[&str]) -> (i32, String) {
    // One run at a time: runs share the namespace names.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/switchboard");
    assert!(binary.is_file(), "build the peer first: cargo build --bin switchboard");
    let out = std::env::temp_dir().join(format!("jepsen-e2e-{}-{}", std::process::id(), extra.len()));
    let mut args = vec!["run", "--time", time, "--workload", "register", "--seed", seed, "--out"];
    let out_str = out.to_string_lossy().into_owned();
    args.push(&out_str);
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = jepsen(&args);
    let _ = std::fs::remove_dir_all(&out);
    (code, format!("{stdout}{stderr}"))
}

#[test]
#[ignore = "needs root and network namespaces; about 35 s"]
fn a_partitioned_cluster_passes_end_to_end() {
    let (code, out) = end_to_end("25", &["--nemesis", "partition,kill"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("linearizable: valid"), "{out}");
}

#[test]
#[ignore = "needs root and network namespaces; about 35 s"]
fn stale_reads_under_partitions_are_caught_end_to_end() {
    let (code, out) = end_to_end("25", &["--nemesis", "partition", "--stale-reads"]);
    assert_eq!(code, 1, "stale reads were not caught:\n{out}");
    assert!(out.contains("cannot linearize"), "{out}");
}

#[test]
#[ignore = "needs root, network namespaces and libfaketime; about 60 s"]
fn membership_snapshot_crash_clock_and_majority_kills_pass_end_to_end() {
    let (code, out) = end_to_end("50", &["--nemesis", "membership,snapshot-crash,clock,kill-majority"]);
    assert_eq!(code, 0, "{out}");
    // The membership fault adds a spare and removes it, or replaces a member by one.
    for what in ["spare", "snapshot", "clock skew", "kill -9 a majority", "linearizable: valid"] {
        assert!(out.contains(what), "no {what:?} in:\n{out}");
    }
}

#[test]
#[ignore = "needs root and network namespaces; about 45 s"]
fn a_lossy_follower_leaves_leader_and_term_alone_end_to_end() {
    // Seed 36: follower 2 loses 50 % of its Raft packets for 30 s.
    let (code, out) = end_to_end_seed("35", "36", &["--nemesis", "lossy"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("leadership: valid"), "{out}");
}

#[test]
#[ignore = "needs root and network namespaces; about 45 s"]
fn a_leader_unseated_by_a_lossy_follower_is_caught_end_to_end() {
    // Seed 9: 50 % loss, and the peers elect without pre-vote (switchboard's test hook).
    let (code, out) = end_to_end_seed("35", "9", &["--nemesis", "lossy", "--without-pre-vote"]);
    assert_eq!(code, 1, "a leader unseated by a lossy follower was not caught:\n{out}");
    assert!(out.contains("leader unseated by a lossy follower"), "{out}");
}

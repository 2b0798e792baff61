//! What an operator sees from the command line when things are wrong.

use std::process::Command;

use crate::util::{bin, cli};

#[test]
fn serve_refuses_to_start_without_a_cluster_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args([
            "serve",
            "--id",
            "1",
            "--raft-addr",
            "127.0.0.1:1",
            "--http-addr",
            "127.0.0.1:2",
            "--dns-addr",
            "127.0.0.1:3",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("SWITCHBOARD_CLUSTER_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SWITCHBOARD_CLUSTER_SECRET") && stderr.contains("--insecure"), "{stderr}");
}

#[test]
fn serve_names_a_missing_flag() {
    let out = Command::new(bin()).args(["serve", "--id", "1"]).env("SWITCHBOARD_CLUSTER_SECRET", "x").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data-dir"));
}

#[test]
fn a_mistyped_command_line_is_one_line_and_exit_1() {
    for args in [&["node", "put", "--bogus"][..], &["object", "get"][..], &["nonsense"][..]] {
        let out = cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("switchboard: "), "{stderr}");
    }
    let help = cli(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
}

#[test]
fn clients_say_when_no_peer_answers() {
    let out = cli(&["cluster", "status", "--endpoint", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("cannot reach http://127.0.0.1:9"), "{stderr}");
}

/// The dispatch resources from the command line alone, as an operator sets them up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_resources_from_the_command_line() {
    let c = crate::util::Cluster::start(3).await;
    let e = c.peer(2).url();
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--endpoint", e.as_str()]);
        let out = cli(&all);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    run(&["region", "put", "sea", "--cidr", "10.20.0.0/16"]);
    run(&["zone", "put", "example.com"]);
    run(&["site", "put", "sg-1", "--region", "sea"]);
    run(&["node", "put", "sg-a", "--ip", "192.0.2.1", "--region", "sea", "--site", "sg-1"]);
    run(&["domain", "put", "video.example.com", "--site", "sg-1", "--ttl", "30"]);
    run(&["node", "heartbeat", "sg-a", "--latency-ms", "12", "--load", "0.3", "--cpu", "0.2", "--error-rate", "0"]);
    run(&["node", "maintenance", "sg-a", "--on", "--reason", "disk swap"]);
    assert_eq!(run(&["node", "get", "sg-a"])["health"], "maintenance");
    run(&["node", "maintenance", "sg-a", "--off"]);
    run(&["domain", "lock", "video.example.com", "sg-1"]);
    assert_eq!(run(&["domain", "get", "video.example.com"])["lock"], "sg-1");
    run(&["domain", "unlock", "video.example.com"]);
    run(&["site", "pin", "sg-1", "sg-a"]);
    assert_eq!(run(&["site", "get", "sg-1"])["pin"], "sg-a");
    run(&["site", "unpin", "sg-1"]);
    run(&["dispatch", "set-policy", "--hysteresis", "0.2"]);
    assert_eq!(run(&["dispatch", "policy"])["hysteresis"], 0.2);
    let table = run(&["dispatch", "table"]);
    assert!(table["rows"].is_array());
    let why = run(&["dispatch", "resolve", "video.example.com", "--client", "10.20.1.2"]);
    assert_eq!(why["region"], "sea");

    let out = cli(&["node", "maintenance", "sg-a", "--endpoint", &e]);
    assert!(!out.status.success(), "neither --on nor --off");
    let out = cli(&["domain", "put", "video.example.com", "--site", "nope", "--endpoint", &e]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sites[0]"), "{}", String::from_utf8_lossy(&out.stderr));
}

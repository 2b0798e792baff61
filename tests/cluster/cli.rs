//! What an operator sees from the command line when things are wrong.

use std::process::Command;

use crate::util::{cli, BIN};

#[test]
fn serve_refuses_to_start_without_a_cluster_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
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
    let out = Command::new(BIN).args(["serve", "--id", "1"]).env("SWITCHBOARD_CLUSTER_SECRET", "x").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data-dir"));
}

#[test]
fn clients_say_when_no_peer_answers() {
    let out = cli(&["cluster", "status", "--endpoint", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("cannot reach http://127.0.0.1:9"), "{stderr}");
}

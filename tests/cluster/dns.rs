//! DNS with the real `dig` against every peer of a live cluster.

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::util::{eventually, Cluster};

/// Runs `dig` against a peer's DNS port; returns its whole output.
pub fn dig(addr: &str, args: &[&str]) -> String {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("dig")
        .args([&format!("@{ip}"), "-p", port, "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is installed by scripts/setup (bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn short(addr: &str, args: &[&str]) -> String {
    let mut all = vec!["+short"];
    all.extend_from_slice(args);
    dig(addr, &all).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authoritative_answers_from_every_peer() {
    let c = Cluster::start(3).await;
    let setup = [
        ("/v1/regions/sea", json!({"cidrs": ["10.20.0.0/16"], "fallback": []})),
        ("/v1/regions/eu", json!({"cidrs": ["10.30.0.0/16"], "fallback": []})),
        ("/v1/zones/example.com", json!({"hostmaster": "ops.example.com"})),
        ("/v1/sites/sg-1", json!({"region": "sea"})),
        ("/v1/sites/fra-1", json!({"region": "eu"})),
        ("/v1/nodes/sg-a", json!({"ip": "192.0.2.1", "region": "sea", "site": "sg-1", "capacity": 10})),
        ("/v1/nodes/fra-a", json!({"ip": "2001:db8::4", "region": "eu", "site": "fra-1", "capacity": 10})),
        ("/v1/domains/video.example.com", json!({"sites": ["sg-1", "fra-1"], "ttl": 42})),
        ("/v1/domains/a.deep.example.com", json!({"sites": ["sg-1"]})),
        ("/v1/domains/www.example.com", json!({"cname": "video.example.com", "ttl": 300})),
        // One heartbeat below keeps the nodes up for the whole test.
        ("/v1/policy/scoring", json!({"down_after_ms": 600_000})),
    ];
    for (path, body) in setup {
        let (status, answer) = c.call(1, Method::PUT, path, Some(body)).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    for node in ["sg-a", "fra-a"] {
        let body = json!({"cpu": 0.1, "load": 0.1, "latency_ms": 5, "error_rate": 0, "bandwidth_mbps": 1});
        assert_eq!(c.call(2, Method::POST, &format!("/v1/nodes/{node}/heartbeat"), Some(body)).await.0, 202);
    }
    let peers: Vec<String> = c.running().iter().map(|id| c.peer(*id).dns_addr.clone()).collect();
    eventually(Duration::from_secs(10), "every peer to answer the elected node", || async {
        peers.iter().all(|p| short(p, &["video.example.com", "A", "+subnet=10.20.1.0/24"]) == "192.0.2.1").then_some(())
    })
    .await;

    for p in &peers {
        // Geo: the client subnet picks the region; IPv6 nodes answer AAAA.
        let full = dig(p, &["video.example.com", "A", "+subnet=10.20.1.0/24"]);
        assert!(full.contains(" aa") && full.contains("status: NOERROR"), "{full}");
        assert!(full.contains("\t42\tIN\tA\t192.0.2.1"), "TTL of the domain: {full}");
        assert!(full.contains("CLIENT-SUBNET: 10.20.1.0/24/16"), "ECS echoed with its scope: {full}");
        assert_eq!(short(p, &["video.example.com", "AAAA", "+subnet=10.30.0.0/24"]), "2001:db8::4");
        // The eu node has no IPv4 address: NODATA, with the SOA.
        let nodata = dig(p, &["video.example.com", "A", "+subnet=10.30.0.0/24"]);
        assert!(
            nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0") && nodata.contains("SOA"),
            "{nodata}"
        );
        // Mixed case is matched and preserved.
        let mixed = dig(p, &["ViDeO.ExAmPlE.cOm", "A", "+subnet=10.20.0.0/24"]);
        assert!(mixed.contains("ViDeO.ExAmPlE.cOm.\t42\tIN\tA\t192.0.2.1"), "{mixed}");
        // Apex: SOA with the applied index as serial, NS.
        let soa = short(p, &["example.com", "SOA"]);
        let serial: u64 = soa.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(serial > 5, "serial is the applied index: {soa}");
        assert!(soa.contains("ops.example.com."), "{soa}");
        assert_eq!(short(p, &["example.com", "NS"]).lines().count(), 3, "one NS per peer");
        // NXDOMAIN only when nothing exists at or below; an empty non-terminal is NODATA.
        let nx = dig(p, &["nope.example.com", "A"]);
        assert!(nx.contains("status: NXDOMAIN") && nx.contains(" aa") && nx.contains("SOA"), "{nx}");
        let ent = dig(p, &["deep.example.com", "A"]);
        assert!(ent.contains("status: NOERROR") && ent.contains("ANSWER: 0"), "{ent}");
        // Outside every zone: REFUSED, no recursion.
        let refused = dig(p, &["example.org", "A"]);
        assert!(refused.contains("status: REFUSED") && !refused.contains(" ra"), "{refused}");
        // An unknown type: NOERROR, empty.
        let unknown = dig(p, &["video.example.com", "TYPE65400"]);
        assert!(unknown.contains("status: NOERROR") && unknown.contains("ANSWER: 0"), "{unknown}");
        // EDNS version 1: BADVERS.
        let badvers = dig(p, &["video.example.com", "A", "+edns=1", "+noednsneg"]);
        assert!(badvers.contains("status: BADVERS"), "{badvers}");
        // An alias answers its CNAME, then the target's address.
        let alias = dig(p, &["www.example.com", "A", "+subnet=10.20.0.0/24"]);
        assert!(alias.contains("www.example.com.\t300\tIN\tCNAME\tvideo.example.com."), "{alias}");
        assert!(alias.contains("video.example.com.\t42\tIN\tA\t192.0.2.1"), "{alias}");
        // TCP answers the same.
        assert_eq!(short(p, &["+tcp", "video.example.com", "A", "+subnet=10.20.0.0/24"]), "192.0.2.1");
    }
    let metrics = c.http.get(format!("{}/metrics", c.peer(1).url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_dns_queries_total{qtype=\"A\",rcode=\"NoError\"}"), "{metrics}");
    let both = json!({"cname": "video.example.com", "sites": ["sg-1"]});
    let (status, body) = c.call(2, Method::PUT, "/v1/domains/m.example.com", Some(both)).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("sites")), "{body}");
}

/// One UDP query; `Ok(addresses)` or why it failed.
async fn query(server: &str, name: &str, subnet: &str) -> Result<Vec<std::net::IpAddr>, String> {
    use hickory_proto::op::{Edns, Message, Query, ResponseCode};
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let mut edns = Edns::new();
    edns.options_mut().insert(EdnsOption::Subnet(subnet.parse::<ClientSubnet>().unwrap()));
    q.edns = Some(edns);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    socket.send_to(&q.to_vec().unwrap(), server).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let len = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let reply = Message::from_vec(&buf[..len]).map_err(|e| e.to_string())?;
    if reply.metadata.response_code != ResponseCode::NoError {
        return Err(format!("{:?}", reply.metadata.response_code));
    }
    Ok(reply.answers.iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0.into()) } else { None }).collect())
}

/// video.example.com served by one node in region sea (10.20.0.0/16), heard from once
/// and kept up for the whole test.
async fn one_node_world(c: &Cluster) {
    for (path, body) in [
        ("/v1/policy/scoring", json!({"down_after_ms": 600_000})),
        ("/v1/regions/sea", json!({"cidrs": ["10.20.0.0/16"], "fallback": []})),
        ("/v1/zones/example.com", json!({})),
        ("/v1/sites/sg-1", json!({"region": "sea"})),
        ("/v1/nodes/sg-a", json!({"ip": "192.0.2.1", "region": "sea", "site": "sg-1", "capacity": 10})),
        ("/v1/domains/video.example.com", json!({"sites": ["sg-1"]})),
    ] {
        assert_eq!(c.call(1, Method::PUT, path, Some(body)).await.0, 200, "{path}");
    }
    let beat = json!({"cpu": 0.1, "load": 0.1, "latency_ms": 5, "error_rate": 0});
    assert_eq!(c.call(2, Method::POST, "/v1/nodes/sg-a/heartbeat", Some(beat)).await.0, 202);
}

/// DNS answers from each peer's own copy: killing the leader fails no query on the
/// survivors, even while there is no leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_query_fails_while_the_leader_dies() {
    let mut c = Cluster::start(3).await;
    one_node_world(&c).await;
    let leader = c.leader().await;
    let survivors: Vec<String> =
        c.running().into_iter().filter(|id| *id != leader).map(|id| c.peer(id).dns_addr.clone()).collect();
    for s in &survivors {
        let s = s.clone();
        eventually(Duration::from_secs(10), "the survivors to answer", || {
            let s = s.clone();
            async move { query(&s, "video.example.com.", "10.20.0.0/24").await.ok().filter(|a| !a.is_empty()) }
        })
        .await;
    }

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = survivors
        .iter()
        .cloned()
        .map(|server| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0, Vec::new());
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tick.tick().await;
                    match query(&server, "video.example.com.", "10.20.0.0/24").await {
                        Ok(a) if a == vec!["192.0.2.1".parse::<std::net::IpAddr>().unwrap()] => ok += 1,
                        other => failed.push(format!("{other:?}")),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.kill(leader);
    // Through the election and well past it.
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let (ok, failed) = client.await.unwrap();
        assert!(failed.is_empty(), "{} of {} queries failed: {failed:?}", failed.len(), ok + failed.len());
        assert!(ok >= 40, "only {ok} queries were made");
    }
}

/// With `dns.max_stale_ms`, a peer cut off from any leader for longer answers SERVFAIL,
/// so that resolvers move to another server; by default it keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_a_leader_for_too_long_answers_servfail_when_asked_to() {
    let mut c = Cluster::start_with_env(3, &[("SWITCHBOARD_DNS_MAX_STALE_MS", "1500")]).await;
    one_node_world(&c).await;
    let survivor = c.running()[2];
    let dns = c.peer(survivor).dns_addr.clone();
    eventually(Duration::from_secs(10), "an answer", || {
        let dns = dns.clone();
        async move { query(&dns, "video.example.com.", "10.20.0.0/24").await.ok().filter(|a| !a.is_empty()) }
    })
    .await;
    for id in c.running().into_iter().filter(|id| *id != survivor) {
        c.kill(id);
    }
    let failed = eventually(Duration::from_secs(10), "the cut-off peer to answer SERVFAIL", || {
        let dns = dns.clone();
        async move { query(&dns, "video.example.com.", "10.20.0.0/24").await.err() }
    })
    .await;
    assert_eq!(failed, "ServFail");
    let metrics = c.http.get(format!("{}/metrics", c.peer(survivor).url())).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("switchboard_dns_stale_answers_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

//! Hostile DNS traffic against a real peer: a flood from one source is rate-limited while
//! other sources are answered, and random or mutated packets never crash the peer, never
//! draw an answer bigger than the query allows, and get FORMERR, REFUSED or NOTIMP where
//! those are due.
//!
//! `SWITCHBOARD_FUZZ_PACKETS` sets how many fuzzed packets are sent (default 2000);
//! `scripts/fuzz dns` sends a million.

use std::net::UdpSocket;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::json;

use crate::util::Cluster;

async fn zone_with_a_domain(c: &Cluster) {
    let setup = [
        ("/v1/regions/r1", json!({"cidrs": ["10.0.0.0/8"], "fallback": []})),
        ("/v1/zones/example.com", json!({"hostmaster": "ops.example.com"})),
        ("/v1/sites/s1", json!({"region": "r1"})),
        ("/v1/nodes/n1", json!({"ip": "192.0.2.1", "region": "r1", "site": "s1", "capacity": 10})),
        ("/v1/domains/www.example.com", json!({"sites": ["s1"]})),
    ];
    for (path, body) in setup {
        let (status, answer) = c.call(1, Method::PUT, path, Some(body)).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
}

fn query(id: u16, name: &str, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.queries.push(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    if edns {
        let mut e = hickory_proto::op::Edns::new();
        e.set_max_payload(1232);
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

fn socket_from(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind(format!("{ip}:0")).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

/// Every datagram waiting on `s` until it stays quiet.
fn drain(s: &UdpSocket) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65_535];
    while let Ok(n) = s.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_source_is_rate_limited_while_others_are_answered() {
    let c = Cluster::start_with_env(3, &[("SWITCHBOARD_DNS_RRL_RATE", "50"), ("SWITCHBOARD_DNS_RRL_SLIP", "2")]).await;
    zone_with_a_domain(&c).await;
    let dns = c.peer(1).dns_addr.clone();
    // The flood comes from 127.0.0.2; another client sits in another /24.
    let flood = socket_from("127.0.0.2");
    flood.connect(&dns).unwrap();
    let packet = query(7, "www.example.com.", false);
    let sent = 1000;
    let started = std::time::Instant::now();
    let mut replies = Vec::new();
    for i in 0..sent {
        flood.send(&packet).unwrap();
        if i % 100 == 99 {
            replies.extend(drain(&flood));
        }
    }
    replies.extend(drain(&flood));
    let (full, truncated): (Vec<_>, Vec<_>) =
        replies.iter().map(|r| Message::from_vec(r).unwrap()).partition(|m| !m.metadata.truncation);
    // One second's worth answered in full, plus what the bucket refilled while the flood
    // lasted; half the rest truncated, the others dropped.
    let most = (50.0 * (1.0 + started.elapsed().as_secs_f64())) as usize + 5;
    assert!(full.len() >= 40 && full.len() <= most, "{} full answers out of {sent} (at most {most})", full.len());
    assert!(truncated.iter().all(|m| m.answers.is_empty() && m.queries.len() == 1));
    let limited = sent - full.len();
    assert!(
        truncated.len().abs_diff(limited / 2) <= limited / 10 + 5,
        "{} truncated of {limited} limited (slip 2)",
        truncated.len()
    );
    assert!(replies.len() < sent * 3 / 4, "the flood got {} replies out of {sent}", replies.len());

    let other = socket_from("127.0.1.5");
    other.connect(&dns).unwrap();
    for i in 0..20u16 {
        other.send(&query(100 + i, "www.example.com.", false)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let answers: Vec<Message> = drain(&other).iter().map(|r| Message::from_vec(r).unwrap()).collect();
    assert_eq!(answers.len(), 20, "another client is answered in full");
    assert!(answers.iter().all(|m| !m.metadata.truncation && m.metadata.response_code == ResponseCode::NoError));

    let (_, metrics) = c.call(1, Method::GET, "/metrics", None).await;
    let text = metrics.as_str().unwrap_or_default().to_string();
    let counted = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(counted("switchboard_dns_rrl_dropped_total") > 0.0, "the dropped responses are counted");
    assert!(counted("switchboard_dns_rrl_slipped_total") > 0.0, "the truncated responses are counted");
}

/// The size a response to `request` may have over UDP: 512 bytes, or the EDNS payload it
/// advertises (never below 512).
fn allowed_size(request: &[u8]) -> usize {
    match Message::from_vec(request).ok().and_then(|m| m.edns.as_ref().map(|e| e.max_payload())) {
        Some(p) => (p as usize).max(512),
        None => 512,
    }
}

fn mutate(rng: &mut impl Rng, base: &[u8]) -> Vec<u8> {
    let mut p = base.to_vec();
    match rng.gen_range(0..5) {
        0 => {
            let i = rng.gen_range(0..p.len());
            p[i] = rng.gen();
        }
        1 => p.truncate(rng.gen_range(0..p.len())),
        2 => p.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>())),
        3 => {
            // Counts in the header (QD/AN/NS/AR) that lie.
            let i = 4 + rng.gen_range(0..8);
            p[i] = rng.gen();
        }
        _ => {
            for _ in 0..rng.gen_range(1..6) {
                let i = rng.gen_range(0..p.len());
                p[i] ^= 1 << rng.gen_range(0..8);
            }
        }
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_packets_never_crash_a_peer_or_draw_an_oversized_answer() {
    let c = Cluster::start(3).await;
    zone_with_a_domain(&c).await;
    let dns = c.peer(2).dns_addr.clone();
    let count: usize = std::env::var("SWITCHBOARD_FUZZ_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    // The loopback address a local resolver uses is exempt from rate limiting.
    let s = socket_from("127.0.0.1");
    // Loopback answers within a millisecond; a packet the peer drops costs this wait.
    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    s.connect(&dns).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(count as u64);
    let bases = [
        query(1, "www.example.com.", false),
        query(2, "www.example.com.", true),
        query(3, "nothing.example.com.", true),
        query(4, "example.com.", false),
        query(5, "elsewhere.org.", false),
    ];
    let mut answered = 0;
    for i in 0..count {
        let packet = if i % 2 == 0 {
            (0..rng.gen_range(0..600)).map(|_| rng.gen::<u8>()).collect()
        } else {
            let base = &bases[rng.gen_range(0..bases.len())];
            mutate(&mut rng, base)
        };
        s.send(&packet).unwrap();
        // At most one reply per packet; a packet the peer drops costs the read timeout.
        let mut buf = [0u8; 65_535];
        let reply = s.recv(&mut buf).ok().map(|n| buf[..n].to_vec());
        if let Some(reply) = reply {
            answered += 1;
            assert!(reply.len() <= allowed_size(&packet), "a {}-byte answer to {packet:02x?}", reply.len());
            if let Ok(m) = Message::from_vec(&reply) {
                assert_eq!(m.metadata.message_type, MessageType::Response);
                let due = [
                    ResponseCode::NoError,
                    ResponseCode::NXDomain,
                    ResponseCode::FormErr,
                    ResponseCode::Refused,
                    ResponseCode::NotImp,
                    ResponseCode::BADVERS,
                    // Code 16 is BADVERS in an OPT answer; the parser may name it BADSIG.
                    ResponseCode::BADSIG,
                    ResponseCode::ServFail,
                ];
                assert!(due.contains(&m.metadata.response_code), "{:?} to {packet:02x?}", m.metadata.response_code);
            }
        }
    }
    assert!(answered > count / 10, "only {answered} of {count} packets were answered");
    // The peer is still there, and answers.
    let (status, _) = c.call(2, Method::GET, "/health", None).await;
    assert_eq!(status, 200);
    s.send(&query(9, "www.example.com.", false)).unwrap();
    let reply = drain(&s).pop().expect("a valid query is answered after the fuzzing");
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!((m.metadata.id, m.metadata.response_code), (9, ResponseCode::NoError));
}

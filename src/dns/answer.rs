//! The authoritative answer to one query, from a [`Snapshot`]. Pure: bytes in, bytes out.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::snapshot::{Snapshot, ZoneData};

/// TTL of the SOA and NS records, and the negative-caching TTL of RFC 2308.
pub const SOA_TTL: u32 = 60;
/// The SOA's timers for secondaries (RFC 1912's ranges): check the serial hourly, retry
/// a failed check after 10 minutes, keep answering for a day without the primary.
/// Every peer is a primary, so these only matter to a secondary outside the cluster.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86_400;
/// The UDP payload this server advertises and assumes for EDNS clients that ask for less.
pub const DEFAULT_UDP_PAYLOAD: u16 = 1232;
/// Largest UDP payload honoured when a client advertises more.
pub const MAX_UDP_PAYLOAD: u16 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The request's context beyond its bytes.
pub struct Context<'a> {
    pub source: IpAddr,
    pub transport: Transport,
    /// This peer's `--region`, for clients no region lists.
    pub default_region: &'a str,
    /// Answer SERVFAIL for names in our zones (the peer has been cut off for too long).
    pub stale: bool,
}

/// What was answered, for metrics.
pub struct Answered {
    pub bytes: Vec<u8>,
    pub rcode: ResponseCode,
    pub qtype: Option<RecordType>,
}

/// Answers a query; `None` for what must be dropped (responses, garbage without a header).
pub fn respond(snap: &Snapshot, request: &[u8], ctx: &Context) -> Option<Answered> {
    direct(snap, request, ctx).or_else(|| respond_in_full(snap, request, ctx))
}

/// The common case without decoding and encoding whole messages: one A or AAAA question
/// for a managed name (not an alias) that has an address of that family in the client's
/// region, at most a plain OPT record (EDNS 0, no options), over a fresh snapshot. The
/// reply is the one [`respond_in_full`] gives, byte for byte (the tests compare them); for
/// anything else `None`, and the full path answers.
fn direct(snap: &Snapshot, request: &[u8], ctx: &Context) -> Option<Answered> {
    if ctx.stale || request.len() < 12 {
        return None;
    }
    let (flags, counts) = (&request[2..4], &request[4..12]);
    // A query (QR clear) with opcode QUERY; one question, no answers or authorities.
    if flags[0] & 0xf8 != 0 || counts[..6] != [0, 1, 0, 0, 0, 0] || counts[6] != 0 || counts[7] > 1 {
        return None;
    }
    let edns = counts[7] == 1;
    // The question's name, label by label, lowercased into a dotted name. Only labels
    // whose text form needs no escaping (letters, digits, '_', '-' but not first).
    let mut lower = [0u8; 255];
    let mut used = 0;
    let mut at = 12;
    loop {
        let len = *request.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 || used + len + 1 > lower.len() {
            return None;
        }
        let label = request.get(at..at + len)?;
        if label[0] == b'-' || !label.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-') {
            return None;
        }
        if used > 0 {
            lower[used] = b'.';
            used += 1;
        }
        lower[used..used + len].copy_from_slice(label);
        lower[used..used + len].make_ascii_lowercase();
        used += len;
        at += len;
    }
    if used == 0 {
        return None;
    }
    let question_end = at + 4;
    let fixed = request.get(at..question_end)?;
    let qtype = match [fixed[0], fixed[1]] {
        [0, 1] => RecordType::A,
        [0, 28] => RecordType::AAAA,
        _ => return None,
    };
    if fixed[2..4] != [0, 1] {
        return None; // class IN only
    }
    // A plain OPT record (root name, EDNS version 0, no options) and nothing after it.
    let rest = &request[question_end..];
    if edns {
        if rest.len() != 11 || rest[0] != 0 || rest[1..3] != [0, 41] || rest[6] != 0 || rest[9..11] != [0, 0] {
            return None;
        }
    } else if !rest.is_empty() {
        return None;
    }
    let name = std::str::from_utf8(&lower[..used]).ok()?;
    snap.zone_of(name)?;
    let domain = snap.domains.get(name).filter(|d| d.cname.is_none())?;
    let region = snap.region_of(ctx.source).map(|(r, _)| r).or_else(|| snap.region_index(ctx.default_region));
    let ip = snap.answer(domain, region);
    let rdata: &[u8] = match (qtype, &ip) {
        (RecordType::A, Some(IpAddr::V4(v4))) => &v4.octets(),
        (RecordType::AAAA, Some(IpAddr::V6(v6))) => &v6.octets(),
        _ => return None,
    };
    let mut bytes = Vec::with_capacity(question_end + 16 + rdata.len() + 11);
    // Header: the id, QR and AA set, RD copied, NOERROR; one question and one answer.
    bytes.extend_from_slice(&request[..2]);
    bytes.extend_from_slice(&[0x84 | (flags[0] & 0x01), 0, 0, 1, 0, 1, 0, 0, 0, counts[7]]);
    bytes.extend_from_slice(&request[12..question_end]);
    // The answer, its owner a pointer to the question's name at offset 12.
    bytes.extend_from_slice(&[0xc0, 12]);
    bytes.extend_from_slice(&fixed[..4]);
    bytes.extend_from_slice(&domain.ttl.to_be_bytes());
    bytes.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    bytes.extend_from_slice(rdata);
    if edns {
        let payload = DEFAULT_UDP_PAYLOAD.to_be_bytes();
        bytes.extend_from_slice(&[0, 0, 41, payload[0], payload[1], 0, 0, 0, 0, 0, 0]);
    }
    Some(Answered { bytes, rcode: ResponseCode::NoError, qtype: Some(qtype) })
}

/// Answers any query: decodes it, builds the reply as a message and encodes it.
fn respond_in_full(snap: &Snapshot, request: &[u8], ctx: &Context) -> Option<Answered> {
    let req = match Message::from_vec(request) {
        Ok(m) => m,
        // Garbage that claims to be a response is dropped: answering it invites loops.
        Err(_) if request.len() >= 12 && request[2] & 0x80 == 0 => {
            let id = u16::from_be_bytes([request[0], request[1]]);
            let msg = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            return finish(msg, ResponseCode::FormErr, None, ctx, 512);
        }
        Err(_) => return None,
    };
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.queries = req.queries.clone();
    let mut limit = 512u16;
    if let Some(edns) = &req.edns {
        let mut opt = Edns::new();
        opt.set_max_payload(DEFAULT_UDP_PAYLOAD);
        opt.set_version(0);
        limit = edns.max_payload().clamp(512, MAX_UDP_PAYLOAD);
        resp.edns = Some(opt);
        if edns.version() != 0 {
            return finish(resp, ResponseCode::BADVERS, None, ctx, limit);
        }
    }
    if req.metadata.op_code != OpCode::Query {
        return finish(resp, ResponseCode::NotImp, None, ctx, limit);
    }
    if req.queries.len() != 1 {
        return finish(resp, ResponseCode::FormErr, None, ctx, limit);
    }
    let query = &req.queries[0];
    let qtype = query.query_type();
    let qname = query.name().clone();
    let name = qname.to_ascii().trim_end_matches('.').to_ascii_lowercase();
    if query.query_class() != DNSClass::IN {
        return finish(resp, ResponseCode::Refused, Some(qtype), ctx, limit);
    }
    let Some(zone) = snap.zone_of(&name) else {
        return finish(resp, ResponseCode::Refused, Some(qtype), ctx, limit);
    };
    if ctx.stale {
        return finish(resp, ResponseCode::ServFail, Some(qtype), ctx, limit);
    }
    resp.metadata.authoritative = true;

    // The client's region: EDNS Client Subnet, else the source address, else ours.
    let subnet = req.edns.as_ref().and_then(|e| match e.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(s)) => Some(*s),
        _ => None,
    });
    let client = subnet.as_ref().map(|s| s.addr()).unwrap_or(ctx.source);
    let (region, matched) = match snap.region_of(client) {
        Some((r, len)) => (Some(r), len),
        None => (snap.region_index(ctx.default_region), 0),
    };
    if let (Some(s), Some(opt)) = (&subnet, resp.edns.as_mut()) {
        // RFC 7871: echo the option; the scope says how widely the answer applies.
        let scope = matched.min(s.source_prefix());
        opt.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(s.addr(), s.source_prefix(), scope)));
    }

    let apex = name == zone.name;
    let alias = snap.domains.get(name.as_str()).and_then(|d| d.cname.as_ref().map(|t| (d, t)));
    let found = if let Some((domain, target)) = alias {
        // An alias: the CNAME, and the target's address when the target is ours.
        if let Some(target_name) = fqdn(target) {
            resp.answers.push(Record::from_rdata(qname.clone(), domain.ttl, RData::CNAME(CNAME(target_name.clone()))));
            if let Some(t) = snap.domains.get(&**target).filter(|t| t.cname.is_none()) {
                if let Some(rdata) = address(qtype, snap.answer(t, region)) {
                    resp.answers.push(Record::from_rdata(target_name, t.ttl, rdata));
                }
            }
        }
        true
    } else if let Some(domain) = snap.domains.get(name.as_str()) {
        if let Some(rdata) = address(qtype, snap.answer(domain, region)) {
            resp.answers.push(Record::from_rdata(qname.clone(), domain.ttl, rdata));
        }
        true
    } else if let Some((_, glue)) = zone.ns.iter().find(|(n, _)| *n == name) {
        if let Some(rdata) = address(qtype, *glue) {
            resp.answers.push(Record::from_rdata(qname.clone(), SOA_TTL, rdata));
        }
        true
    } else {
        apex || snap.interior.contains(name.as_str())
    };
    if apex && resp.answers.is_empty() {
        match qtype {
            // ANY is answered minimally (RFC 8482): the SOA alone.
            RecordType::SOA | RecordType::ANY => resp.answers.push(soa(zone, snap.serial, qname.clone())),
            RecordType::NS => {
                for (ns, glue) in &zone.ns {
                    let Some(ns_name) = fqdn(ns) else { continue };
                    resp.answers.push(Record::from_rdata(qname.clone(), SOA_TTL, RData::NS(NS(ns_name.clone()))));
                    match glue {
                        Some(IpAddr::V4(v4)) => {
                            resp.additionals.push(Record::from_rdata(ns_name, SOA_TTL, RData::A(A(*v4))))
                        }
                        Some(IpAddr::V6(v6)) => {
                            resp.additionals.push(Record::from_rdata(ns_name, SOA_TTL, RData::AAAA(AAAA(*v6))))
                        }
                        None => {}
                    }
                }
            }
            _ => {}
        }
    }
    let rcode = if found { ResponseCode::NoError } else { ResponseCode::NXDomain };
    if resp.answers.is_empty() {
        // NODATA or NXDOMAIN: the SOA in the authority section tells resolvers how long
        // to cache the absence (RFC 2308).
        let zone_name = fqdn(&zone.name).unwrap_or_else(Name::root);
        resp.authorities.push(soa(zone, snap.serial, zone_name));
    }
    finish(resp, rcode, Some(qtype), ctx, limit)
}

/// The address record a query of `qtype` gets for `ip`: A for IPv4, AAAA for IPv6, either
/// for ANY; nothing when the family does not match.
fn address(qtype: RecordType, ip: Option<IpAddr>) -> Option<RData> {
    match (qtype, ip) {
        (RecordType::A | RecordType::ANY, Some(IpAddr::V4(v4))) => Some(RData::A(A(v4))),
        (RecordType::AAAA | RecordType::ANY, Some(IpAddr::V6(v6))) => Some(RData::AAAA(AAAA(v6))),
        _ => None,
    }
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{name}.")).ok()
}

fn soa(zone: &ZoneData, serial: u64, owner: Name) -> Record {
    let mname = zone.ns.first().and_then(|(n, _)| fqdn(n)).or_else(|| fqdn(&format!("ns1.{}", zone.name)));
    let rname = fqdn(&zone.hostmaster.replacen('@', ".", 1)).unwrap_or_else(Name::root);
    let data =
        SOA::new(mname.unwrap_or_else(Name::root), rname, serial as u32, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, SOA_TTL);
    Record::from_rdata(owner, SOA_TTL, RData::SOA(data))
}

fn finish(
    mut resp: Message,
    rcode: ResponseCode,
    qtype: Option<RecordType>,
    ctx: &Context,
    limit: u16,
) -> Option<Answered> {
    resp.metadata.response_code = rcode;
    let mut bytes = resp.to_vec().ok()?;
    if ctx.transport == Transport::Udp && bytes.len() > limit as usize {
        // Too large for this client over UDP: say so, and let it ask over TCP.
        resp.answers.clear();
        resp.authorities.clear();
        resp.additionals.clear();
        resp.metadata.truncation = true;
        bytes = resp.to_vec().ok()?;
    }
    Some(Answered { bytes, rcode, qtype })
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, Query};

    use super::*;
    use crate::dns::snapshot::{Snapshot, ZoneData};

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        s.serial = 77;
        s.zones.insert(
            "example.com".into(),
            ZoneData {
                name: "example.com".into(),
                ns: vec![("ns1.example.com".into(), Some("192.0.2.53".parse().unwrap()))],
                hostmaster: "ops.example.com".into(),
            },
        );
        s.add_domain("video.example.com", 20, None, &[("sea", Some("192.0.2.1".parse().unwrap())), ("eu", None)]);
        s.add_domain("www.example.com", 300, Some("video.example.com"), &[]);
        s.networks(&[("10.20.0.0/16", "sea")]);
        s
    }

    /// A UDP client in region sea, at a peer whose own region is eu.
    fn context(stale: bool) -> Context<'static> {
        Context { source: "10.20.3.4".parse().unwrap(), transport: Transport::Udp, default_region: "eu", stale }
    }

    fn video_query() -> Message {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii("video.example.com.").unwrap(), RecordType::A));
        q
    }

    fn ask(name: &str, qtype: RecordType, source: &str) -> Message {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        let ctx =
            Context { source: source.parse().unwrap(), transport: Transport::Udp, default_region: "eu", stale: false };
        let a = respond(&snapshot(), &q.to_vec().unwrap(), &ctx).expect("an answer");
        Message::from_vec(&a.bytes).unwrap()
    }

    #[test]
    fn regions_by_source_address_and_the_default() {
        let m = ask("video.example.com.", RecordType::A, "10.20.3.4");
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 20);
        // Not in any network: this peer's region (eu), where the domain has no answer.
        let m = ask("video.example.com.", RecordType::A, "203.0.113.9");
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn an_alias_answers_its_cname_and_the_target_when_ours() {
        let m = ask("WWW.example.com.", RecordType::A, "10.20.3.4");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 2);
        let RData::CNAME(target) = &m.answers[0].data else { panic!("CNAME first") };
        assert_eq!(target.0.to_ascii(), "video.example.com.");
        assert_eq!((m.answers[0].ttl, m.answers[1].ttl), (300, 20));
        assert_eq!(m.answers[0].name.to_ascii(), "WWW.example.com.", "case preserved");
        let m = ask("www.example.com.", RecordType::MX, "10.20.3.4");
        assert_eq!(m.answers.len(), 1, "the CNAME alone for other types");
    }

    #[test]
    fn negative_answers_and_refusals() {
        let m = ask("nope.example.com.", RecordType::A, "10.20.3.4");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let RData::SOA(soa) = &m.authorities[0].data else { panic!("SOA in authority") };
        assert_eq!(soa.serial, 77, "the serial is the applied index");
        let m = ask("example.org.", RecordType::A, "10.20.3.4");
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(!m.metadata.authoritative);
        let m = ask("ns1.example.com.", RecordType::A, "10.20.3.4");
        assert_eq!(m.answers.len(), 1, "glue for an in-zone name server");
    }

    #[test]
    fn other_opcodes_are_not_implemented_and_edns_is_answered_with_edns() {
        let ctx = context(false);
        let mut q = Message::query();
        q.metadata.op_code = OpCode::Status;
        q.add_query(Query::query(Name::from_ascii("video.example.com.").unwrap(), RecordType::A));
        assert_eq!(respond(&snapshot(), &q.to_vec().unwrap(), &ctx).unwrap().rcode, ResponseCode::NotImp);
        let mut q = video_query();
        q.edns = Some(Edns::new());
        let m = Message::from_vec(&respond(&snapshot(), &q.to_vec().unwrap(), &ctx).unwrap().bytes).unwrap();
        let opt = m.edns.expect("OPT answered with OPT");
        assert_eq!((opt.version(), opt.max_payload()), (0, DEFAULT_UDP_PAYLOAD));
        // A response sent to us is never answered.
        let mut r = Message::query();
        r.metadata.message_type = MessageType::Response;
        assert!(respond(&snapshot(), &r.to_vec().unwrap(), &ctx).is_none());
    }

    #[test]
    fn too_large_for_udp_sets_tc_and_tcp_carries_it_whole() {
        let mut snap = snapshot();
        let long = |i: usize| format!("{}.{}.{}.example.com", "a".repeat(60), "b".repeat(60), format_args!("ns{i}"));
        snap.zones.get_mut("example.com").unwrap().ns = (0..8).map(|i| (long(i), None)).collect();
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii("example.com.").unwrap(), RecordType::NS));
        let bytes = q.to_vec().unwrap();
        let udp = context(false);
        let m = Message::from_vec(&respond(&snap, &bytes, &udp).unwrap().bytes).unwrap();
        assert!(m.metadata.truncation && m.answers.is_empty(), "over 512 bytes without EDNS");
        let tcp = Context { transport: Transport::Tcp, ..udp };
        let m = Message::from_vec(&respond(&snap, &bytes, &tcp).unwrap().bytes).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 8);
    }

    #[test]
    fn stale_peers_answer_servfail_inside_their_zones_only() {
        let q = video_query();
        let ctx = context(true);
        let a = respond(&snapshot(), &q.to_vec().unwrap(), &ctx).unwrap();
        assert_eq!(a.rcode, ResponseCode::ServFail);
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii("example.org.").unwrap(), RecordType::A));
        assert_eq!(respond(&snapshot(), &q.to_vec().unwrap(), &ctx).unwrap().rcode, ResponseCode::Refused);
    }

    /// The cost of one answer in the benchmark's shape (10,000 domains, 10 regions, a
    /// type A query without EDNS). Not a check: `cargo test --lib answer_cost -- --ignored
    /// --nocapture`, or under `valgrind --tool=callgrind` for instruction counts.
    #[test]
    #[ignore]
    fn answer_cost() {
        let mut snap = snapshot();
        let regions: Vec<String> = (0..10).map(|r| format!("r{r}")).collect();
        for i in 0..10_000u32 {
            let ip = Some(IpAddr::from([198, 18, 0, (i % 4) as u8 + 1]));
            let answers: Vec<(&str, Option<IpAddr>)> = regions.iter().map(|r| (r.as_str(), ip)).collect();
            snap.add_domain(&format!("d{i:06}.example.com"), 300, None, &answers);
        }
        let networks: Vec<(String, String)> = (0..10).map(|r| (format!("10.{r}.0.0/16"), format!("r{r}"))).collect();
        snap.networks(&networks.iter().map(|(n, r)| (n.as_str(), r.as_str())).collect::<Vec<_>>());
        let queries: Vec<Vec<u8>> = (0..1000)
            .map(|i| {
                let mut q = Message::query();
                q.metadata.id = i as u16;
                q.add_query(Query::query(
                    Name::from_ascii(format!("d{:06}.example.com.", i * 7)).unwrap(),
                    RecordType::A,
                ));
                q.to_vec().unwrap()
            })
            .collect();
        let ctx = Context { source: "10.0.0.1".parse().unwrap(), ..context(false) };
        let rounds = 100;
        let started = std::time::Instant::now();
        let mut bytes = 0;
        for _ in 0..rounds {
            for q in &queries {
                bytes += respond(&snap, q, &ctx).unwrap().bytes.len();
            }
        }
        let n = rounds * queries.len();
        println!("{:.0} ns per answer ({n} answers, {bytes} bytes)", started.elapsed().as_nanos() as f64 / n as f64);
    }

    /// The direct path answers the common queries, with the same bytes as the full path.
    #[test]
    fn the_direct_path_answers_as_the_full_path_does() {
        let mut snap = snapshot();
        let answers =
            [("sea", Some("192.0.2.1".parse().unwrap())), ("eu", None), ("v6", Some("2001:db8::7".parse().unwrap()))];
        for name in ["video.example.com", "_srv-x.example.com", "xn--caf-dma.example.com"] {
            snap.add_domain(name, 20, None, &answers);
        }
        snap.networks(&[("10.20.0.0/16", "sea"), ("2001:db8::/32", "v6")]);
        let mut direct_answers = 0;
        let odd = |first: &[u8]| Name::from_labels([first, b"example", b"com"]).unwrap();
        let names = ["video.example.com.", "ViDeO.Example.COM.", "_srv-x.example.com.", "xn--caf-dma.example.com."]
            .into_iter()
            .chain(["www.example.com.", "example.com.", "nope.example.com.", "video.example.org.", "ns1.example.com."])
            .map(|n| Name::from_ascii(n).unwrap())
            .chain([odd(b"-x"), odd(b"a.b"), odd(b"caf\xc3\xa9"), odd(b"x y")]);
        for name in names {
            for qtype in [RecordType::A, RecordType::AAAA, RecordType::MX, RecordType::ANY] {
                for edns in [None, Some(Edns::new())] {
                    for source in ["10.20.3.4", "203.0.113.9", "2001:db8::1"] {
                        for rd in [false, true] {
                            let mut q = Message::query();
                            q.metadata.id = 4242;
                            q.metadata.recursion_desired = rd;
                            q.add_query(Query::query(name.clone(), qtype));
                            q.edns = edns.clone();
                            let bytes = q.to_vec().unwrap();
                            let ctx = Context { source: source.parse().unwrap(), ..context(false) };
                            let full = respond_in_full(&snap, &bytes, &ctx).unwrap();
                            if let Some(a) = direct(&snap, &bytes, &ctx) {
                                direct_answers += 1;
                                assert_eq!(a.bytes, full.bytes, "{name} {qtype} {source} edns {}", edns.is_some());
                                assert_eq!((a.rcode, a.qtype), (full.rcode, full.qtype));
                            }
                        }
                    }
                }
            }
        }
        // video (two spellings), _srv-x and xn--caf-dma: A from sea, AAAA from v6; EDNS or
        // not; RD or not.
        assert_eq!(direct_answers, 4 * 2 * 2 * 2);
        let stale = context(true);
        assert!(direct(&snap, &video_query().to_vec().unwrap(), &stale).is_none());
    }

    /// Random bytes, and random corruptions of a valid query, never panic the responder;
    /// what it answers is well-formed.
    #[test]
    fn garbage_never_panics() {
        let snap = snapshot();
        let ctx = context(false);
        let q = video_query();
        let valid = q.to_vec().unwrap();
        let mut seed: u64 = 0x5eed_cafe;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut direct_answers = 0;
        for round in 0..20_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 96) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut b = valid.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % b.len();
                    b[i] = next() as u8;
                }
                b
            };
            if let Some(a) = respond(&snap, &bytes, &ctx) {
                assert!(a.bytes.len() >= 12, "round {round}: a reply has a header");
            }
            if let Some(a) = direct(&snap, &bytes, &ctx) {
                direct_answers += 1;
                let full = respond_in_full(&snap, &bytes, &ctx).expect("the full path answers too");
                assert_eq!((a.bytes, a.rcode, a.qtype), (full.bytes, full.rcode, full.qtype), "round {round}");
            }
        }
        assert!(direct_answers > 100, "{direct_answers}: corruptions of the id or flags are still answered directly");
    }
}

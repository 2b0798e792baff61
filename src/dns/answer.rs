//! The authoritative answer to one query, from a [`Snapshot`]. Pure: bytes in, bytes out.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::snapshot::{Snapshot, ZoneData};

/// TTL of the SOA and NS records, and the negative-caching TTL of RFC 2308.
pub const SOA_TTL: u32 = 60;
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
        Some((r, len)) => (r, len),
        None => (ctx.default_region, 0),
    };
    if let (Some(s), Some(opt)) = (&subnet, resp.edns.as_mut()) {
        // RFC 7871: echo the option; the scope says how widely the answer applies.
        let scope = matched.min(s.source_prefix());
        opt.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(s.addr(), s.source_prefix(), scope)));
    }

    let apex = name == zone.name;
    let alias = snap.domains.get(&name).and_then(|d| d.cname.as_ref().map(|t| (d, t)));
    let found = if let Some((domain, target)) = alias {
        // An alias: the CNAME, and the target's address when the target is ours.
        if let Some(target_name) = fqdn(target) {
            resp.answers.push(Record::from_rdata(qname.clone(), domain.ttl, RData::CNAME(CNAME(target_name.clone()))));
            if let Some(t) = snap.domains.get(target.as_str()).filter(|t| t.cname.is_none()) {
                if let Some(rdata) = address(qtype, t.answers.get(region).copied().flatten()) {
                    resp.answers.push(Record::from_rdata(target_name, t.ttl, rdata));
                }
            }
        }
        true
    } else if let Some(domain) = snap.domains.get(&name) {
        if let Some(rdata) = address(qtype, domain.answers.get(region).copied().flatten()) {
            resp.answers.push(Record::from_rdata(qname.clone(), domain.ttl, rdata));
        }
        true
    } else if let Some((_, glue)) = zone.ns.iter().find(|(n, _)| *n == name) {
        if let Some(rdata) = address(qtype, *glue) {
            resp.answers.push(Record::from_rdata(qname.clone(), SOA_TTL, rdata));
        }
        true
    } else {
        apex || snap.interior.contains(&name)
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
    let data = SOA::new(mname.unwrap_or_else(Name::root), rname, serial as u32, 3600, 600, 86_400, SOA_TTL);
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
    use std::collections::HashMap;

    use hickory_proto::op::{Message, Query};

    use super::*;
    use crate::dns::snapshot::{DomainData, Snapshot, ZoneData};

    fn snapshot() -> Snapshot {
        let mut s = Snapshot { serial: 77, ..Snapshot::default() };
        s.zones.insert(
            "example.com".into(),
            ZoneData {
                name: "example.com".into(),
                ns: vec![("ns1.example.com".into(), Some("192.0.2.53".parse().unwrap()))],
                hostmaster: "ops.example.com".into(),
            },
        );
        let answers =
            HashMap::from([("sea".to_string(), Some("192.0.2.1".parse().unwrap())), ("eu".to_string(), None)]);
        s.domains.insert("video.example.com".into(), DomainData { ttl: 20, answers, cname: None });
        s.domains.insert(
            "www.example.com".into(),
            DomainData { ttl: 300, answers: HashMap::new(), cname: Some("video.example.com".into()) },
        );
        s.networks = vec![("10.20.0.0/16".parse().unwrap(), "sea".into())];
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
        }
    }
}

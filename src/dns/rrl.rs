//! Response-rate limiting for DNS over UDP, as NSD, BIND and Knot do it.
//!
//! UDP sources can be forged, so an open authoritative server can be made to send its
//! answers to a victim. Each client prefix (/24 for IPv4, /56 for IPv6 by default) may get
//! `rate` responses per second (a token bucket that holds one second's worth). Past it,
//! every `slip`-th response is sent truncated (TC=1, no records: a real resolver retries
//! over TCP, which cannot be forged) and the others are dropped. `rate = 0` turns it off;
//! `slip = 0` drops them all. Exempt networks (by default the loopback addresses a local
//! resolver asks from) are never limited.
//!
//! The table lives in the UDP thread alone, so it takes no lock. It is bounded: past
//! [`MAX_PREFIXES`] entries the ones that are full again are forgotten, and if that is not
//! enough, all of them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;

use crate::config::DnsConfig;

/// Most client prefixes tracked at once.
pub const MAX_PREFIXES: usize = 100_000;

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send a truncated response instead (TC=1, question only).
    Slip,
    Drop,
}

#[derive(Debug, Clone)]
pub struct RrlConfig {
    pub rate: u32,
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub exempt: Vec<IpNet>,
}

impl RrlConfig {
    pub fn from_config(c: &DnsConfig) -> Self {
        Self {
            rate: c.rrl_rate,
            slip: c.rrl_slip,
            ipv4_prefix: c.rrl_ipv4_prefix,
            ipv6_prefix: c.rrl_ipv6_prefix,
            exempt: c.rrl_exempt.clone(),
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Responses limited so far, for the slip count.
    limited: u64,
}

pub struct Limiter {
    config: RrlConfig,
    buckets: HashMap<IpNet, Bucket>,
}

impl Limiter {
    pub fn new(config: RrlConfig) -> Self {
        Self { config, buckets: HashMap::new() }
    }

    /// The client prefix a source counts against.
    fn prefix(&self, source: IpAddr) -> IpNet {
        let len = if source.is_ipv4() { self.config.ipv4_prefix } else { self.config.ipv6_prefix };
        IpNet::new(source, len).map(|n| n.trunc()).unwrap_or_else(|_| IpNet::from(source))
    }

    /// Whether a response to `source` may go out now.
    pub fn check(&mut self, source: IpAddr, now: Instant) -> Verdict {
        let rate = self.config.rate;
        if rate == 0 || self.config.exempt.iter().any(|n| n.contains(&source)) {
            return Verdict::Send;
        }
        let prefix = self.prefix(source);
        if self.buckets.len() >= MAX_PREFIXES && !self.buckets.contains_key(&prefix) {
            self.forget_full(now);
        }
        let rate = f64::from(rate);
        let bucket = self.buckets.entry(prefix).or_insert(Bucket { tokens: rate, at: now, limited: 0 });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Send;
        }
        bucket.limited = bucket.limited.wrapping_add(1);
        let slip = u64::from(self.config.slip);
        if slip > 0 && bucket.limited.is_multiple_of(slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// Forgets the prefixes whose buckets would be full by now; all of them if that
    /// frees nothing.
    fn forget_full(&mut self, now: Instant) {
        let rate = f64::from(self.config.rate);
        self.buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < rate);
        if self.buckets.len() >= MAX_PREFIXES {
            self.buckets.clear();
        }
    }
}

/// A truncated response to `request`: its header with QR and TC set, its question, no
/// records. `None` when the request has no parsable question (it is then dropped).
pub fn truncated(request: &[u8]) -> Option<Vec<u8>> {
    let header = request.get(..12)?;
    if header[2] & 0x80 != 0 || u16::from_be_bytes([header[4], header[5]]) != 1 {
        return None;
    }
    // The question: a name of labels (no compression in a question), then type and class.
    let mut at = 12;
    loop {
        let len = *request.get(at)? as usize;
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = request.get(12..at + 4)?;
    let mut out = Vec::with_capacity(12 + question.len());
    out.extend_from_slice(&header[..2]);
    // QR, the request's opcode and RD, TC; RA off; RCODE 0.
    out.push(0x80 | (header[2] & 0x79) | 0x02);
    out.push(0);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(question);
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limiter(rate: u32, slip: u32) -> Limiter {
        Limiter::new(RrlConfig {
            rate,
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: vec!["127.0.0.1/32".parse().unwrap()],
        })
    }

    #[test]
    fn a_prefix_gets_its_rate_then_every_slipth_response_truncated() {
        let mut l = limiter(10, 2);
        let t = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let neighbour: IpAddr = "192.0.2.200".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(l.check(a, t), Verdict::Send);
        }
        // The same /24 shares the budget; another prefix has its own.
        assert_eq!(l.check(neighbour, t), Verdict::Drop);
        assert_eq!(l.check(a, t), Verdict::Slip);
        assert_eq!(l.check(a, t), Verdict::Drop);
        assert_eq!(l.check(other, t), Verdict::Send);
        // A tenth of a second refills one response's worth.
        assert_eq!(l.check(a, t + Duration::from_millis(100)), Verdict::Send);
        assert_ne!(l.check(a, t + Duration::from_millis(100)), Verdict::Send);
    }

    #[test]
    fn exempt_sources_and_a_zero_rate_are_never_limited() {
        let mut l = limiter(1, 1);
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(l.check("127.0.0.1".parse().unwrap(), t), Verdict::Send);
        }
        let mut off = limiter(0, 1);
        for _ in 0..100 {
            assert_eq!(off.check("192.0.2.1".parse().unwrap(), t), Verdict::Send);
        }
    }

    #[test]
    fn ipv6_clients_count_by_their_56() {
        let mut l = limiter(1, 0);
        let t = Instant::now();
        assert_eq!(l.check("2001:db8:0:100::1".parse().unwrap(), t), Verdict::Send);
        assert_eq!(l.check("2001:db8:0:1ff::2".parse().unwrap(), t), Verdict::Drop);
        assert_eq!(l.check("2001:db8:0:200::1".parse().unwrap(), t), Verdict::Send);
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut l = limiter(5, 1);
        let t = Instant::now();
        for i in 0..(MAX_PREFIXES as u32 + 10) {
            l.check(IpAddr::from((i << 8).to_be_bytes()), t);
        }
        assert!(l.buckets.len() <= MAX_PREFIXES);
    }

    #[test]
    fn a_truncated_response_keeps_id_and_question() {
        // id 0x1234, RD, one question: a.example. A IN
        let q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x01a\x07example\x00\x00\x01\x00\x01\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";
        let r = truncated(q).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2], 0x80 | 0x01 | 0x02, "QR, RD kept, TC");
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&r[12..], &q[12..12 + 15]);
        assert!(truncated(&q[..14]).is_none());
        assert!(truncated(b"\x00").is_none());
    }
}

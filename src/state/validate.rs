//! Input rules shared by every entry point. Each limit is a named constant, documented in
//! docs/api.md and tested.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Error, NodeSpec, RegionSpec};

/// Longest name of a region, node or site: one DNS label.
pub const MAX_LABEL_LEN: usize = 63;
/// Most client networks one region may list.
pub const MAX_CIDRS: usize = 1024;
/// Most regions in one fallback list.
pub const MAX_FALLBACK: usize = 16;
/// Largest capacity a node may declare (an abstract weight, e.g. Gbit/s or slots).
pub const MAX_CAPACITY: u32 = 1_000_000;

/// A name used as an identifier: a lowercase DNS label, so it can appear in DNS names,
/// URLs and metrics labels unchanged.
pub fn label(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(Error::invalid(field, format!("is {} characters long; the limit is {MAX_LABEL_LEN}", value.len())));
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(Error::invalid(field, format!("'{value}' contains '{c}'; use lowercase letters, digits and '-'")));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(Error::invalid(field, format!("'{value}' must not start or end with '-'")));
    }
    Ok(())
}

pub fn ip(field: &str, value: &str) -> Result<IpAddr, Error> {
    value.parse().map_err(|_| Error::invalid(field, format!("'{value}' is not an IPv4 or IPv6 address")))
}

pub fn cidr(field: &str, value: &str) -> Result<IpNet, Error> {
    let net: IpNet = value
        .parse()
        .map_err(|_| Error::invalid(field, format!("'{value}' is not a network in CIDR form (e.g. 10.20.0.0/16)")))?;
    if net.trunc() != net {
        return Err(Error::invalid(field, format!("'{value}' has host bits set; did you mean {}?", net.trunc())));
    }
    Ok(net)
}

pub fn region_spec(name: &str, spec: &RegionSpec) -> Result<(), Error> {
    label("name", name)?;
    if spec.cidrs.len() > MAX_CIDRS {
        return Err(Error::invalid("cidrs", format!("lists {} networks; the limit is {MAX_CIDRS}", spec.cidrs.len())));
    }
    if spec.fallback.len() > MAX_FALLBACK {
        return Err(Error::invalid(
            "fallback",
            format!("lists {} regions; the limit is {MAX_FALLBACK}", spec.fallback.len()),
        ));
    }
    for (i, f) in spec.fallback.iter().enumerate() {
        label(&format!("fallback[{i}]"), f)?;
        if f == name {
            return Err(Error::invalid(format!("fallback[{i}]"), "a region cannot fall back to itself"));
        }
        if spec.fallback[..i].contains(f) {
            return Err(Error::invalid(format!("fallback[{i}]"), format!("'{f}' is listed twice")));
        }
    }
    Ok(())
}

pub fn node_spec(id: &str, spec: &NodeSpec) -> Result<(), Error> {
    label("id", id)?;
    label("region", &spec.region)?;
    label("site", &spec.site)?;
    if spec.capacity == 0 || spec.capacity > MAX_CAPACITY {
        return Err(Error::invalid("capacity", format!("must be between 1 and {MAX_CAPACITY}")));
    }
    if spec.ip.is_unspecified() || spec.ip.is_multicast() {
        return Err(Error::invalid("ip", format!("{} cannot serve clients", spec.ip)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(label("id", "n-1").is_ok());
        assert!(label("id", &"a".repeat(63)).is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "ä"] {
            assert!(label("id", bad).is_err(), "{bad}");
        }
        let Err(Error::Invalid { field, message }) = label("site", &"a".repeat(64)) else { panic!() };
        assert_eq!(field, "site");
        assert!(message.contains("limit is 63"));
    }

    #[test]
    fn addresses() {
        assert!(ip("ip", "2001:db8::1").is_ok());
        assert!(ip("ip", "300.1.1.1").is_err());
        assert!(cidr("cidrs[0]", "10.20.0.0/16").is_ok());
        assert!(cidr("cidrs[0]", "10.20.0.1/16").unwrap_err().to_string().contains("10.20.0.0/16"));
        assert!(cidr("cidrs[0]", "10.20.0.0").is_err());
    }

    #[test]
    fn specs() {
        let spec = |fallback: &[&str]| RegionSpec {
            cidrs: vec![],
            fallback: fallback.iter().map(|s| s.to_string()).collect(),
        };
        assert!(region_spec("sea", &spec(&["eu", "us"])).is_ok());
        assert!(region_spec("sea", &spec(&["sea"])).is_err());
        assert!(region_spec("sea", &spec(&["eu", "eu"])).is_err());
        let node = |capacity, ip: &str| NodeSpec {
            ip: ip.parse().unwrap(),
            region: "sea".into(),
            site: "sg-1".into(),
            capacity,
        };
        assert!(node_spec("n1", &node(100, "192.0.2.1")).is_ok());
        assert!(node_spec("n1", &node(0, "192.0.2.1")).is_err());
        assert!(node_spec("n1", &node(MAX_CAPACITY + 1, "192.0.2.1")).is_err());
        assert!(node_spec("n1", &node(1, "0.0.0.0")).is_err());
    }
}

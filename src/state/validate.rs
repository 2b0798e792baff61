//! Input rules shared by every entry point. Each limit is a named constant, documented in
//! docs/api.md and tested.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::actions::{ActionPolicy, ActionSpec, AnomalyReport};
use super::objects::{ObjectWrite, Resolution};
use super::{Command, Error, NodeSpec, RegionSpec, RowChange};

/// Longest name of a region, node or site: one DNS label.
pub const MAX_LABEL_LEN: usize = 63;
/// Most client networks one region may list.
pub const MAX_CIDRS: usize = 1024;
/// Most regions in one fallback list.
pub const MAX_FALLBACK: usize = 16;
/// Largest capacity a node may declare (an abstract weight, e.g. Gbit/s or slots).
pub const MAX_CAPACITY: u32 = 1_000_000;
/// Longest domain name, as DNS allows (RFC 1035), without the final dot.
pub const MAX_NAME_LEN: usize = 253;
/// Most sites one domain may list.
pub const MAX_SITES: usize = 64;
/// Most name servers one zone may list.
pub const MAX_NS: usize = 8;
/// TTL range of a domain's answers, in seconds; the default is [`DEFAULT_TTL`].
pub const MAX_TTL: u32 = 86_400;
pub const DEFAULT_TTL: u32 = 20;
/// Range of `down_after_ms`.
pub const MIN_DOWN_AFTER_MS: u64 = 100;
pub const MAX_DOWN_AFTER_MS: u64 = 600_000;
/// Largest weight of one metric in the scoring policy.
pub const MAX_WEIGHT: f64 = 1000.0;
/// Longest maintenance reason.
pub const MAX_REASON_LEN: usize = 256;

/// A domain name: labels of letters, digits and '-', lowercase, no final dot. Callers
/// lowercase and strip the final dot of what users type first ([`normalize_name`]).
pub fn name(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(Error::invalid(field, format!("is {} characters long; the limit is {MAX_NAME_LEN}", value.len())));
    }
    for part in value.split('.') {
        label(field, part).map_err(|e| match e {
            Error::Invalid { message, .. } => Error::invalid(field, format!("'{value}': label {message}")),
            other => other,
        })?;
    }
    Ok(())
}

/// DNS names are case-insensitive: switchboard stores them lowercase, without the final dot.
pub fn normalize_name(value: &str) -> String {
    value.trim_end_matches('.').to_ascii_lowercase()
}

pub fn ttl(field: &str, value: u64) -> Result<u32, Error> {
    if value == 0 || value > MAX_TTL as u64 {
        return Err(Error::invalid(field, format!("must be between 1 and {MAX_TTL} seconds")));
    }
    Ok(value as u32)
}

pub fn zone_spec(zone: &str, spec: &super::ZoneSpec) -> Result<(), Error> {
    name("name", zone)?;
    if spec.ns.len() > MAX_NS {
        return Err(Error::invalid("ns", format!("lists {} name servers; the limit is {MAX_NS}", spec.ns.len())));
    }
    for (i, ns) in spec.ns.iter().enumerate() {
        name(&format!("ns[{i}]"), ns)?;
    }
    name("hostmaster", &spec.hostmaster.replacen('@', ".", 1))
}

pub fn domain_spec(domain: &str, spec: &super::DomainSpec) -> Result<(), Error> {
    name("name", domain)?;
    if let Some(target) = &spec.cname {
        name("cname", target)?;
        if target == domain {
            return Err(Error::invalid("cname", "a domain cannot be an alias of itself"));
        }
        if !spec.sites.is_empty() {
            return Err(Error::invalid("sites", "an alias (cname) has no sites; give one or the other"));
        }
        return Ok(());
    }
    if spec.sites.is_empty() {
        return Err(Error::invalid("sites", "list at least one site, or a cname"));
    }
    if spec.sites.len() > MAX_SITES {
        return Err(Error::invalid("sites", format!("lists {} sites; the limit is {MAX_SITES}", spec.sites.len())));
    }
    for (i, site) in spec.sites.iter().enumerate() {
        label(&format!("sites[{i}]"), site)?;
        if spec.sites[..i].contains(site) {
            return Err(Error::invalid(format!("sites[{i}]"), format!("'{site}' is listed twice")));
        }
    }
    Ok(())
}

pub fn policy(weights: &super::Weights, hysteresis: f64, down_after_ms: u64) -> Result<(), Error> {
    let all = [
        ("latency", weights.latency),
        ("load", weights.load),
        ("error_rate", weights.error_rate),
        ("cpu", weights.cpu),
    ];
    for (field, w) in all {
        if !(0.0..=MAX_WEIGHT).contains(&w) {
            return Err(Error::invalid(field, format!("must be between 0 and {MAX_WEIGHT}")));
        }
    }
    if all.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
        return Err(Error::invalid("latency", "at least one weight must be above 0"));
    }
    if !(0.0..1.0).contains(&hysteresis) {
        return Err(Error::invalid(
            "hysteresis",
            "must be at least 0 and below 1 (0.1: a challenger must cost 10% less)",
        ));
    }
    if !(MIN_DOWN_AFTER_MS..=MAX_DOWN_AFTER_MS).contains(&down_after_ms) {
        return Err(Error::invalid(
            "down_after_ms",
            format!("must be between {MIN_DOWN_AFTER_MS} and {MAX_DOWN_AFTER_MS}"),
        ));
    }
    Ok(())
}

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

// ---- objects ----

/// Longest object id (and placement hash).
pub const MAX_OBJECT_ID_LEN: usize = 256;
/// Most regions one vector clock may name.
pub const MAX_CLOCK_ENTRIES: usize = 64;
/// Most attributes one object version may carry.
pub const MAX_ATTRS: usize = 64;
/// Longest attribute name.
pub const MAX_ATTR_NAME_LEN: usize = 64;
/// Longest attribute value, as JSON text.
pub const MAX_ATTR_VALUE_LEN: usize = 1024;
/// Longest content hash.
pub const MAX_HASH_LEN: usize = 128;
/// Most node replicas an object may want (also the largest `rf` of a placement).
pub const MAX_REPLICAS: u32 = 16;
/// Most ids in one batch get, ack, or pull.
pub const MAX_BATCH: usize = 1000;
/// Longest long poll, in seconds.
pub const MAX_WAIT_S: u64 = 60;
/// Range of `sync.batch_size`, `sync.lazy_interval_ms` and `sync.max_pending`.
pub const MAX_SYNC_BATCH: u32 = 10_000;
pub const MIN_LAZY_INTERVAL_MS: u64 = 100;
pub const MAX_LAZY_INTERVAL_MS: u64 = 3_600_000;
pub const MAX_PENDING_LIMIT: u32 = 10_000_000;

/// An object id or content hash: letters, digits and `.`, `_`, `-`, `:`; at most
/// [`MAX_OBJECT_ID_LEN`] characters, so it fits a URL path segment unescaped.
pub fn object_id(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_OBJECT_ID_LEN {
        return Err(Error::invalid(
            field,
            format!("is {} characters long; the limit is {MAX_OBJECT_ID_LEN}", value.len()),
        ));
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))) {
        return Err(Error::invalid(field, format!("contains '{c}'; use letters, digits and '.', '_', '-', ':'")));
    }
    Ok(())
}

/// A write's clock: region labels with counters; zero counters are dropped. The writing
/// region must count its own write.
pub fn clock(region: &str, clock: &mut super::clock::VClock) -> Result<(), Error> {
    clock.0.retain(|_, n| *n > 0);
    if clock.0.len() > MAX_CLOCK_ENTRIES {
        return Err(Error::invalid(
            "clock",
            format!("names {} regions; the limit is {MAX_CLOCK_ENTRIES}", clock.0.len()),
        ));
    }
    for r in clock.0.keys() {
        label(&format!("clock.{r}"), r)?;
    }
    if clock.get(region) == 0 {
        return Err(Error::invalid(
            format!("clock.{region}"),
            "must be at least 1: the writing region counts its own writes in the clock",
        ));
    }
    Ok(())
}

/// A content hash: hex, base64 or `algo:digest`; at most [`MAX_HASH_LEN`] characters.
pub fn hash(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.len() > MAX_HASH_LEN {
        return Err(Error::invalid(field, format!("must be 1 to {MAX_HASH_LEN} characters")));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '+' | '/' | '=' | '.');
    if let Some(c) = value.chars().find(|c| !allowed(*c)) {
        return Err(Error::invalid(field, format!("contains '{c}'; use letters, digits and : - _ + / = .")));
    }
    Ok(())
}

pub fn object_write(id: &str, w: &ObjectWrite) -> Result<(), Error> {
    object_id("id", id)?;
    label("region", &w.region)?;
    hash("hash", &w.hash)?;
    if w.attrs.len() > MAX_ATTRS {
        return Err(Error::invalid("attrs", format!("has {} attributes; the limit is {MAX_ATTRS}", w.attrs.len())));
    }
    for (k, v) in &w.attrs {
        if k.is_empty() || k.len() > MAX_ATTR_NAME_LEN {
            return Err(Error::invalid(format!("attrs.{k}"), format!("names are 1 to {MAX_ATTR_NAME_LEN} characters")));
        }
        if v.len() > MAX_ATTR_VALUE_LEN {
            return Err(Error::invalid(
                format!("attrs.{k}"),
                format!("is {} bytes as JSON; the limit is {MAX_ATTR_VALUE_LEN}", v.len()),
            ));
        }
    }
    replicas("replicas", w.replicas)?;
    Ok(())
}

pub fn replicas(field: &str, value: Option<u32>) -> Result<(), Error> {
    match value {
        Some(r) if r == 0 || r > MAX_REPLICAS => {
            Err(Error::invalid(field, format!("must be between 1 and {MAX_REPLICAS}")))
        }
        _ => Ok(()),
    }
}

pub fn batch(field: &str, len: usize) -> Result<(), Error> {
    if len > MAX_BATCH {
        return Err(Error::invalid(field, format!("lists {len} items; the limit is {MAX_BATCH}")));
    }
    Ok(())
}

pub fn sync_policy(p: &super::objects::SyncPolicy) -> Result<(), Error> {
    if p.batch_size == 0 || p.batch_size > MAX_SYNC_BATCH {
        return Err(Error::invalid("batch_size", format!("must be between 1 and {MAX_SYNC_BATCH}")));
    }
    if !(MIN_LAZY_INTERVAL_MS..=MAX_LAZY_INTERVAL_MS).contains(&p.lazy_interval_ms) {
        return Err(Error::invalid(
            "lazy_interval_ms",
            format!("must be between {MIN_LAZY_INTERVAL_MS} and {MAX_LAZY_INTERVAL_MS}"),
        ));
    }
    if p.max_pending == 0 || p.max_pending > MAX_PENDING_LIMIT {
        return Err(Error::invalid("max_pending", format!("must be between 1 and {MAX_PENDING_LIMIT}")));
    }
    replicas("default_replicas", Some(p.default_replicas))
}

pub fn scheduler(w: &super::objects::SchedulerWeights) -> Result<(), Error> {
    let all =
        [("w_cpu", w.w_cpu), ("w_ram", w.w_ram), ("w_gpu", w.w_gpu), ("w_latency", w.w_latency), ("w_io", w.w_io)];
    for (field, v) in all {
        if !(0.0..=MAX_WEIGHT).contains(&v) {
            return Err(Error::invalid(field, format!("must be between 0 and {MAX_WEIGHT}")));
        }
    }
    Ok(())
}

// ---- actions ----

/// Longest action type, target, worker name, anomaly type, severity, timestamp or
/// fingerprint.
pub const MAX_FIELD_LEN: usize = 256;
/// Longest message a worker reports with a completion or a failure.
pub const MAX_MESSAGE_LEN: usize = 4 * MAX_FIELD_LEN;
/// Most parameters of an action, or details of an anomaly.
pub const MAX_PARAMETERS: usize = 32;
/// Longest parameter or detail value, as JSON text.
pub const MAX_PARAMETER_LEN: usize = 1024;
/// Longest lease a worker may ask for, in seconds.
pub const MAX_LEASE_S: u64 = 3600;
/// Range of an action's priority: 1 is the highest.
pub const PRIORITIES: std::ops::RangeInclusive<u8> = 1..=5;
/// Limits of the action policy.
pub const MAX_ACTIVE: u32 = 10_000;
pub const MAX_ATTEMPTS: u32 = 100;
pub const MAX_RATE_LIMIT: u32 = 1_000_000;
pub const MAX_RETRY_BACKOFF_MS: u64 = 3_600_000;
pub const MAX_RATE_WINDOW_MS: u64 = 86_400_000;

/// A free-text identifier (action type, target, worker): 1 to [`MAX_FIELD_LEN`] bytes.
pub fn text(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.len() > MAX_FIELD_LEN {
        return Err(Error::invalid(field, format!("must be 1 to {MAX_FIELD_LEN} characters")));
    }
    Ok(())
}

/// Free text that may be empty, at most `max` bytes.
pub fn short_text(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.len() > max {
        return Err(Error::invalid(field, format!("is {} bytes long; the limit is {max}", value.len())));
    }
    Ok(())
}

/// A share between 0 and 1 (a confidence, a load level). NaN is refused with the rest.
pub fn unit_interval(field: &str, value: f64) -> Result<(), Error> {
    if !(0.0..=1.0).contains(&value) {
        return Err(Error::invalid(field, "must be between 0.0 and 1.0"));
    }
    Ok(())
}

/// Action parameters or anomaly details: name → canonical JSON text.
pub fn parameters(field: &str, map: &BTreeMap<String, String>) -> Result<(), Error> {
    if map.len() > MAX_PARAMETERS {
        return Err(Error::invalid(field, format!("has {} entries; the limit is {MAX_PARAMETERS}", map.len())));
    }
    for (k, v) in map {
        if v.len() > MAX_PARAMETER_LEN {
            return Err(Error::invalid(
                format!("{field}.{k}"),
                format!("is {} bytes as JSON; the limit is {MAX_PARAMETER_LEN}", v.len()),
            ));
        }
    }
    Ok(())
}

pub fn action_spec(spec: &ActionSpec) -> Result<(), Error> {
    text("type", &spec.kind)?;
    text("target", &spec.target)?;
    if !PRIORITIES.contains(&spec.priority) {
        return Err(Error::invalid("priority", "must be 1 (highest) to 5"));
    }
    unit_interval("confidence", spec.confidence)?;
    parameters("parameters", &spec.parameters)
}

pub fn lease_ms(field: &str, value: u64) -> Result<(), Error> {
    if value == 0 || value > MAX_LEASE_S * 1000 {
        return Err(Error::invalid(field, format!("must be between 1 and {MAX_LEASE_S} seconds")));
    }
    Ok(())
}

pub fn anomaly_report(r: &AnomalyReport) -> Result<(), Error> {
    short_text("timestamp", &r.timestamp, MAX_FIELD_LEN)?;
    text("type", &r.kind)?;
    text("severity", &r.severity)?;
    unit_interval("confidence_score", r.confidence)?;
    parameters("details", &r.details)?;
    if let Some(a) = &r.recommended_action {
        text("recommended_action", a)?;
    }
    if let Some(f) = &r.fingerprint {
        text("fingerprint", f)?;
    }
    Ok(())
}

pub fn action_policy(p: &ActionPolicy) -> Result<(), Error> {
    unit_interval("confidence_threshold", p.confidence_threshold)?;
    between("max_active", p.max_active.into(), 1, MAX_ACTIVE.into())?;
    between("max_attempts", p.max_attempts.into(), 1, MAX_ATTEMPTS.into())?;
    between("rate_limit", p.rate_limit.into(), 1, MAX_RATE_LIMIT.into())?;
    between("retry_backoff_ms", p.retry_backoff_ms, 0, MAX_RETRY_BACKOFF_MS)?;
    between("rate_window_ms", p.rate_window_ms, 1, MAX_RATE_WINDOW_MS)?;
    batch("exclusive", p.exclusive.len())?;
    for (i, (a, b)) in p.exclusive.iter().enumerate() {
        text(&format!("exclusive[{i}][0]"), a)?;
        text(&format!("exclusive[{i}][1]"), b)?;
    }
    Ok(())
}

/// A whole number within `min..=max`.
pub fn between(field: &str, value: u64, min: u64, max: u64) -> Result<(), Error> {
    if !(min..=max).contains(&value) {
        return Err(Error::invalid(field, format!("must be between {min} and {max}")));
    }
    Ok(())
}

// ---- commands ----

/// The rules of every command, checked again as it is applied, whoever proposed it (a
/// request handler, a forwarding peer, the leader's own timers). The request handlers check
/// the same rules first, so that a client hears of a bad field before anything is proposed;
/// checking again here makes `apply` total: a command that breaks a rule becomes the same
/// deterministic error on every peer, and the log moves on.
pub fn command(c: &Command) -> Result<(), Error> {
    match c {
        Command::Guarded { command: inner, .. } => match inner.guardable() {
            true => command(inner),
            false => Err(Error::invalid("cas", "does not apply to this write; see docs/api.md for where it does")),
        },
        Command::PutRegion { name, spec, .. } => {
            region_spec(name, spec)?;
            for (i, net) in spec.cidrs.iter().enumerate() {
                if net.trunc() != *net {
                    return Err(Error::invalid(format!("cidrs[{i}]"), format!("{net} has host bits set")));
                }
            }
            Ok(())
        }
        Command::DeleteRegion { name, .. } => label("name", name),
        Command::PutNode { id, spec, .. } => node_spec(id, spec),
        Command::DeleteNode { id, .. } => label("id", id),
        Command::PutZone { name, spec, .. } => zone_spec(name, spec),
        Command::DeleteZone { name, .. } => self::name("name", name),
        Command::PutSite { id, region, .. } => label("id", id).and_then(|_| label("region", region)),
        Command::DeleteSite { id, .. } => label("id", id),
        Command::PinSite { id, node } => {
            label("id", id)?;
            node.as_deref().map_or(Ok(()), |n| label("node", n))
        }
        Command::PutDomain { name, spec, .. } => {
            ttl("ttl", spec.ttl.into())?;
            domain_spec(name, spec)
        }
        Command::DeleteDomain { name, .. } => self::name("name", name),
        Command::LockDomain { name, site } => {
            self::name("name", name)?;
            site.as_deref().map_or(Ok(()), |s| label("site", s))
        }
        Command::SetMaintenance { id, reason } => {
            label("id", id)?;
            reason.as_deref().map_or(Ok(()), |r| short_text("reason", r, MAX_REASON_LEN))
        }
        Command::PutPolicy { weights, hysteresis, down_after_ms } => policy(weights, *hysteresis, *down_after_ms),
        Command::SetHealth { changes } => {
            changes.iter().enumerate().try_for_each(|(i, (id, _))| label(&format!("changes[{i}].node"), id))
        }
        Command::Dispatch { changes, .. } => changes.iter().enumerate().try_for_each(|(i, c)| row_change(i, c)),
        Command::PutObject { id, write, .. } => object_write(id, write).and_then(|_| write_clock(write)),
        Command::DeleteObject { id, .. } => object_id("id", id),
        Command::ResolveConflict { id, resolution, .. } => {
            object_id("id", id)?;
            match resolution {
                Resolution::Pick(_) => Ok(()),
                // A resolution's clock is merged with the object's: it need not count its
                // own region.
                Resolution::Version(w) => object_write(id, w).and_then(|_| clock_entries(&w.clock)),
            }
        }
        Command::MarkReplica { id, node, .. } => object_id("id", id).and_then(|_| label("node", node)),
        Command::AckEvents { region, events, .. } => {
            label("region", region).and_then(|_| batch("events", events.len()))
        }
        Command::PullObjects { region, objects } => {
            label("region", region)?;
            batch("objects", objects.len())?;
            objects.iter().enumerate().try_for_each(|(i, o)| object_id(&format!("objects[{i}]"), o))
        }
        Command::ReleaseLazy { regions } => {
            regions.iter().enumerate().try_for_each(|(i, r)| label(&format!("regions[{i}]"), r))
        }
        Command::RegionHeartbeat { region, report, .. } => {
            label("region", region).and_then(|_| unit_interval("load_level", report.load_level))
        }
        Command::PutSyncPolicy { policy } => sync_policy(policy),
        Command::PutScheduler { weights } => scheduler(weights),
        Command::SubmitAction { spec, .. } => action_spec(spec),
        Command::ClaimAction { worker, kinds, lease_ms, .. } => {
            text("worker", worker)?;
            if kinds.is_empty() {
                return Err(Error::invalid("types", "list the action types this worker handles"));
            }
            batch("types", kinds.len())?;
            kinds.iter().enumerate().try_for_each(|(i, k)| text(&format!("types[{i}]"), k))?;
            self::lease_ms("lease_s", *lease_ms)
        }
        Command::ReportAction { worker, message, .. } => {
            text("worker", worker)?;
            message.as_deref().map_or(Ok(()), |m| short_text("message", m, MAX_MESSAGE_LEN))
        }
        Command::ExpireLeases { .. } => Ok(()),
        // The leader runs at most `max_active` at once.
        Command::RunBuiltins { ids, .. } => between("ids", ids.len() as u64, 0, MAX_ACTIVE.into()),
        Command::ReportAnomaly { report, action, .. } => {
            anomaly_report(report)?;
            action.as_ref().map_or(Ok(()), action_spec)
        }
        Command::ResolveAlert { fingerprint, .. } => text("fingerprint", fingerprint),
        Command::PutActionPolicy { policy } => action_policy(policy),
        Command::PruneFinished { .. } => Ok(()),
    }
}

/// A row the leader elected: names as the state holds them, a finite score.
fn row_change(i: usize, c: &RowChange) -> Result<(), Error> {
    name(&format!("changes[{i}].domain"), &c.domain)?;
    label(&format!("changes[{i}].region"), &c.region)?;
    if let Some(node) = &c.node {
        label(&format!("changes[{i}].node"), node)?;
    }
    if c.score.is_some_and(|s| !s.is_finite()) {
        return Err(Error::invalid(format!("changes[{i}].score"), "must be a finite number"));
    }
    Ok(())
}

/// A clock's size and region names.
fn clock_entries(clock: &super::clock::VClock) -> Result<(), Error> {
    if clock.0.len() > MAX_CLOCK_ENTRIES {
        return Err(Error::invalid(
            "clock",
            format!("names {} regions; the limit is {MAX_CLOCK_ENTRIES}", clock.0.len()),
        ));
    }
    clock.0.keys().try_for_each(|r| label(&format!("clock.{r}"), r))
}

/// The clock of a write as it is applied: the same rules as [`clock`], which also drops
/// zero counters before the write is proposed.
fn write_clock(w: &ObjectWrite) -> Result<(), Error> {
    let mut clock = w.clock.clone();
    self::clock(&w.region, &mut clock)
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
    fn names() {
        assert!(name("name", "video.example.com").is_ok());
        assert_eq!(normalize_name("Video.Example.COM."), "video.example.com");
        for bad in ["", "a..b", "-a.com", "a_b.com", "ä.com"] {
            assert!(name("name", bad).is_err(), "{bad}");
        }
        let long = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        assert_eq!(long.len(), 253);
        assert!(name("name", &long).is_ok());
        assert!(name("name", &format!("{long}e")).is_err());
        assert!(ttl("ttl", 0).is_err() && ttl("ttl", 86_401).is_err() && ttl("ttl", 20).is_ok());
    }

    #[test]
    fn policies() {
        let w = |l, d| super::super::Weights { latency: l, load: d, error_rate: 0.0, cpu: 0.0 };
        assert!(policy(&w(0.6, 0.4), 0.1, 1500).is_ok());
        assert!(policy(&w(0.0, 0.0), 0.1, 1500).is_err());
        assert!(policy(&w(-1.0, 0.4), 0.1, 1500).is_err());
        assert!(policy(&w(0.6, 0.4), 1.0, 1500).is_err());
        assert!(policy(&w(0.6, 0.4), 0.1, 50).is_err());
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

    #[test]
    fn object_limits_are_enforced() {
        use crate::state::clock::VClock;
        use crate::state::objects::ObjectWrite;
        let ok = ObjectWrite {
            region: "sea".into(),
            clock: VClock([("sea".to_string(), 1)].into()),
            timestamp_ms: 1,
            size: 1,
            hash: "h".into(),
            attrs: Default::default(),
            strategy: None,
            sync: None,
            replicas: None,
        };
        assert!(object_write("o", &ok).is_ok());
        let field = |r: Result<(), Error>| match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(object_id("id", &"x".repeat(MAX_OBJECT_ID_LEN + 1))), "id");
        assert!(object_id("id", &"x".repeat(MAX_OBJECT_ID_LEN)).is_ok());
        assert_eq!(field(object_id("id", "a/b")), "id");
        let mut big = ok.clone();
        big.attrs = (0..=MAX_ATTRS).map(|i| (format!("k{i}"), "1".into())).collect();
        assert_eq!(field(object_write("o", &big)), "attrs");
        let mut long = ok.clone();
        long.attrs = [("k".into(), "x".repeat(MAX_ATTR_VALUE_LEN + 1))].into();
        assert_eq!(field(object_write("o", &long)), "attrs.k");
        let mut hash = ok.clone();
        hash.hash = "h".repeat(MAX_HASH_LEN + 1);
        assert_eq!(field(object_write("o", &hash)), "hash");
        let mut rf = ok.clone();
        rf.replicas = Some(MAX_REPLICAS + 1);
        assert_eq!(field(object_write("o", &rf)), "replicas");
        let mut wide = VClock((0..=MAX_CLOCK_ENTRIES).map(|i| (format!("r{i}"), 1)).collect());
        assert_eq!(field(clock("r0", &mut wide)), "clock");
        let mut zero = VClock([("sea".to_string(), 0), ("eu".to_string(), 2)].into());
        assert_eq!(field(clock("sea", &mut zero)), "clock.sea");
        assert_eq!(field(batch("ids", MAX_BATCH + 1)), "ids");
        assert!(batch("ids", MAX_BATCH).is_ok());
        let mut p = crate::state::objects::SyncPolicy::default();
        assert!(sync_policy(&p).is_ok());
        p.max_pending = 0;
        assert_eq!(field(sync_policy(&p)), "max_pending");
        p.max_pending = 1;
        p.lazy_interval_ms = MIN_LAZY_INTERVAL_MS - 1;
        assert_eq!(field(sync_policy(&p)), "lazy_interval_ms");
    }
}

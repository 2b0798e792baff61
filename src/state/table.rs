//! The elected table, (domain, region) → [`DispatchRow`], held compactly.
//!
//! Every peer keeps one row per managed domain and region: 1,000,000 rows at 100,000
//! domains × 10 regions. A map keyed by `(String, String)` with the node name as a `String`
//! cost ~430 bytes of heap per row, mostly the same few region and node names copied a
//! million times. Here a domain's rows are stored together under its name, ordered by
//! region, and region names, node names and addresses are numbers into lists of the
//! distinct values: about 40 bytes per row, plus the domain's entry.
//!
//! The numbers are private to one peer's copy (they follow the order in which names were
//! first seen, which differs between a peer that applied the log and one that loaded a
//! snapshot). Nothing outside this file sees them: iteration, equality and the serialized
//! form are by name, and the serialized form is byte for byte that of the former
//! `BTreeMap<(String, String), DispatchRow>`, so snapshots written before still load.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::{DispatchRow, Reason};

/// In a [`Slot`]: no node, or no address.
const NONE: u32 = u32::MAX;

/// One row as stored: 40 bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Position of the region's name in `names`.
    region: u32,
    /// Position of the node's name in `names`, or `NONE`.
    node: u32,
    /// Position in `addresses`, or `NONE`.
    ip: u32,
    reason: Reason,
    /// Whether `score` holds a score (`Option<f64>` would take 16 bytes).
    scored: bool,
    score: f64,
    since_ms: u64,
    revision: u64,
}

/// One row of the table, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Row<'a> {
    /// The elected node; `None`: the domain has no answer in this region.
    pub node: Option<&'a str>,
    pub ip: Option<IpAddr>,
    /// The node's score when elected (0–100, higher is better), if it had metrics.
    pub score: Option<f64>,
    pub reason: Reason,
    /// Wall-clock milliseconds (leader's clock) when this row last changed.
    pub since_ms: u64,
    /// The log index of the entry that changed it.
    pub revision: u64,
}

impl Row<'_> {
    pub fn to_owned_row(&self) -> DispatchRow {
        DispatchRow {
            node: self.node.map(String::from),
            ip: self.ip,
            score: self.score,
            reason: self.reason,
            since_ms: self.since_ms,
            revision: self.revision,
        }
    }
}

/// The elected table. Iteration is ordered by (domain, region), like the map it replaces.
#[derive(Clone, Default)]
pub struct DispatchTable {
    /// By domain: its rows, ordered by region name, never empty.
    domains: BTreeMap<Box<str>, Box<[Slot]>>,
    len: usize,
    /// Region and node names, each once; a slot refers to them by position.
    names: Vec<Box<str>>,
    name_index: HashMap<Box<str>, u32>,
    /// Elected addresses, each once.
    addresses: Vec<IpAddr>,
    address_index: HashMap<IpAddr, u32>,
}

impl DispatchTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The row of a domain in a region.
    pub fn get(&self, domain: &str, region: &str) -> Option<Row<'_>> {
        let region = *self.name_index.get(region)?;
        let slots = self.domains.get(domain)?;
        slots.iter().find(|s| s.region == region).map(|s| self.row(s))
    }

    /// Every row, ordered by (domain, region).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, Row<'_>)> + '_ {
        self.rows_of(self.domains.iter())
    }

    /// The rows of these domains' entries, each domain's ordered by region.
    fn rows_of<'t>(
        &'t self,
        domains: impl Iterator<Item = (&'t Box<str>, &'t Box<[Slot]>)> + 't,
    ) -> impl Iterator<Item = (&'t str, &'t str, Row<'t>)> + 't {
        domains
            .flat_map(move |(domain, slots)| slots.iter().map(move |s| (&**domain, self.name(s.region), self.row(s))))
    }

    /// The rows after (`domain`, `region`) in (domain, region) order; every row with `None`.
    pub fn iter_after<'t>(
        &'t self,
        after: Option<(&'t str, &'t str)>,
    ) -> impl Iterator<Item = (&'t str, &'t str, Row<'t>)> + 't {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, |(domain, _)| Bound::Included(domain));
        self.rows_of(self.domains.range::<str, _>((from, Bound::Unbounded)))
            .skip_while(move |(domain, region, _)| after.is_some_and(|(d, r)| *domain == d && *region <= r))
    }

    /// The rows of one domain, ordered by region.
    pub fn domain(&self, domain: &str) -> impl Iterator<Item = (&str, Row<'_>)> + '_ {
        self.domains
            .get(domain)
            .into_iter()
            .flat_map(move |slots| slots.iter().map(move |s| (self.name(s.region), self.row(s))))
    }

    /// The domains with a row changed by a log entry after `revision`, in order.
    pub fn domains_changed_after(&self, revision: u64) -> impl Iterator<Item = &str> + '_ {
        self.domains.iter().filter(move |(_, slots)| slots.iter().any(|s| s.revision > revision)).map(|(d, _)| &**d)
    }

    /// Sets the row of a domain in a region, replacing any.
    pub fn insert(&mut self, domain: &str, region: &str, row: Row<'_>) {
        let slot = Slot {
            region: self.intern(region),
            node: row.node.map_or(NONE, |n| self.intern(n)),
            ip: row.ip.map_or(NONE, |ip| self.address(ip)),
            reason: row.reason,
            scored: row.score.is_some(),
            score: row.score.unwrap_or_default(),
            since_ms: row.since_ms,
            revision: row.revision,
        };
        let Some(slots) = self.domains.get_mut(domain) else {
            self.domains.insert(Box::from(domain), Box::new([slot]));
            self.len += 1;
            return;
        };
        let names = &self.names;
        match slots.binary_search_by(|s| (*names[s.region as usize]).cmp(region)) {
            Ok(i) => slots[i] = slot,
            Err(i) => {
                // Exactly as long as needed: most domains keep one row per region for good.
                let mut grown = Vec::with_capacity(slots.len() + 1);
                grown.extend_from_slice(&slots[..i]);
                grown.push(slot);
                grown.extend_from_slice(&slots[i..]);
                *slots = grown.into_boxed_slice();
                self.len += 1;
            }
        }
    }

    /// Removes every row of a domain.
    pub fn remove_domain(&mut self, domain: &str) {
        if let Some(slots) = self.domains.remove(domain) {
            self.len -= slots.len();
        }
    }

    /// Removes every row of a region.
    pub fn remove_region(&mut self, region: &str) {
        let Some(&region) = self.name_index.get(region) else { return };
        let mut removed = 0;
        self.domains.retain(|_, slots| {
            if slots.iter().any(|s| s.region == region) {
                let kept: Vec<Slot> = slots.iter().filter(|s| s.region != region).copied().collect();
                removed += slots.len() - kept.len();
                *slots = kept.into_boxed_slice();
            }
            !slots.is_empty()
        });
        self.len -= removed;
    }

    fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }

    fn row(&self, s: &Slot) -> Row<'_> {
        Row {
            node: (s.node != NONE).then(|| self.name(s.node)),
            ip: (s.ip != NONE).then(|| self.addresses[s.ip as usize]),
            score: s.scored.then_some(s.score),
            reason: s.reason,
            since_ms: s.since_ms,
            revision: s.revision,
        }
    }

    /// The number of a region or node name. Names stay listed after their last row goes:
    /// there are few of them, and a snapshot load starts from an empty list.
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.name_index.get(name) {
            return i;
        }
        let i = u32::try_from(self.names.len()).ok().filter(|&i| i != NONE).expect("fewer than 2^32 - 1 names");
        self.names.push(Box::from(name));
        self.name_index.insert(Box::from(name), i);
        i
    }

    fn address(&mut self, ip: IpAddr) -> u32 {
        if let Some(&i) = self.address_index.get(&ip) {
            return i;
        }
        let i = u32::try_from(self.addresses.len()).ok().filter(|&i| i != NONE).expect("fewer than 2^32 - 1 addresses");
        self.addresses.push(ip);
        self.address_index.insert(ip, i);
        i
    }
}

impl PartialEq for DispatchTable {
    /// By content: two peers' tables with the same rows are equal whatever their numbering.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for DispatchTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter().map(|(d, r, row)| ((d, r), row))).finish()
    }
}

/// As the former `BTreeMap<(String, String), DispatchRow>`: a map of `len` entries, each
/// the key `(domain, region)` and the row, in key order.
impl Serialize for DispatchTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (domain, region, row) in self.iter() {
            map.serialize_entry(&(domain, region), &row)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for DispatchTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Rows;
        impl<'de> Visitor<'de> for Rows {
            type Value = DispatchTable;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of (domain, region) to dispatch rows")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DispatchTable, A::Error> {
                let mut table = DispatchTable::new();
                while let Some(((domain, region), row)) = map.next_entry::<(String, String), DispatchRow>()? {
                    table.insert(&domain, &region, row.as_row());
                }
                Ok(table)
            }
        }
        deserializer.deserialize_map(Rows)
    }
}

impl DispatchRow {
    /// This row, as [`DispatchTable::insert`] takes it.
    pub fn as_row(&self) -> Row<'_> {
        Row {
            node: self.node.as_deref(),
            ip: self.ip,
            score: self.score,
            reason: self.reason,
            since_ms: self.since_ms,
            revision: self.revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: Option<&str>, ip: Option<&str>, score: Option<f64>, reason: Reason, revision: u64) -> DispatchRow {
        DispatchRow {
            node: node.map(String::from),
            ip: ip.map(|ip| ip.parse().expect("an address")),
            score,
            reason,
            since_ms: 1_700_000_000_000 + revision,
            revision,
        }
    }

    /// Rows in no particular order, with repeats, both address families, no node, no score.
    fn rows() -> Vec<(&'static str, &'static str, DispatchRow)> {
        vec![
            ("b.example.com", "sg", row(Some("sg-a"), Some("10.0.0.1"), Some(71.5), Reason::Initial, 5)),
            ("a.example.com", "sg", row(Some("sg-b"), Some("10.0.0.2"), None, Reason::Initial, 6)),
            ("a.example.com", "fra", row(None, None, None, Reason::Empty, 7)),
            ("b.example.com", "fra", row(Some("fra-a"), Some("2001:db8::1"), Some(0.0), Reason::Fallback, 8)),
            ("a.example.com", "sg", row(Some("sg-a"), Some("10.0.0.1"), Some(12.25), Reason::BetterScore, 9)),
            ("c.example.com", "us", row(Some("sg-a"), Some("10.0.0.1"), Some(100.0), Reason::Pin, 10)),
            ("a.example.com", "us", row(Some("sg-b"), Some("10.0.0.2"), Some(3.0), Reason::Lock, 11)),
        ]
    }

    fn both() -> (DispatchTable, BTreeMap<(String, String), DispatchRow>) {
        let mut table = DispatchTable::new();
        let mut map = BTreeMap::new();
        for (d, r, row) in rows() {
            table.insert(d, r, row.as_row());
            map.insert((d.to_string(), r.to_string()), row);
        }
        (table, map)
    }

    fn same(table: &DispatchTable, map: &BTreeMap<(String, String), DispatchRow>) {
        assert_eq!(table.len(), map.len());
        let listed: Vec<_> =
            table.iter().map(|(d, r, row)| ((d.to_string(), r.to_string()), row.to_owned_row())).collect();
        let expected: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(listed, expected);
        for ((d, r), row) in map {
            assert_eq!(table.get(d, r).map(|r| r.to_owned_row()).as_ref(), Some(row));
        }
    }

    #[test]
    fn pages_resume_after_any_row() {
        let (table, map) = both();
        let keys: Vec<(String, String)> = map.keys().cloned().collect();
        let listed = |after: Option<(&str, &str)>| -> Vec<(String, String)> {
            table.iter_after(after).map(|(d, r, _)| (d.to_string(), r.to_string())).collect()
        };
        assert_eq!(listed(None), keys);
        for (i, (d, r)) in keys.iter().enumerate() {
            assert_eq!(listed(Some((d, r))), keys[i + 1..], "after {d}/{r}");
        }
        // A cursor that names no row resumes at the next one.
        assert_eq!(listed(Some(("a.example.com", "gb"))), keys[1..]);
        assert_eq!(listed(Some(("b", "zz"))), keys[3..]);
        assert!(listed(Some(("zz", ""))).is_empty());
    }

    #[test]
    fn behaves_like_the_ordered_map() {
        let (mut table, mut map) = both();
        same(&table, &map);
        assert!(table.get("a.example.com", "mars").is_none());
        assert!(table.get("z.example.com", "sg").is_none());
        let of_a: Vec<_> = table.domain("a.example.com").map(|(r, row)| (r, row.node)).collect();
        assert_eq!(of_a, [("fra", None), ("sg", Some("sg-a")), ("us", Some("sg-b"))]);
        assert_eq!(table.domain("z.example.com").count(), 0);

        table.remove_region("sg");
        map.retain(|(_, r), _| r != "sg");
        same(&table, &map);
        table.remove_domain("a.example.com");
        map.retain(|(d, _), _| d != "a.example.com");
        same(&table, &map);
        // c.example.com had a row in "us" only, b.example.com none: gone.
        table.remove_region("us");
        map.retain(|(_, r), _| r != "us");
        same(&table, &map);
        table.remove_region("mars");
        table.remove_domain("z.example.com");
        same(&table, &map);
    }

    #[test]
    fn equal_by_content_whatever_the_insertion_order() {
        let (table, _) = both();
        let mut reversed = DispatchTable::new();
        // Last write wins in both: insert the final rows in reverse order.
        for ((d, r), row) in both().1.iter().rev() {
            reversed.insert(d, r, row.as_row());
        }
        assert_eq!(table, reversed);
        let mut other = reversed.clone();
        other.insert("a.example.com", "fra", row(None, None, None, Reason::Empty, 99).as_row());
        assert_ne!(table, other);
    }

    /// The serialized form is the former map's, byte for byte: snapshots written by
    /// earlier versions load, and peers of both versions could exchange them.
    #[test]
    fn serializes_as_the_former_map() {
        let (table, map) = both();
        let bytes = bincode::serialize(&table).expect("serializes");
        assert_eq!(bytes, bincode::serialize(&map).expect("serializes"));
        let back: DispatchTable = bincode::deserialize(&bytes).expect("deserializes");
        assert_eq!(back, table);
        same(&back, &map);
        assert_eq!(bincode::serialize(&back).expect("serializes"), bytes);

        let empty = DispatchTable::new();
        let no_rows: BTreeMap<(String, String), DispatchRow> = BTreeMap::new();
        assert_eq!(bincode::serialize(&empty).unwrap(), bincode::serialize(&no_rows).unwrap());
    }

    #[test]
    fn a_row_is_small() {
        assert!(std::mem::size_of::<Slot>() <= 40, "{} bytes", std::mem::size_of::<Slot>());
    }
}

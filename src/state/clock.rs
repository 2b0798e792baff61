//! Vector clocks: one counter per region that wrote an object.
//!
//! A region bumps its own counter on every write it makes and sends the whole clock along.
//! Comparing two clocks tells whether one write had seen the other:
//!
//! | relation     | meaning                                                  |
//! |--------------|----------------------------------------------------------|
//! | `Before`     | every counter ≤ the other's, one strictly less: it is older |
//! | `After`      | the mirror image: it is newer and had seen the other       |
//! | `Equal`      | the same counters: the same write (or a retry of it)       |
//! | `Concurrent` | each has a counter the other lacks: neither saw the other  |
//!
//! A missing region counts as 0. [`VClock::merge`] (pointwise maximum) is commutative,
//! associative and idempotent, so merging in any order gives the same clock.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VClock(pub BTreeMap<String, u64>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    Before,
    After,
    Equal,
    Concurrent,
}

impl VClock {
    pub fn get(&self, region: &str) -> u64 {
        self.0.get(region).copied().unwrap_or(0)
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &VClock) -> Relation {
        let (mut less, mut greater) = (false, false);
        for region in self.0.keys().chain(other.0.keys()) {
            match self.get(region).cmp(&other.get(region)) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
        }
        match (less, greater) {
            (false, false) => Relation::Equal,
            (true, false) => Relation::Before,
            (false, true) => Relation::After,
            (true, true) => Relation::Concurrent,
        }
    }

    /// The pointwise maximum: the clock of a version that has seen both.
    pub fn merge(&self, other: &VClock) -> VClock {
        let mut out = self.0.clone();
        for (region, &n) in &other.0 {
            let entry = out.entry(region.clone()).or_insert(0);
            *entry = (*entry).max(n);
        }
        // Zero counters say nothing; dropping them keeps equal clocks equal as maps.
        out.retain(|_, n| *n > 0);
        VClock(out)
    }

    /// `true` when `self` has seen `other` (after or equal).
    pub fn dominates(&self, other: &VClock) -> bool {
        matches!(self.compare(other), Relation::After | Relation::Equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vc(pairs: &[(&str, u64)]) -> VClock {
        VClock(pairs.iter().map(|(r, n)| (r.to_string(), *n)).collect())
    }

    #[test]
    fn the_four_relations() {
        assert_eq!(vc(&[("sea", 1)]).compare(&vc(&[("sea", 2)])), Relation::Before);
        assert_eq!(vc(&[("sea", 2), ("eu", 1)]).compare(&vc(&[("sea", 2)])), Relation::After);
        assert_eq!(vc(&[("sea", 2), ("eu", 0)]).compare(&vc(&[("sea", 2)])), Relation::Equal);
        assert_eq!(vc(&[("sea", 2)]).compare(&vc(&[("eu", 1)])), Relation::Concurrent);
        assert_eq!(vc(&[]).compare(&vc(&[])), Relation::Equal);
    }

    fn clock() -> impl Strategy<Value = VClock> {
        prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c", "d"]), 0u64..4, 0..4)
            .prop_map(|m| VClock(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    }

    proptest! {
        #[test]
        fn compare_is_antisymmetric(a in clock(), b in clock()) {
            let mirrored = match a.compare(&b) {
                Relation::Before => Relation::After,
                Relation::After => Relation::Before,
                r => r,
            };
            prop_assert_eq!(b.compare(&a), mirrored);
        }

        #[test]
        fn merge_is_commutative_associative_idempotent(a in clock(), b in clock(), c in clock()) {
            prop_assert_eq!(a.merge(&b), b.merge(&a));
            prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
            prop_assert_eq!(a.merge(&a).compare(&a), Relation::Equal);
        }

        #[test]
        fn the_merge_dominates_both(a in clock(), b in clock()) {
            let m = a.merge(&b);
            prop_assert!(m.dominates(&a) && m.dominates(&b));
            // and it is the least such clock: it equals a whenever a already dominates b
            if a.dominates(&b) {
                prop_assert_eq!(m.compare(&a), Relation::Equal);
            }
        }
    }
}

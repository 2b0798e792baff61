//! Placement by rendezvous (highest random weight) hashing.
//!
//! Every healthy node gets a weight `sha256(node id, hash)`; the nodes are taken in
//! descending weight, at most one per site until every site has one, then the rest by
//! weight. Removing a node changes only the placements it was part of; adding one moves
//! only the hashes it now wins.

use sha2::{Digest, Sha256};

use crate::state::{Health, Node, State};

/// `rf` nodes for a content hash, best first, spread across sites.
pub fn place<'a>(state: &'a State, hash: &str, rf: usize) -> Vec<&'a Node> {
    place_among(state.nodes.values().filter(|n| eligible(n)), hash, rf)
}

/// A node that may receive new replicas: up and not drained.
pub fn eligible(node: &Node) -> bool {
    node.health == Health::Up && node.maintenance.is_none()
}

pub fn place_among<'a>(nodes: impl Iterator<Item = &'a Node>, hash: &str, rf: usize) -> Vec<&'a Node> {
    let mut ranked: Vec<(u64, &Node)> = nodes.map(|n| (weight(&n.id, hash), n)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let mut chosen: Vec<&Node> = Vec::with_capacity(rf);
    let mut sites: Vec<&str> = Vec::new();
    for (_, node) in &ranked {
        if chosen.len() == rf {
            break;
        }
        if !sites.contains(&node.site.as_str()) {
            sites.push(&node.site);
            chosen.push(node);
        }
    }
    for (_, node) in &ranked {
        if chosen.len() == rf {
            break;
        }
        if !chosen.iter().any(|c| c.id == node.id) {
            chosen.push(node);
        }
    }
    chosen
}

fn weight(node: &str, hash: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    h.update(hash.as_bytes());
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize, sites: usize) -> Vec<Node> {
        (0..n)
            .map(|i| Node {
                id: format!("n{i}"),
                ip: "192.0.2.1".parse().unwrap(),
                region: "r".into(),
                site: format!("s{}", i % sites),
                capacity: 1,
                health: Health::Up,
                maintenance: None,
                revision: 1,
            })
            .collect()
    }

    #[test]
    fn replicas_spread_across_sites_first() {
        let all = nodes(9, 3);
        for h in 0..200 {
            let chosen = place_among(all.iter(), &format!("h{h}"), 3);
            let mut sites: Vec<_> = chosen.iter().map(|n| n.site.as_str()).collect();
            sites.sort();
            sites.dedup();
            assert_eq!(sites.len(), 3, "hash h{h}: {chosen:?}");
        }
        // More replicas than sites: the rest by weight, no node twice.
        let chosen = place_among(all.iter(), "x", 5);
        let mut ids: Vec<_> = chosen.iter().map(|n| n.id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 5);
    }

    #[test]
    fn removing_one_of_n_nodes_moves_about_one_nth_of_the_hashes() {
        let n = 10;
        let all = nodes(n, 5);
        let without: Vec<Node> = all.iter().filter(|x| x.id != "n3").cloned().collect();
        let hashes = 10_000;
        let mut moved = 0;
        for h in 0..hashes {
            let hash = format!("object-{h}");
            let before = place_among(all.iter(), &hash, 1)[0].id.clone();
            let after = place_among(without.iter(), &hash, 1)[0].id.clone();
            if before != after {
                assert_eq!(before, "n3", "only the removed node's hashes move");
                moved += 1;
            }
        }
        let share = moved as f64 / hashes as f64;
        assert!((0.07..0.13).contains(&share), "moved {share} of the hashes, expected about 1/{n}");
        // With three replicas, the placements without the node keep all their nodes.
        for h in 0..1000 {
            let hash = format!("object-{h}");
            let before: Vec<_> = place_among(all.iter(), &hash, 3).iter().map(|x| x.id.clone()).collect();
            let after: Vec<_> = place_among(without.iter(), &hash, 3).iter().map(|x| x.id.clone()).collect();
            let kept = before.iter().filter(|id| after.contains(id)).count();
            let expected = if before.contains(&"n3".to_string()) { 2 } else { 3 };
            assert_eq!(kept, expected, "{hash}: {before:?} -> {after:?}");
        }
    }
}

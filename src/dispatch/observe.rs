//! Observation: the heartbeats the leader has heard, as soft state (never written to the
//! log), and the failure detector that turns silence into committed health transitions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::NodeMetrics;
use crate::state::{Health, State};

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    metrics: NodeMetrics,
}

/// What this peer has heard from nodes since it became leader.
#[derive(Default)]
pub struct Observations {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    seen: HashMap<String, Seen>,
    /// When this peer became leader; `None` while it is not. Every node gets a grace
    /// period of `down_after` from then, so a change of leader never fails nodes over.
    leading_since: Option<Instant>,
}

impl Observations {
    /// Records a heartbeat the cluster received `at`. A beat older than the one already
    /// recorded (forwarded late by a follower) changes nothing.
    pub fn record(&self, node: &str, metrics: NodeMetrics, at: Instant) {
        let mut inner = self.inner.lock().expect("observations lock");
        match inner.seen.get_mut(node) {
            Some(seen) if seen.at > at => {}
            Some(seen) => *seen = Seen { at, metrics },
            None => {
                inner.seen.insert(node.to_string(), Seen { at, metrics });
            }
        }
    }

    /// Called on every tick with whether this peer leads; starts or ends the grace period.
    pub fn set_leading(&self, leading: bool, now: Instant) {
        let mut inner = self.inner.lock().expect("observations lock");
        match (leading, inner.leading_since) {
            (true, None) => inner.leading_since = Some(now),
            (false, Some(_)) => {
                inner.leading_since = None;
                inner.seen.clear();
            }
            _ => {}
        }
    }

    pub fn metrics(&self) -> HashMap<String, NodeMetrics> {
        let inner = self.inner.lock().expect("observations lock");
        inner.seen.iter().map(|(k, v)| (k.clone(), v.metrics.clone())).collect()
    }

    /// When the node was last heard from, if since this peer leads.
    pub fn last_heard(&self, node: &str) -> Option<Instant> {
        self.inner.lock().expect("observations lock").seen.get(node).map(|s| s.at)
    }

    /// The health transitions due now: up after a fresh heartbeat; for a node that is up,
    /// down after `down_after` of silence (counted from the start of leadership at the
    /// earliest).
    pub fn transitions(&self, state: &State, now: Instant) -> Vec<(String, Health)> {
        let inner = self.inner.lock().expect("observations lock");
        let Some(since) = inner.leading_since else { return Vec::new() };
        let down_after = Duration::from_millis(state.policy.down_after_ms);
        let mut out = Vec::new();
        for node in state.nodes.values() {
            let heard = inner.seen.get(&node.id).map(|s| s.at);
            let fresh = heard.is_some_and(|at| now.saturating_duration_since(at) <= down_after);
            let silent_since = heard.map_or(since, |at| at.max(since));
            if fresh && node.health != Health::Up {
                out.push((node.id.clone(), Health::Up));
            } else if !fresh && node.health == Health::Up && now.saturating_duration_since(silent_since) > down_after {
                // Only a node that was up goes down: one registered but never heard from
                // stays `unknown` (and takes no traffic) instead of filling the log.
                out.push((node.id.clone(), Health::Down));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, NodeSpec, RegionSpec};

    fn state_with_node(health: Health) -> State {
        let mut s = State::default();
        s.apply(
            1,
            &Command::PutRegion { name: "r".into(), spec: RegionSpec { cidrs: vec![], fallback: vec![] }, cas: None },
        )
        .unwrap();
        let spec = NodeSpec { ip: "192.0.2.1".parse().unwrap(), region: "r".into(), site: "s".into(), capacity: 1 };
        s.apply(2, &Command::PutNode { id: "n1".into(), spec, cas: None }).unwrap();
        s.apply(3, &Command::SetHealth { changes: vec![("n1".into(), health)] }).unwrap();
        s
    }

    #[test]
    fn silence_means_down_after_the_grace_period_and_a_beat_means_up() {
        let obs = Observations::default();
        let t0 = Instant::now();
        let up = state_with_node(Health::Up);
        assert!(obs.transitions(&up, t0).is_empty(), "not leading: no decisions");
        obs.set_leading(true, t0);
        // A new leader has heard nothing, but grants down_after (1.5 s) of grace.
        assert!(obs.transitions(&up, t0 + Duration::from_millis(1400)).is_empty());
        assert_eq!(obs.transitions(&up, t0 + Duration::from_millis(1600)), vec![("n1".to_string(), Health::Down)]);

        obs.record("n1", NodeMetrics::default(), t0 + Duration::from_millis(2000));
        let down = state_with_node(Health::Down);
        assert_eq!(obs.transitions(&down, t0 + Duration::from_millis(2100)), vec![("n1".to_string(), Health::Up)]);
        assert!(obs.transitions(&up, t0 + Duration::from_millis(3400)).is_empty());
        assert_eq!(obs.transitions(&up, t0 + Duration::from_millis(3600)), vec![("n1".to_string(), Health::Down)]);
    }

    #[test]
    fn a_node_never_heard_from_stays_unknown() {
        let obs = Observations::default();
        let t0 = Instant::now();
        obs.set_leading(true, t0);
        let unknown = state_with_node(Health::Unknown);
        assert!(obs.transitions(&unknown, t0 + Duration::from_secs(60)).is_empty());
        obs.record("n1", NodeMetrics::default(), t0 + Duration::from_secs(61));
        assert_eq!(obs.transitions(&unknown, t0 + Duration::from_secs(61)), vec![("n1".to_string(), Health::Up)]);
    }

    #[test]
    fn a_beat_forwarded_late_counts_from_when_it_was_received_and_never_hides_a_newer_one() {
        let obs = Observations::default();
        let t0 = Instant::now();
        obs.set_leading(true, t0);
        let up = state_with_node(Health::Up);
        obs.record("n1", NodeMetrics::default(), t0 + Duration::from_millis(2000));
        // Received 1 s before it reached the leader: too old to keep the node up at 3.6 s.
        obs.record("n1", NodeMetrics::default(), t0 + Duration::from_millis(1500));
        assert_eq!(obs.last_heard("n1"), Some(t0 + Duration::from_millis(2000)));
        assert!(obs.transitions(&up, t0 + Duration::from_millis(3400)).is_empty());
        assert_eq!(obs.transitions(&up, t0 + Duration::from_millis(3600)), vec![("n1".to_string(), Health::Down)]);
    }

    #[test]
    fn losing_leadership_forgets_and_a_new_term_grants_grace_again() {
        let obs = Observations::default();
        let t0 = Instant::now();
        obs.set_leading(true, t0);
        obs.record("n1", NodeMetrics::default(), t0);
        obs.set_leading(false, t0 + Duration::from_secs(1));
        assert!(obs.metrics().is_empty());
        let t1 = t0 + Duration::from_secs(10);
        obs.set_leading(true, t1);
        let up = state_with_node(Health::Up);
        assert!(obs.transitions(&up, t1 + Duration::from_millis(1000)).is_empty());
    }
}

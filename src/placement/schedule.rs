//! Scheduling a workload on the best node, as seed 004's scheduler: nodes that cannot meet
//! the request are filtered out, the rest are scored by their free resources with the
//! replicated weights, and the highest score wins (ties: the smaller node id).

use std::collections::HashMap;

use serde::Serialize;

use super::replicas::eligible;
use crate::dispatch::NodeMetrics;
use crate::state::objects::SchedulerWeights;
use crate::state::State;

/// What a workload needs; `None` means "does not matter".
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Share of a CPU, 0–1.
    pub cpu_req: f64,
    pub ram_req_mb: f64,
    pub gpu_req: Option<f64>,
    pub max_latency_ms: Option<f64>,
    /// Highest acceptable I/O pressure, 0–1.
    pub io_tolerance: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub node: String,
    pub score: f64,
}

/// The best node, and how many could take the workload at all.
pub fn schedule(
    state: &State,
    metrics: &HashMap<String, NodeMetrics>,
    w: &SchedulerWeights,
    req: &Request,
) -> (Option<Choice>, usize) {
    let mut best: Option<Choice> = None;
    let mut candidates = 0;
    for node in state.nodes.values().filter(|n| eligible(n)) {
        let Some(m) = metrics.get(&node.id) else { continue };
        let cpu_free = (1.0 - m.cpu).clamp(0.0, 1.0);
        let ram_free = m.ram_free_mb.unwrap_or(0.0);
        let gpu_free = m.gpu_free.unwrap_or(0.0);
        let io = m.io_pressure.unwrap_or(0.0);
        let fits = cpu_free >= req.cpu_req
            && ram_free >= req.ram_req_mb
            && req.gpu_req.is_none_or(|g| gpu_free >= g)
            && req.max_latency_ms.is_none_or(|l| m.latency_ms <= l)
            && req.io_tolerance.is_none_or(|t| io <= t);
        if !fits {
            continue;
        }
        candidates += 1;
        // Headroom after placing the workload, each term in 0–1.
        let ram_term = if ram_free > 0.0 { (ram_free - req.ram_req_mb) / ram_free } else { 0.0 };
        let latency_term = 1.0 / (1.0 + m.latency_ms / 10.0);
        let score = w.w_cpu * (cpu_free - req.cpu_req)
            + w.w_ram * ram_term
            + w.w_gpu * (gpu_free - req.gpu_req.unwrap_or(0.0))
            + w.w_latency * latency_term
            + w.w_io * (1.0 - io);
        let better = match &best {
            None => true,
            Some(b) => score > b.score || (score == b.score && node.id < b.node),
        };
        if better {
            best = Some(Choice { node: node.id.clone(), score });
        }
    }
    (best, candidates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Health, Node};

    fn state(ids: &[&str]) -> State {
        let mut s = State::default();
        for id in ids {
            s.nodes.insert(
                id.to_string(),
                Node {
                    id: id.to_string(),
                    ip: "192.0.2.1".parse().unwrap(),
                    region: "r".into(),
                    site: "s".into(),
                    capacity: 1,
                    health: Health::Up,
                    maintenance: None,
                    revision: 1,
                },
            );
        }
        s
    }

    fn m(cpu: f64, ram: f64, latency: f64) -> NodeMetrics {
        NodeMetrics { cpu, latency_ms: latency, ram_free_mb: Some(ram), ..Default::default() }
    }

    #[test]
    fn filters_then_scores() {
        let s = state(&["a", "b", "c"]);
        let metrics: HashMap<_, _> =
            [("a".into(), m(0.9, 8192.0, 1.0)), ("b".into(), m(0.2, 8192.0, 5.0)), ("c".into(), m(0.1, 512.0, 1.0))]
                .into();
        let w = SchedulerWeights::default();
        let req = Request { cpu_req: 0.2, ram_req_mb: 1024.0, max_latency_ms: Some(10.0), ..Default::default() };
        let (choice, n) = schedule(&s, &metrics, &w, &req);
        // a lacks CPU, c lacks RAM.
        assert_eq!((choice.unwrap().node.as_str(), n), ("b", 1));
        let strict = Request { max_latency_ms: Some(2.0), ..req };
        assert!(schedule(&s, &metrics, &w, &strict).0.is_none());
    }
}

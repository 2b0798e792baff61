//! timeline.html: the operations of each client thread (and change-feed consumer) as bars (green ok, red fail, orange
//! indeterminate) over the faults as shaded bands. Hover a bar for the operation.

use std::fmt::Write;

use super::faults::Record;
use crate::history::{self, Event, Type};

const WIDTH: f64 = 1600.0;
const LANE: f64 = 14.0;
const TOP: f64 = 40.0;
const LEFT: f64 = 60.0;

pub fn render(events: &[Event], faults: &[Record], lanes: u64, title: &str) -> String {
    let ops = history::pair(events).unwrap_or_default();
    let end_ns = events.iter().map(|e| e.time).max().unwrap_or(1).max(1) as f64;
    let fault_end = faults.iter().filter_map(|f| f.healed.or(f.started)).fold(0.0, f64::max) * 1e9;
    let span = end_ns.max(fault_end).max(1.0);
    let x = |ns: f64| LEFT + ns / span * (WIDTH - LEFT - 10.0);
    let threads = lanes.max(1);
    // The change feed's consumers and the action queue's workers get a lane each, below
    // the client threads.
    let consumers = super::changefeed::CONSUMERS.len() as u64;
    let lane_of = |process: u64| match (super::changefeed::consumer_lane(process), super::actions::worker_lane(process))
    {
        (Some(k), _) => threads + k,
        (None, Some(k)) => threads + consumers + k,
        (None, None) => process % threads,
    };
    let lanes = ops.iter().map(|o| lane_of(o.process) + 1).max().unwrap_or(0).max(threads);
    let height = TOP + lanes as f64 * LANE + 40.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    for f in faults {
        let Some(start) = f.started else { continue };
        let stop = f.healed.unwrap_or(span / 1e9);
        let (x0, x1) = (x(start * 1e9), x(stop * 1e9));
        let _ = write!(
            svg,
            r##"<rect x="{x0:.1}" y="{}" width="{:.1}" height="{:.1}" fill="#8888ff" opacity="0.18"><title>{}</title></rect>"##,
            TOP - 4.0,
            (x1 - x0).max(1.0),
            lanes as f64 * LANE + 8.0,
            escape(&f.description)
        );
        let _ = write!(
            svg,
            r#"<text x="{x0:.1}" y="{}">{}</text>"#,
            TOP - 8.0 - (f.index % 2) as f64 * 12.0,
            escape(&short(&f.description))
        );
    }
    for lane in 0..lanes {
        let y = TOP + lane as f64 * LANE;
        let name = match lane.checked_sub(threads) {
            Some(k) if k >= consumers => format!("worker w{}", k - consumers + 1),
            Some(k) => super::changefeed::CONSUMERS.get(k as usize).map_or("feed".into(), |(r, n)| format!("{r}-{n}")),
            None => format!("thread {lane}"),
        };
        let _ = write!(svg, r#"<text x="4" y="{:.1}">{name}</text>"#, y + LANE - 4.0);
    }
    for op in &ops {
        let end = op.complete_index.map(|i| events[i].time).unwrap_or(span as u64) as f64;
        let color = match op.outcome {
            Type::Ok => "#2a9d3a",
            Type::Fail => "#d33",
            _ => "#f0a020",
        };
        let y = TOP + lane_of(op.process) as f64 * LANE;
        let (x0, x1) = (x(op.invoke_time as f64), x(end));
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}</title></rect>"#,
            y + 1.0,
            (x1 - x0).max(0.8),
            LANE - 3.0,
            escape(&op.to_string())
        );
    }
    let axis_y = TOP + lanes as f64 * LANE + 20.0;
    let seconds = (span / 1e9).ceil() as u64;
    let step = (seconds / 20).max(1);
    for s in (0..=seconds).step_by(step as usize) {
        let _ = write!(svg, r#"<text x="{:.1}" y="{axis_y:.1}">{s}s</text>"#, x(s as f64 * 1e9));
    }
    svg.push_str("</svg>");
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body>\
         <h3>{t}</h3><p>green: ok, red: fail, orange: indeterminate; blue bands: faults (hover for details)</p>{svg}</body></html>\n",
        t = escape(title)
    )
}

fn short(s: &str) -> String {
    let s = s.split(" (drops").next().unwrap_or(s);
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

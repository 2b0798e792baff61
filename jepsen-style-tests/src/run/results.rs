//! The verdict of a run and results.json: the checkers on the history, coverage,
//! convergence, panics. A harness failure never gets here (it is always "unknown").

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::checks::{self, Convergence, Coverage};
use super::faults::Record;
use super::RunArgs;
use crate::check::{check_events, Workload};
use crate::checker::{Report, Validity};
use crate::history::{Event, Type, F};

pub struct Inputs<'a> {
    pub workloads: &'a [Workload],
    pub events: &'a [Event],
    pub faults: &'a [Record],
    pub convergence: Convergence,
    pub panics: Vec<String>,
    pub unexpected_exits: Vec<String>,
    pub budget: Duration,
    pub final_heal: f64,
    /// The DNS workload's log, when it ran.
    pub dns: Option<&'a [crate::checker::dns::DnsEvent]>,
    /// The lossy nemesis's log of the members' leader and term, when it ran.
    pub leadership: Option<&'a [crate::checker::leadership::LeadershipEvent]>,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub valid: Validity,
    /// One line per reason the run is not valid.
    pub problems: Vec<String>,
    pub checkers: Vec<Report>,
    pub coverage: Vec<Coverage>,
    pub convergence: Convergence,
    pub panics: Vec<String>,
    pub unexpected_exits: Vec<String>,
    pub operations: serde_json::Value,
    pub final_heal: f64,
}

impl Outcome {
    pub fn judge(i: Inputs) -> Outcome {
        let mut problems: Vec<(Validity, String)> = Vec::new();
        let mut checkers = Vec::new();
        for &w in i.workloads {
            let events: Vec<Event> = i.events.iter().filter(|e| w.owns(&e.key)).cloned().collect();
            match check_events(w, &events, i.budget) {
                Ok(report) => {
                    if report.valid != Validity::Valid {
                        problems.push((report.valid, format!("{}: {}", report.checker, report.summary)));
                    }
                    checkers.push(report);
                }
                Err(e) => problems.push((Validity::Unknown, format!("{} history: {e}", w.name()))),
            }
        }
        let mut dns_ok = Vec::new();
        if let Some(dns) = i.dns {
            let report = crate::checker::dns::check(dns);
            if report.valid != Validity::Valid {
                problems.push((report.valid, format!("{}: {}", report.checker, report.summary)));
            }
            checkers.push(report);
            for e in dns {
                if let crate::checker::dns::DnsEvent::Query { sent, time, rcode, answer, .. } = e {
                    if rcode.as_deref() == Some("NOERROR") && !answer.is_empty() {
                        dns_ok.push((*sent, *time));
                    }
                }
            }
        }
        // Judged only when a lossy fault fired: a skipped one is reported by coverage.
        if let Some(log) = i.leadership.filter(|l| crate::checker::leadership::has_window(l)) {
            let report = crate::checker::leadership::check(log);
            if report.valid != Validity::Valid {
                problems.push((report.valid, format!("{}: {}", report.checker, report.summary)));
            }
            checkers.push(report);
        }
        // DNS answers count as progress under a fault only when DNS is the only workload:
        // with register or set, those must make progress themselves.
        let extra = if i.workloads.is_empty() { &dns_ok[..] } else { &[] };
        let coverage = checks::coverage(i.faults, i.events, extra);
        for c in coverage.iter().filter(|c| !c.passed) {
            let why = if !c.errors.is_empty() {
                format!("failed: {}", c.errors.join("; "))
            } else if !c.fired {
                "did not fire".to_string()
            } else if !c.healed {
                "was not healed".to_string()
            } else {
                "no operation succeeded while it was active".to_string()
            };
            problems.push((Validity::Unknown, format!("coverage: fault {} ({}) {why}", c.fault, c.description)));
        }
        for c in coverage.iter().filter(|c| c.expect_no_writes && c.ok_writes_during > 0) {
            problems.push((
                Validity::Invalid,
                format!(
                    "{} writes were acknowledged during fault {} ({}), while no quorum was up",
                    c.ok_writes_during, c.fault, c.description
                ),
            ));
        }
        if !i.convergence.converged {
            problems
                .push((Validity::Invalid, format!("no convergence after the final heal: {}", i.convergence.message)));
        }
        for p in &i.panics {
            problems.push((Validity::Invalid, format!("panic: {p}")));
        }
        for e in &i.unexpected_exits {
            problems.push((Validity::Invalid, e.clone()));
        }
        let count = |t: Type| i.events.iter().filter(|e| e.kind == t).count();
        let gap = longest_write_gap(i.events, (i.final_heal * 1e9) as u64);
        if count(Type::Ok) + dns_ok.len() == 0 {
            problems.push((Validity::Unknown, "no operation succeeded at all".into()));
        }
        let valid = problems.iter().map(|(v, _)| *v).max().unwrap_or(Validity::Valid);
        Outcome {
            valid,
            problems: problems.into_iter().map(|(_, p)| p).collect(),
            checkers,
            coverage,
            convergence: i.convergence,
            panics: i.panics,
            unexpected_exits: i.unexpected_exits,
            operations: json!({
                "invoked": count(Type::Invoke), "ok": count(Type::Ok),
                "fail": count(Type::Fail), "info": count(Type::Info), "dns_answered": dns_ok.len(),
                "longest_write_gap": gap.map(|(from, to)| json!({
                    "seconds": (to - from) as f64 / 1e9, "from": from as f64 / 1e9, "to": to as f64 / 1e9,
                })),
            }),
            final_heal: i.final_heal,
        }
    }
}

/// The longest stretch, from the first acknowledged write to `until` (the final heal), in
/// which no write (write, cas, add, ack, submit, complete) was acknowledged, in nanoseconds: reported, not a
/// verdict (a majority down has one by design), but a leader that takes no writes shows here.
pub fn longest_write_gap(events: &[Event], until: u64) -> Option<(u64, u64)> {
    let mut times: Vec<u64> = events
        .iter()
        .filter(|e| {
            e.kind == Type::Ok
                && matches!(e.f, F::Write | F::Cas | F::Add | F::Ack | F::Submit | F::Complete)
                && e.time <= until
        })
        .map(|e| e.time)
        .collect();
    times.sort_unstable();
    times.push(until);
    times.windows(2).map(|w| (w[0], w[1])).max_by_key(|(a, b)| b - a)
}

pub fn print(o: &Outcome) {
    println!("  operations: {}", o.operations);
    if let Some(gap) = o.operations.get("longest_write_gap").filter(|g| !g.is_null()) {
        println!(
            "  longest stretch without an acknowledged write: {:.1}s ({:.1}s .. {:.1}s)",
            gap["seconds"].as_f64().unwrap_or(0.0),
            gap["from"].as_f64().unwrap_or(0.0),
            gap["to"].as_f64().unwrap_or(0.0)
        );
    }
    for c in &o.coverage {
        let mark = if c.passed { "ok " } else { "BAD" };
        if c.expect_no_writes {
            println!(
                "  [{mark}] fault {}: {} ({} ok operations, {} ok writes during it; no write can succeed)",
                c.fault, c.description, c.ok_during, c.ok_writes_during
            );
        } else {
            println!("  [{mark}] fault {}: {} ({} ok operations during it)", c.fault, c.description, c.ok_during);
        }
    }
    for r in &o.checkers {
        println!("  {}", r.render_limited(3).trim_end().replace('\n', "\n  "));
    }
    for p in &o.problems {
        println!("  problem: {p}");
    }
    let verdict = match o.valid {
        Validity::Valid => "VALID",
        Validity::Invalid => "INVALID (anomaly found)",
        Validity::Unknown => "UNKNOWN (no verdict; not a pass)",
    };
    println!("jepsen run: {verdict}");
}

pub fn write(dir: &Path, o: &Outcome, args: &RunArgs, seed: u64) -> Result<(), String> {
    let mut value = serde_json::to_value(o).map_err(|e| format!("cannot serialise the results: {e}"))?;
    if let Some(map) = value.as_object_mut() {
        map.insert("seed".into(), json!(seed));
        map.insert("reproduce".into(), json!(super::reproduce_line(args, seed)));
        map.insert(
            "args".into(),
            json!({"time": args.time, "nemesis": args.nemesis, "workload": args.workload, "peers": args.peers,
                   "concurrency": args.concurrency, "rate": args.rate, "stale_reads": args.stale_reads,
                   "without_pre_vote": args.without_pre_vote}),
        );
    }
    let path = dir.join("results.json");
    std::fs::write(&path, format!("{value:#}\n")).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// UTC now as `YYYYMMDD-HHMMSS`.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format_utc(secs)
}

fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_longest_stretch_without_an_acknowledged_write() {
        use crate::history::{Event, Type, F};
        let ok = |f: F, t: u64| Event::new(1, Type::Ok, f, "k", serde_json::Value::Null, t);
        let events = vec![ok(F::Write, 10), ok(F::Read, 50), ok(F::Ack, 20), ok(F::Add, 90), ok(F::Cas, 200)];
        assert_eq!(super::longest_write_gap(&events, 150), Some((20, 90)));
        assert_eq!(super::longest_write_gap(&events, 400), Some((200, 400)));
        assert_eq!(super::longest_write_gap(&[], 400), None);
    }

    #[test]
    fn utc_timestamps() {
        assert_eq!(super::format_utc(0), "19700101-000000");
        assert_eq!(super::format_utc(951_782_400 + 3_661), "20000229-010101");
        assert_eq!(super::format_utc(1_767_225_599), "20251231-235959");
    }
}

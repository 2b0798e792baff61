//! The membership nemesis: a spare peer (its own namespace, fresh data, not a member) is
//! started and added under load with `POST /v1/cluster/peers`, which makes it a learner,
//! catches it up and promotes it to voter (3 -> 4 voters, or 5 -> 6); at the heal it is
//! removed with `DELETE /v1/cluster/peers/ID` and stopped for good. Clients keep talking
//! to the members throughout.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http;
use super::peers::{http_addr, http_url, Peers};

/// Adding waits for the learner to catch up and for two membership changes to commit.
const ADD_TIMEOUT: Duration = Duration::from_secs(30);
const REMOVE_TIMEOUT: Duration = Duration::from_secs(20);
const START_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

/// Starts `spare` and adds it through member `via`; returns the membership entry's index.
pub fn add(peers: &mut Peers, spare: u64, via: u64) -> Result<u64, String> {
    peers.start(spare)?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !http::get(http_addr(spare), "/health", Duration::from_secs(1)).is_ok_and(|r| r.status == 200) {
        if Instant::now() > deadline {
            return Err(format!("spare peer {spare} did not answer /health within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(POLL);
    }
    let body = json!({ "url": http_url(spare) });
    let r = http::post(http_addr(via), "/v1/cluster/peers", &body, ADD_TIMEOUT)
        .map_err(|e| format!("POST /v1/cluster/peers on peer {via}: {e}"))?;
    if r.status != 200 {
        return Err(format!("POST /v1/cluster/peers on peer {via} answered {}", r.describe()));
    }
    let index = r.body.get("log_index").and_then(Value::as_u64).unwrap_or(0);
    if !members_of(via)?.contains(&spare) {
        return Err(format!("peer {via} does not list peer {spare} among the voters after adding it"));
    }
    Ok(index)
}

/// Removes `spare` through `via` (or, when `via` does not answer, any other member), waits
/// until every member no longer lists it, and stops it.
pub fn remove(peers: &mut Peers, spare: u64, via: u64) -> Result<u64, String> {
    let members = peers.ids();
    let mut order = vec![via];
    order.extend(members.iter().copied().filter(|&m| m != via));
    let mut errors = Vec::new();
    let mut index = None;
    for m in order {
        match http::request(http_addr(m), "DELETE", &format!("/v1/cluster/peers/{spare}"), None, REMOVE_TIMEOUT) {
            Ok(r) if r.status == 200 => {
                index = r.body.get("log_index").and_then(Value::as_u64);
                break;
            }
            Ok(r) => errors.push(format!("peer {m}: {}", r.describe())),
            Err(e) => errors.push(format!("peer {m}: {e}")),
        }
    }
    let Some(index) = index else {
        return Err(format!("DELETE /v1/cluster/peers/{spare} failed everywhere: {}", errors.join("; ")));
    };
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    for m in members {
        while !members_of(m).is_ok_and(|v| !v.contains(&spare)) {
            if Instant::now() > deadline {
                return Err(format!("peer {m} still lists peer {spare} {REMOVE_TIMEOUT:?} after its removal"));
            }
            std::thread::sleep(POLL);
        }
    }
    peers.retire(spare, Duration::from_secs(5))?;
    Ok(index)
}

/// The voters and learners peer `id` sees.
pub fn members_of(id: u64) -> Result<Vec<u64>, String> {
    let r = http::get(http_addr(id), "/v1/cluster", Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let ids = |field: &str| -> Vec<u64> {
        r.body
            .get(field)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|m| m.get("id")?.as_u64()).collect())
            .unwrap_or_default()
    };
    let mut all = ids("members");
    all.extend(ids("learners"));
    Ok(all)
}

//! The membership nemesis: a spare peer (its own namespace, fresh data, not a member) is
//! started and added under load with `POST /v1/cluster/peers`, which makes it a learner,
//! catches it up and promotes it to voter (3 -> 4 voters, or 5 -> 6); at the heal it is
//! removed with `DELETE /v1/cluster/peers/ID` and stopped for good. Clients keep talking
//! to the members throughout.
//!
//! Its `replace` shape removes an original member instead (sometimes the leader): the
//! spare is added as above, then the member is removed, stopped and its data wiped; at the
//! heal it is started fresh and added back, and the spare removed, so the cluster ends with
//! its original ids.

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
    await_health(spare)?;
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
    let index = delete(spare, via, &members)?;
    await_gone(spare, &members)?;
    peers.retire(spare, Duration::from_secs(5))?;
    Ok(index)
}

/// The `replace` fault: adds `spare` through `via`, removes the original member `victim`
/// (through `via`, else another member that stays), waits until every peer that stays no
/// longer lists it, stops it and wipes its data.
pub fn replace(peers: &mut Peers, spare: u64, victim: u64, via: u64) -> Result<String, String> {
    let added = add(peers, spare, via)?;
    let mut staying: Vec<u64> = peers.ids().into_iter().filter(|&m| m != victim).collect();
    staying.push(spare);
    let removed = delete(victim, via, &staying)?;
    await_gone(victim, &staying)?;
    peers.retire(victim, Duration::from_secs(5))?;
    let data = peers.data_dir(victim);
    std::fs::remove_dir_all(&data).map_err(|e| format!("cannot wipe {}: {e}", data.display()))?;
    Ok(format!("spare added at entry {added}, peer {victim} removed at entry {removed}, stopped, data wiped"))
}

/// The heal of `replace`: starts `victim` fresh and adds it back through `via` (else another
/// member), then removes `spare` and stops it.
pub fn restore(peers: &mut Peers, victim: u64, spare: u64, via: u64) -> Result<String, String> {
    peers.start(victim)?;
    await_health(victim)?;
    let body = json!({ "url": http_url(victim) });
    let mut order = vec![via, spare];
    order.extend(peers.ids().into_iter().filter(|&m| m != via && m != victim));
    let mut errors = Vec::new();
    let mut added = None;
    for m in order {
        match http::post(http_addr(m), "/v1/cluster/peers", &body, ADD_TIMEOUT) {
            Ok(r) if r.status == 200 => {
                added = Some((m, r.body.get("log_index").and_then(Value::as_u64).unwrap_or(0)));
                break;
            }
            Ok(r) => errors.push(format!("peer {m}: {}", r.describe())),
            Err(e) => errors.push(format!("peer {m}: {e}")),
        }
    }
    let Some((through, added)) = added else {
        return Err(format!("POST /v1/cluster/peers of peer {victim} failed everywhere: {}", errors.join("; ")));
    };
    if !members_of(through)?.contains(&victim) {
        return Err(format!("peer {through} does not list peer {victim} among the voters after adding it back"));
    }
    let removed = remove(peers, spare, via)?;
    Ok(format!("peer {victim} added back fresh at entry {added}, spare {spare} removed at entry {removed}"))
}

/// `DELETE /v1/cluster/peers/ID` through `via`, else through the other `members` (never
/// through `id` itself); returns the membership entry's index.
fn delete(id: u64, via: u64, members: &[u64]) -> Result<u64, String> {
    let mut order = vec![via];
    order.extend(members.iter().copied().filter(|&m| m != via && m != id));
    let mut errors = Vec::new();
    for m in order {
        match http::request(http_addr(m), "DELETE", &format!("/v1/cluster/peers/{id}"), None, REMOVE_TIMEOUT) {
            Ok(r) if r.status == 200 => return Ok(r.body.get("log_index").and_then(Value::as_u64).unwrap_or(0)),
            Ok(r) => errors.push(format!("peer {m}: {}", r.describe())),
            Err(e) => errors.push(format!("peer {m}: {e}")),
        }
    }
    Err(format!("DELETE /v1/cluster/peers/{id} failed everywhere: {}", errors.join("; ")))
}

/// Waits until none of `members` lists `id`.
fn await_gone(id: u64, members: &[u64]) -> Result<(), String> {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    for &m in members {
        while !members_of(m).is_ok_and(|v| !v.contains(&id)) {
            if Instant::now() > deadline {
                return Err(format!("peer {m} still lists peer {id} {REMOVE_TIMEOUT:?} after its removal"));
            }
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

fn await_health(id: u64) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while !http::get(http_addr(id), "/health", Duration::from_secs(1)).is_ok_and(|r| r.status == 200) {
        if Instant::now() > deadline {
            return Err(format!("peer {id} did not answer /health within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(POLL);
    }
    Ok(())
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

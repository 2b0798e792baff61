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

use super::faults::leader;
use super::http;
use super::peers::{http_addr, http_url, Peers, State};

/// Adding waits for the learner to catch up and for two membership changes to commit.
const ADD_TIMEOUT: Duration = Duration::from_secs(30);
/// One removal request: it answers once the change committed.
const REMOVE_REQUEST: Duration = Duration::from_secs(20);
/// How long a removal is retried. It covers a majority of the voters being down when it
/// begins (the heal restarts them: a few seconds each), an election, and the new leader
/// committing the change.
const REMOVE_DEADLINE: Duration = Duration::from_secs(60);
const START_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

/// Starts `spare` and adds it through member `via`; returns the membership entry's index.
pub fn add(peers: &mut Peers, spare: u64, via: u64) -> Result<u64, String> {
    peers.start(spare)?;
    peers.await_answer(spare, START_TIMEOUT)?;
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

/// Removes `spare` (through `via` first, else any other member that is up) and stops it.
///
/// First every voter the nemesis took down is brought back, so that a quorum of the
/// current voters (the spare counts) runs; then the removal is retried until
/// [`REMOVE_DEADLINE`], and the members that are up must no longer list it. A spare that
/// is no member (its addition failed half way) is only stopped. Returns the membership
/// entry's index, or `None` when there was nothing to remove.
pub fn remove(peers: &mut Peers, spare: u64, via: u64) -> Result<Option<u64>, String> {
    let deadline = Instant::now() + REMOVE_DEADLINE;
    await_quorum(peers, deadline)?;
    let index = delete(spare, via, &up(peers), deadline)?;
    await_gone(spare, &up(peers), deadline)?;
    peers.retire(spare, Duration::from_secs(5))?;
    Ok(index)
}

/// The `replace` fault: adds `spare` through `via`, removes the original member `victim`
/// (through `via`, else another member that stays), waits until every peer that stays no
/// longer lists it, stops it and wipes its data.
pub fn replace(peers: &mut Peers, spare: u64, victim: u64, via: u64) -> Result<String, String> {
    let added = add(peers, spare, via)?;
    let deadline = Instant::now() + REMOVE_DEADLINE;
    let mut staying: Vec<u64> = up(peers).into_iter().filter(|&m| m != victim).collect();
    staying.push(spare);
    let removed = delete(victim, via, &staying, deadline)?
        .ok_or_else(|| format!("peer {victim} was no member when the nemesis removed it"))?;
    await_gone(victim, &staying, deadline)?;
    retire_and_wipe(peers, victim)?;
    Ok(format!("spare added at entry {added}, peer {victim} removed at entry {removed}, stopped, data wiped"))
}

/// The heal of `replace`, from whatever state the fault reached: `victim` is added back
/// fresh unless it is still a member, and `spare` is removed and stopped.
pub fn restore(peers: &mut Peers, victim: u64, spare: u64, via: u64) -> Result<String, String> {
    let mut done = Vec::new();
    if let Some(entry) = readd(peers, victim, via)? {
        done.push(format!("peer {victim} added back fresh at entry {entry}"));
    }
    match remove(peers, spare, via)? {
        Some(entry) => done.push(format!("spare {spare} removed at entry {entry}")),
        None => done.push(format!("spare {spare} stopped (it was no member)")),
    }
    Ok(done.join(", "))
}

/// Adds member `victim` back fresh (stopped, data wiped, started, added through `via` or
/// another member) unless the cluster still lists it; returns the entry that added it.
pub fn readd(peers: &mut Peers, victim: u64, via: u64) -> Result<Option<u64>, String> {
    let deadline = Instant::now() + REMOVE_DEADLINE;
    await_quorum(peers, deadline)?;
    let others: Vec<u64> = up(peers).into_iter().filter(|&m| m != victim).collect();
    if voters(&others)?.contains(&victim) {
        return Ok(None);
    }
    if peers.state(victim) != Some(State::Spare) {
        retire_and_wipe(peers, victim)?;
    }
    peers.start(victim)?;
    peers.await_answer(victim, START_TIMEOUT)?;
    let body = json!({ "url": http_url(victim) });
    let mut order = vec![via];
    order.extend(others.iter().copied().filter(|&m| m != via));
    let mut errors = Vec::new();
    for m in order {
        match http::post(http_addr(m), "/v1/cluster/peers", &body, ADD_TIMEOUT) {
            Ok(r) if r.status == 200 => {
                if !members_of(m)?.contains(&victim) {
                    return Err(format!("peer {m} does not list peer {victim} among the voters after adding it back"));
                }
                return Ok(Some(r.body.get("log_index").and_then(Value::as_u64).unwrap_or(0)));
            }
            Ok(r) => errors.push(format!("peer {m}: {}", r.describe())),
            Err(e) => errors.push(format!("peer {m}: {e}")),
        }
    }
    Err(format!("POST /v1/cluster/peers of peer {victim} failed everywhere: {}", errors.join("; ")))
}

/// Stops a removed member for good and wipes its data, so it comes back as a new peer.
fn retire_and_wipe(peers: &mut Peers, id: u64) -> Result<(), String> {
    peers.retire(id, Duration::from_secs(5))?;
    let data = peers.data_dir(id);
    match std::fs::remove_dir_all(&data) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot wipe {}: {e}", data.display())),
        _ => Ok(()),
    }
}

/// Every peer that runs (members and spares), not killed or paused.
fn up(peers: &Peers) -> Vec<u64> {
    peers.all_ids().into_iter().filter(|&p| peers.is_running(p)).collect()
}

/// The voters as the leader among `asked` (else the first that answers) lists them.
fn voters(asked: &[u64]) -> Result<Vec<u64>, String> {
    let mut order: Vec<u64> = leader(asked).into_iter().collect();
    order.extend(asked);
    order.iter().find_map(|&p| members_of(p).ok()).ok_or_else(|| format!("none of peers {asked:?} answered"))
}

/// Brings back every peer the nemesis took down, then waits (until `deadline`) for a
/// majority of the current voters to answer, so that a membership change can commit.
fn await_quorum(peers: &mut Peers, deadline: Instant) -> Result<(), String> {
    let back = peers.heal_all()?;
    if !back.is_empty() {
        println!("  membership: brought peers {back:?} back up first, for a quorum");
    }
    loop {
        let running = up(peers);
        let current = voters(&running).unwrap_or_else(|_| peers.ids());
        let answering = current
            .iter()
            .filter(|&&v| http::get(http_addr(v), "/health", Duration::from_secs(1)).is_ok_and(|r| r.status == 200))
            .count();
        if answering * 2 > current.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {answering} of the voters {current:?} answered within {REMOVE_DEADLINE:?}: no quorum to change \
                 the membership"
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// `DELETE /v1/cluster/peers/ID` through `via`, else through the other `members` (never
/// through `id` itself), retried until `deadline`. Returns the membership entry's index,
/// or `None` when the cluster answers that `id` is no member.
fn delete(id: u64, via: u64, members: &[u64], deadline: Instant) -> Result<Option<u64>, String> {
    let mut order = vec![via];
    order.extend(members.iter().copied().filter(|&m| m != via && m != id));
    let path = format!("/v1/cluster/peers/{id}");
    loop {
        let mut errors = Vec::new();
        for &m in &order {
            match http::request(http_addr(m), "DELETE", &path, None, REMOVE_REQUEST) {
                Ok(r) if r.status == 200 => {
                    return Ok(Some(r.body.get("log_index").and_then(Value::as_u64).unwrap_or(0)))
                }
                Ok(r) if (400..500).contains(&r.status) && r.describe().contains("not a member") => return Ok(None),
                Ok(r) => errors.push(format!("peer {m}: {}", r.describe())),
                Err(e) => errors.push(format!("peer {m}: {e}")),
            }
            if Instant::now() > deadline {
                return Err(format!("DELETE {path} failed everywhere for {REMOVE_DEADLINE:?}: {}", errors.join("; ")));
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until none of `members` lists `id`.
fn await_gone(id: u64, members: &[u64], deadline: Instant) -> Result<(), String> {
    for &m in members.iter().filter(|&&m| m != id) {
        while !members_of(m).is_ok_and(|v| !v.contains(&id)) {
            if Instant::now() > deadline {
                return Err(format!("peer {m} still lists peer {id} after its removal"));
            }
            std::thread::sleep(POLL);
        }
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

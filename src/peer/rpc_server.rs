//! The listener on `--raft-addr`: Raft's own messages go to Raft, forwarded client
//! requests to the [`Peer`].
//!
//! The port is reachable by anyone who can reach the peer, so what a stranger can hold of
//! it is bounded: the handshake must finish within `raft.handshake_timeout_ms`, at most
//! `raft.max_connections` connections are open at once (past it a new one is closed at
//! once), a connection that carries no request for `raft.idle_timeout_ms` is closed (the
//! dialing peer opens a new one when it needs it), and accept errors back off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::RaftError;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{election, Peer};
use crate::config::RaftConfig;
use crate::raft::failpoint;
use crate::raft::rpc::{Connection, Forward, Request, Response};

/// The bounds of the peer RPC listener.
#[derive(Debug, Clone)]
pub struct RpcLimits {
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl RpcLimits {
    pub fn from_config(c: &RaftConfig) -> Self {
        Self {
            handshake_timeout: Duration::from_millis(c.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
            max_connections: c.max_connections,
        }
    }
}

pub async fn serve_rpc(listener: TcpListener, peer: Arc<Peer>, limits: RpcLimits, shutdown: CancellationToken) {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    while let Some((stream, addr)) = crate::net::accept(&listener, "peer RPC", &shutdown).await {
        let Ok(place) = places.clone().try_acquire_owned() else {
            tracing::debug!(%addr, max = limits.max_connections, "refused a peer connection: too many open");
            continue;
        };
        let peer = peer.clone();
        let shutdown = shutdown.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _place = place;
            let handshake = tokio::time::timeout(limits.handshake_timeout, Connection::accept(stream, peer.secret()));
            let conn = match handshake.await {
                Ok(Ok(Some(conn))) => conn,
                Ok(Ok(None)) => {
                    tracing::warn!(%addr, "refused a peer connection: wrong cluster secret");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "peer handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%addr, "peer handshake timed out");
                    return;
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = serve_connection(conn, &peer, limits.idle_timeout) => {}
            }
        });
    }
}

/// How many times per idle timeout a connection checks whether it has gone idle.
const IDLE_CHECKS: u32 = 4;

async fn serve_connection(mut conn: Connection, peer: &Peer, idle_timeout: Duration) {
    // One timer per connection, checked a few times per idle timeout, rather than a timer
    // armed and cancelled around every message: a busy connection carries thousands of
    // messages a second. A connection is closed between `idle_timeout` and
    // `idle_timeout` + one check interval after its last answer.
    let mut check = tokio::time::interval((idle_timeout / IDLE_CHECKS).max(Duration::from_millis(1)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_answer = Instant::now();
    loop {
        // `recv` only awaits the framed stream's next frame, which keeps a partly read
        // frame in its buffer when the check below wins the race: no message is lost.
        let received = tokio::select! {
            received = conn.recv::<Request>() => received,
            _ = check.tick() => {
                if last_answer.elapsed() >= idle_timeout {
                    return;
                }
                continue;
            }
        };
        let request = match received {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "dropping peer connection");
                return;
            }
        };
        if let Some(fatal) = peer.raft_fatal() {
            // Raft has stopped (see `Peer::raft_fatal`): answer for it, without a log line per
            // message from openraft.
            let response = match request {
                Request::AppendEntries(_) => Response::AppendEntries(Err(RaftError::Fatal(fatal))),
                Request::Vote(_) => Response::Vote(Err(RaftError::Fatal(fatal))),
                Request::InstallSnapshot(_) => Response::InstallSnapshot(Err(RaftError::Fatal(fatal))),
                Request::PreVote(_) => Response::PreVote(false),
                Request::Forward(f) => Response::Forward(peer.serve_forwarded(f).await),
            };
            if conn.send(&response).await.is_err() {
                return;
            }
            last_answer = Instant::now();
            continue;
        }
        let response = match request {
            Request::AppendEntries(r) => {
                let answer = peer.raft.append_entries(r).await;
                // Any answer but "your term is over" means the sender is this peer's leader.
                if matches!(&answer, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_))) {
                    peer.touch_leader_contact();
                }
                Response::AppendEntries(answer)
            }
            Request::Vote(r) => {
                let answer = peer.raft.vote(r).await;
                if matches!(&answer, Ok(r) if r.vote_granted) {
                    peer.touch_leader_contact();
                }
                Response::Vote(answer)
            }
            Request::PreVote(r) => Response::PreVote(election::answer(peer, &r)),
            Request::InstallSnapshot(r) => {
                let answer = peer.raft.install_snapshot(r).await;
                if answer.is_ok() {
                    peer.touch_leader_contact();
                }
                Response::InstallSnapshot(answer)
            }
            Request::Forward(f) => {
                let late = serve_late(&f).await;
                let answer = peer.serve_forwarded(f).await;
                if late {
                    tracing::warn!(outcome = ?answer, "failpoint forwarded-heartbeats-late: the held batch was served");
                }
                Response::Forward(answer)
            }
        };
        if conn.send(&response).await.is_err() {
            return;
        }
        last_answer = Instant::now();
    }
}

/// The `forwarded-heartbeats-late` test hook (`raft/failpoint.rs`): holds the first
/// forwarded batch that carries heartbeats, as a network delivering it late would.
/// Returns whether it held this one.
async fn serve_late(request: &Forward) -> bool {
    let beats = match request {
        Forward::Heartbeats(beats) => beats.len(),
        Forward::AgedHeartbeats(beats) => beats.len(),
        Forward::TermHeartbeats(batch) => batch.beats.len(),
        _ => 0,
    };
    if beats == 0 || !failpoint::first_time(failpoint::FORWARDED_HEARTBEATS_LATE) {
        return false;
    }
    tracing::warn!(heartbeats = beats, late = ?failpoint::LATE, "failpoint forwarded-heartbeats-late fired");
    tokio::time::sleep(failpoint::LATE).await;
    true
}

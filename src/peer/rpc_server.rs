//! The listener on `--raft-addr`: Raft's own messages go to Raft, forwarded client
//! requests to the [`Peer`].

use std::sync::Arc;

use openraft::error::RaftError;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{election, Peer};
use crate::raft::rpc::{Connection, Request, Response};

pub async fn serve_rpc(listener: TcpListener, peer: Arc<Peer>, shutdown: CancellationToken) {
    loop {
        let (stream, addr) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a peer connection failed");
                    continue;
                }
            },
        };
        let peer = peer.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = match Connection::accept(stream, peer.secret()).await {
                Ok(Some(conn)) => conn,
                Ok(None) => {
                    tracing::warn!(%addr, "refused a peer connection: wrong cluster secret");
                    return;
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "peer handshake failed");
                    return;
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = serve_connection(conn, &peer) => {}
            }
        });
    }
}

async fn serve_connection(mut conn: Connection, peer: &Peer) {
    loop {
        let request: Request = match conn.recv().await {
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
            Request::Forward(f) => Response::Forward(peer.serve_forwarded(f).await),
        };
        if conn.send(&response).await.is_err() {
            return;
        }
    }
}

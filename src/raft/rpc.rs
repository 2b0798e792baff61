//! The peer-to-peer protocol on `--raft-addr`.
//!
//! TCP, one request at a time per connection. A connection opens with a challenge: the
//! server sends 32 random bytes, the client answers with HMAC-SHA256 of them under the
//! cluster secret, and the server answers one byte, 1 (accepted) or 0 (refused, then it
//! closes). The secret itself never crosses the wire. After that, requests and responses
//! are bincode values in length-prefixed frames.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::types::{LogId, PeerId, PeerInfo, TypeConfig};
use crate::dispatch::NodeMetrics;
use crate::state::{Command, Outcome};

/// The largest frame either side accepts: a snapshot chunk or a batch of log entries.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;
const NONCE_LEN: usize = 32;
const CONTEXT: &[u8] = b"switchboard-raft-v1";

/// The cluster secret; `None` only when a peer runs with `--insecure`.
pub type Secret = Option<Arc<[u8]>>;

type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<PeerId, E>;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<PeerId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    Forward(Forward),
    /// Would the receiver vote for this candidate now? Asked before an election; changes
    /// nothing on the receiver (`peer/election.rs`).
    PreVote(PreVote),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<PeerId>, RaftError>),
    Vote(Result<VoteResponse<PeerId>, RaftError>),
    InstallSnapshot(Result<InstallSnapshotResponse<PeerId>, RaftError<openraft::error::InstallSnapshotError>>),
    Forward(Result<Forwarded, ForwardError>),
    /// Whether the receiver would grant the vote.
    PreVote(bool),
}

/// A peer's question before it stands for election: would you vote for me in `term`, given
/// my last log id? The answer binds no one; the real vote follows only after a majority
/// said yes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVote {
    pub candidate: PeerId,
    /// The term the candidate would stand in: its current term + 1.
    pub term: u64,
    pub last_log_id: Option<LogId>,
}

/// What a peer that is not the leader hands to the leader on a client's behalf.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forward {
    /// Propose a command; answered with its outcome.
    Write(Command),
    /// Confirm leadership with a quorum; answered with the index a linearizable read must
    /// wait for.
    ReadIndex,
    /// Add a peer as learner, wait for it to catch up, promote it to voter.
    AddPeer { id: PeerId, info: PeerInfo },
    /// Remove a peer from the membership.
    RemovePeer { id: PeerId },
    /// Heartbeats accepted by another peer, for the leader's failure detector, as received
    /// now. Sent by earlier versions; still accepted.
    Heartbeats(Vec<(String, NodeMetrics)>),
    /// The leader's latest metrics of these nodes (empty: all).
    Metrics(Vec<String>),
    /// Heartbeats accepted by another peer, each with how long ago (ms) that peer received
    /// it when it sent them. The time on the network is not in it, so a batch delivered
    /// late is taken for fresher than it is: sent by the previous version, and by this one
    /// to a leader of that version only; still accepted, dated as before.
    AgedHeartbeats(Vec<AgedHeartbeat>),
    /// Heartbeats for the leader of one term, dated on that leader's clock
    /// (`peer/heartbeat.rs`); answered with `Forwarded::HeartbeatClock`, or refused with
    /// `NotLeader` by a peer that is not that leader in that term. Empty: a request for the
    /// leader's clock only.
    ///
    /// Added last, so every earlier variant keeps its encoding. A peer of an earlier
    /// version cannot decode it: it drops the connection without an answer (logged at
    /// debug), nothing else. A follower therefore sends its first batch for a leader and
    /// term empty, on a fresh connection: a connection closed in answer marks that leader,
    /// for that term, as one of the earlier version, which then gets `AgedHeartbeats`. An
    /// upgraded leader starts a new term and is asked again.
    TermHeartbeats(TermHeartbeats),
}

/// A batch of heartbeats for one leader in one term.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TermHeartbeats {
    /// The leader the follower addressed the batch to, and its term, as the follower knew
    /// them when it received these heartbeats.
    pub leader: PeerId,
    pub term: u64,
    pub beats: Vec<DatedHeartbeat>,
}

/// A heartbeat dated on the leader's clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatedHeartbeat {
    pub node: String,
    pub metrics: NodeMetrics,
    /// The leader's clock (microseconds since the leader started) when the follower
    /// received it, at the latest.
    pub at_us: u64,
}

/// A heartbeat a follower passes to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgedHeartbeat {
    pub node: String,
    pub metrics: NodeMetrics,
    /// Milliseconds between the follower receiving it and sending it on.
    pub age_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Forwarded {
    Write(Result<Outcome, crate::state::Error>),
    ReadIndex(u64),
    Membership {
        log_index: u64,
    },
    Accepted,
    Metrics(Vec<(String, NodeMetrics)>),
    /// The leader took a `TermHeartbeats` batch; its clock (microseconds since it started)
    /// just before it answered. Only ever sent in answer to `TermHeartbeats`.
    HeartbeatClock(u64),
}

/// Why the leader could not serve a forwarded request.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The receiver is not (or no longer) the leader; the sender should look again.
    #[error("peer is not the leader")]
    NotLeader { leader: Option<PeerId> },
    /// The request was refused for a reason the client must see.
    #[error("{0}")]
    Rejected(String),
    /// The leader could not finish the request; it may or may not have taken effect.
    #[error("{0}")]
    Unavailable(String),
}

/// An authenticated connection from this peer to another.
pub struct Connection {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_codec()
}

fn mac(secret: &Secret, nonce: &[u8]) -> [u8; 32] {
    let key: &[u8] = secret.as_deref().unwrap_or(&[]);
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(CONTEXT);
    mac.update(nonce);
    mac.finalize().into_bytes().into()
}

impl Connection {
    pub async fn connect(addr: &str, secret: &Secret, timeout: Duration) -> io::Result<Self> {
        tokio::time::timeout(timeout, Self::connect_inner(addr, secret))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr} timed out")))?
    }

    async fn connect_inner(addr: &str, secret: &Secret) -> io::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut nonce = [0u8; NONCE_LEN];
        stream.read_exact(&mut nonce).await?;
        stream.write_all(&mac(secret, &nonce)).await?;
        let mut verdict = [0u8; 1];
        stream.read_exact(&mut verdict).await?;
        if verdict[0] != 1 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{addr} refused this peer's cluster secret; set the same SWITCHBOARD_CLUSTER_SECRET on every peer"
                ),
            ));
        }
        Ok(Self { framed: Framed::new(stream, codec()) })
    }

    /// The server side of the handshake. Returns `None` when the client failed it.
    pub async fn accept(mut stream: TcpStream, secret: &Secret) -> io::Result<Option<Self>> {
        stream.set_nodelay(true)?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        stream.write_all(&nonce).await?;
        let mut answer = [0u8; 32];
        stream.read_exact(&mut answer).await?;
        let ok = match secret {
            None => true,
            Some(_) => {
                let key: &[u8] = secret.as_deref().unwrap_or(&[]);
                let mut check = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                check.update(CONTEXT);
                check.update(&nonce);
                check.verify_slice(&answer).is_ok()
            }
        };
        stream.write_all(&[ok as u8]).await?;
        Ok(ok.then(|| Self { framed: Framed::new(stream, codec()) }))
    }

    /// Whether the other side may still answer: false once it has closed the connection
    /// (a pooled connection to a peer that died or restarted).
    pub fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.framed.get_ref().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            && self.framed.read_buffer().is_empty()
    }

    pub async fn call(&mut self, request: &Request) -> io::Result<Response> {
        self.send(request).await?;
        self.recv().await?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the connection"))
    }

    pub async fn send<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        let bytes = bincode::serialize(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.framed.send(bytes::Bytes::from(bytes)).await
    }

    pub async fn recv<T: serde::de::DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        match self.framed.next().await {
            None => Ok(None),
            Some(frame) => {
                let frame = frame?;
                bincode::deserialize(&frame).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Forward` and `Forwarded` as the previous version declared them.
    #[derive(Debug, Serialize, Deserialize)]
    enum PreviousForward {
        Write(Command),
        ReadIndex,
        AddPeer { id: PeerId, info: PeerInfo },
        RemovePeer { id: PeerId },
        Heartbeats(Vec<(String, NodeMetrics)>),
        Metrics(Vec<String>),
        AgedHeartbeats(Vec<AgedHeartbeat>),
    }

    #[derive(Debug, Serialize, Deserialize)]
    enum PreviousForwarded {
        Write(Result<Outcome, crate::state::Error>),
        ReadIndex(u64),
        Membership { log_index: u64 },
        Accepted,
        Metrics(Vec<(String, NodeMetrics)>),
    }

    #[test]
    fn earlier_variants_keep_their_encoding_and_the_previous_version_cannot_decode_the_new_one() {
        let metrics = NodeMetrics { cpu: 0.5, latency_ms: 12.0, ..Default::default() };
        let aged = vec![AgedHeartbeat { node: "n1".into(), metrics: metrics.clone(), age_ms: 7 }];
        assert_eq!(encode(&Forward::AgedHeartbeats(aged.clone())), encode(&PreviousForward::AgedHeartbeats(aged)));
        assert_eq!(encode(&Forward::ReadIndex), encode(&PreviousForward::ReadIndex));
        assert_eq!(encode(&Forward::Metrics(vec!["n1".into()])), encode(&PreviousForward::Metrics(vec!["n1".into()])));
        assert_eq!(encode(&Forwarded::Accepted), encode(&PreviousForwarded::Accepted));

        let batch = TermHeartbeats {
            leader: 1,
            term: 3,
            beats: vec![DatedHeartbeat { node: "n1".into(), metrics, at_us: 1_000_000 }],
        };
        let new = bincode::serialize(&Request::Forward(Forward::TermHeartbeats(batch))).unwrap();
        let decoded: Result<Request, _> = bincode::deserialize(&new);
        assert!(
            matches!(decoded, Ok(Request::Forward(Forward::TermHeartbeats(b))) if b.term == 3 && b.beats.len() == 1)
        );
        // What a peer of the previous version finds in the frame: after the tag of
        // `Request::Forward`, a `Forward` it does not know.
        assert!(bincode::deserialize::<PreviousForward>(&new[4..]).is_err());
        let clock = bincode::serialize(&Forwarded::HeartbeatClock(5)).unwrap();
        assert!(bincode::deserialize::<PreviousForwarded>(&clock).is_err());
    }

    fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        bincode::serialize(value).unwrap()
    }
}

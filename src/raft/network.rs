//! openraft's network: one [`PeerClient`] per target, holding one authenticated
//! connection that is re-opened after any failure.

use std::io;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

use super::rpc::{Connection, Request, Response, Secret};
use super::types::{PeerId, PeerInfo, TypeConfig};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Network {
    secret: Secret,
}

impl Network {
    pub fn new(secret: Secret) -> Self {
        Self { secret }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: PeerId, node: &PeerInfo) -> PeerClient {
        PeerClient { target, node: node.clone(), secret: self.secret.clone(), conn: None }
    }
}

pub struct PeerClient {
    target: PeerId,
    node: PeerInfo,
    secret: Secret,
    conn: Option<Connection>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<PeerId, PeerInfo, RaftError<PeerId, E>>;

impl PeerClient {
    /// Sends one request within the deadline Raft gives; any failure drops the connection.
    async fn call<E: std::error::Error>(
        &mut self,
        request: Request,
        option: &RPCOption,
    ) -> Result<Response, RpcErr<E>> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => Connection::connect(&self.node.raft_addr, &self.secret, CONNECT_TIMEOUT)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?,
        };
        match tokio::time::timeout(option.hard_ttl(), conn.call(&request)).await {
            Ok(Ok(response)) => {
                self.conn = Some(conn);
                Ok(response)
            }
            Ok(Err(e)) => Err(RPCError::Network(NetworkError::new(&e))),
            Err(_) => Err(RPCError::Network(NetworkError::new(&io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from peer {} within {:?}", self.target, option.hard_ttl()),
            )))),
        }
    }

    fn remote<T, E: std::error::Error>(&self, result: Result<T, RaftError<PeerId, E>>) -> Result<T, RpcErr<E>> {
        result.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

fn unexpected<E: std::error::Error>(response: Response) -> RpcErr<E> {
    let e = io::Error::new(io::ErrorKind::InvalidData, format!("unexpected response {response:?}"));
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<PeerId>, RpcErr> {
        match self.call(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(r) => self.remote(r),
            other => Err(unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<PeerId>, RpcErr<InstallSnapshotError>> {
        match self.call(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(r) => self.remote(r),
            other => Err(unexpected(other)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<PeerId>, option: RPCOption) -> Result<VoteResponse<PeerId>, RpcErr> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(r) => self.remote(r),
            other => Err(unexpected(other)),
        }
    }
}

//! Group commit at the leader. Writes wait in a channel; the proposer takes every write
//! that is waiting (up to `max_batch`) into one log entry, and keeps at most
//! `max_in_flight` entries between proposal and commit. Under load, one fsync on each
//! peer then carries hundreds of writes; with one client, a write waits for nothing.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::metrics::Metrics;
use crate::raft::{PeerId, Raft};
use crate::state::{Batch, Command, Error as StateError, Outcome};

pub type Reply = Result<Result<Outcome, StateError>, ProposeError>;

#[derive(Debug, Clone)]
pub enum ProposeError {
    /// This peer is not the leader (any more); nothing was appended.
    NotLeader(Option<PeerId>),
    /// Raft failed after the entry may have been appended.
    Failed(String),
}

pub struct Pending {
    pub command: Command,
    pub reply: oneshot::Sender<Reply>,
}

pub fn spawn(raft: Raft, metrics: Arc<Metrics>, max_batch: usize, max_in_flight: usize) -> mpsc::Sender<Pending> {
    let (tx, rx) = mpsc::channel(max_batch * 4);
    tokio::spawn(run(raft, metrics, rx, max_batch, max_in_flight));
    tx
}

async fn run(
    raft: Raft,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    max_in_flight: usize,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut pending = vec![first];
        while pending.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            propose(&raft, &metrics, pending).await;
            drop(slot);
        });
    }
}

async fn propose(raft: &Raft, metrics: &Metrics, pending: Vec<Pending>) {
    let (commands, replies): (Vec<_>, Vec<_>) = pending.into_iter().map(|p| (p.command, p.reply)).unzip();
    metrics.proposals.inc();
    metrics.proposed_commands.inc_by(commands.len() as u64);
    metrics.batch_size.observe(commands.len() as f64);
    match raft.client_write(Batch { commands }).await {
        Ok(response) => {
            for (reply, result) in replies.into_iter().zip(response.data.results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(e) => {
            let error = match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeError::NotLeader(f.leader_id),
                other => ProposeError::Failed(other.to_string()),
            };
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

//! Group commit at the leader. Writes wait in a channel; the proposer takes every write
//! that is waiting (up to `max_batch`) into one log entry, and keeps at most
//! `max_in_flight` entries between proposal and commit. Under load, one fsync on each
//! peer then carries hundreds of writes; with one client, a write waits for nothing.
//!
//! Two writes of the same resource never share an entry: a resource's revision is the
//! index of the entry that changed it, so each write must get its own (or a client could
//! hold a revision for a version it did not write, and `?cas` on it would pass). The
//! second one waits for the next entry.
//!
//! Times in commands (`at_ms`) are set here, by the leader's clock, whichever peer took
//! the request.
//!
//! An entry that is not committed within the commit timeout frees its slot and its writes
//! are answered "indeterminate": a leader that lost its uncommitted entries (e.g. to a
//! snapshot installed while it was cut off) never hears about them again, and must not
//! stop proposing for that.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::metrics::Metrics;
use crate::raft::{PeerId, Raft};
use crate::state::{Batch, Command, Error as StateError, Outcome};
use crate::supervise::Tasks;

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

pub fn spawn(
    tasks: &Tasks,
    raft: Raft,
    metrics: Arc<Metrics>,
    max_batch: usize,
    max_in_flight: usize,
    commit_timeout: Duration,
) -> mpsc::Sender<Pending> {
    let (tx, rx) = mpsc::channel(max_batch * 4);
    tasks.spawn("proposer", run(raft, metrics, rx, max_batch, max_in_flight, commit_timeout));
    tx
}

async fn run(
    raft: Raft,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    max_in_flight: usize,
    commit_timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    // A write held back because its resource is already in the batch being formed.
    let mut carried: Option<Pending> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut resources: HashSet<String> = first.command.resource().into_iter().collect();
        let mut pending = vec![first];
        while pending.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => match p.command.resource() {
                    Some(r) if !resources.insert(r.clone()) => {
                        carried = Some(p);
                        break;
                    }
                    _ => pending.push(p),
                },
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            propose(&raft, &metrics, pending, commit_timeout).await;
            drop(slot);
        });
    }
}

async fn propose(raft: &Raft, metrics: &Metrics, pending: Vec<Pending>, commit_timeout: Duration) {
    let now_ms = super::now_ms();
    let (commands, replies): (Vec<_>, Vec<_>) = pending
        .into_iter()
        .map(|mut p| {
            p.command.stamp(now_ms);
            (p.command, p.reply)
        })
        .unzip();
    metrics.proposals.inc();
    metrics.proposed_commands.inc_by(commands.len() as u64);
    metrics.batch_size.observe(commands.len() as f64);
    let Ok(written) = tokio::time::timeout(commit_timeout, raft.client_write(Batch { commands })).await else {
        let error = ProposeError::Failed(format!("the entry was not committed within {commit_timeout:?}"));
        for reply in replies {
            let _ = reply.send(Err(error.clone()));
        }
        return;
    };
    match written {
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

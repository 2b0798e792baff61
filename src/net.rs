//! What every TCP listener of a peer (HTTP, peer RPC, DNS over TCP) shares: accepting with
//! a backoff after errors, and counting the connections of each client address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The first pause after a failed accept; it doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The next connection on `listener`, `None` once `shutdown` is cancelled. A failed accept
/// (out of file descriptors, say) is logged and followed by a pause that doubles with each
/// failure in a row, rather than a loop that spins on the error.
pub async fn accept(
    listener: &TcpListener,
    what: &'static str,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let error = tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(e) => e,
            },
        };
        tracing::warn!(listener = what, error = %error, pause_ms = backoff.as_millis() as u64, "accepting a connection failed");
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
    }
}

/// The connections open from each client address.
#[derive(Clone, Default)]
pub struct PerClient {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerClient {
    /// A place for one more connection from `client`, or `None` when it has `max` open.
    pub fn take(&self, client: IpAddr, max: usize) -> Option<ClientPlace> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(client).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientPlace { open: self.open.clone(), client })
    }
}

/// One connection's place among its client's, given back on drop.
pub struct ClientPlace {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_per_client_are_counted_and_given_back() {
        let clients = PerClient::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = clients.take(a, 2).unwrap();
        let _second = clients.take(a, 2).unwrap();
        assert!(clients.take(a, 2).is_none());
        assert!(clients.take(b, 2).is_some());
        drop(first);
        assert!(clients.take(a, 2).is_some());
        assert!(clients.open.lock().unwrap().get(&b).is_none(), "a client with nothing open is forgotten");
    }
}

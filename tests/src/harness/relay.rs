//! A TCP relay the test controls: the agent dials the relay, the relay dials the control
//! plane, and [`Relay::cut`] drops every live connection at once — a network failure at a
//! moment the test picks, without touching either process.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay bind");
        let addr = listener.local_addr().expect("relay addr");
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let c = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut list = c.lock().unwrap_or_else(|p| p.into_inner());
                list.retain(|t| !t.is_finished());
                list.push(task);
            }
        });
        Self {
            addr,
            conns,
            accept,
        }
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every live connection; returns how many were cut.
    pub fn cut(&self) -> usize {
        let mut list = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let live = list.iter().filter(|t| !t.is_finished()).count();
        for t in list.drain(..) {
            t.abort();
        }
        live
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

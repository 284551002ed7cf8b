//! A TCP proxy in front of a node that, on demand, swallows the next response the node sends
//! and cuts that connection: the node has executed the request but the client never hears
//! so, and must retry it. This is how a lost acknowledgement is made to happen on purpose.
//!
//! The node must advertise the proxy to clients: start it with
//! `COMMERCE_ADVERTISED_HOST=127.0.0.2` and put the proxy on 127.0.0.2 with the node's port
//! (`ResponseDropper::start(node.kafka_addr())`); the whole 127/8 is loopback on Linux.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The host the proxy listens on.
pub const PROXY_HOST: &str = "127.0.0.2";

pub struct ResponseDropper {
    addr: SocketAddr,
    armed: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
}

impl ResponseDropper {
    /// Listens on PROXY_HOST with the node's port, forwarding to the node.
    pub fn start(node: SocketAddr) -> ResponseDropper {
        let listener = TcpListener::bind((PROXY_HOST, node.port())).unwrap_or_else(|error| {
            panic!("cannot listen on {PROXY_HOST}:{}: {error}", node.port())
        });
        let addr = listener.local_addr().expect("proxy address");
        let armed = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        std::thread::spawn({
            let (armed, dropped) = (Arc::clone(&armed), Arc::clone(&dropped));
            move || {
                for client in listener.incoming().flatten() {
                    let Ok(upstream) = TcpStream::connect(node) else {
                        continue;
                    };
                    let (armed, dropped) = (Arc::clone(&armed), Arc::clone(&dropped));
                    spawn_pumps(client, upstream, armed, dropped);
                }
            }
        });
        ResponseDropper {
            addr,
            armed,
            dropped,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next bytes any node sends back are swallowed and their connection cut.
    pub fn drop_next_response(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// How many responses were swallowed so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

fn spawn_pumps(
    client: TcpStream,
    upstream: TcpStream,
    armed: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
) {
    let (Ok(client_in), Ok(upstream_out)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    // Requests flow through untouched.
    std::thread::spawn(move || {
        let (mut from, mut to) = (client_in, upstream_out);
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
    // Responses flow through unless armed.
    std::thread::spawn(move || {
        let (mut from, mut to) = (upstream, client);
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(read) = from.read(&mut buffer) {
            if read == 0 {
                break;
            }
            if armed.swap(false, Ordering::SeqCst) {
                dropped.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if to.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

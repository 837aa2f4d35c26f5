//! A TCP proxy whose line can be cut and restored: how the API server looks to a
//! node that loses its network while everyone else still reaches the server.

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Proxy {
    pub address: SocketAddr,
    target: SocketAddr,
    line: Mutex<Option<Line>>,
}

/// The proxy while it forwards.
struct Line {
    stop: Arc<AtomicBool>,
    accepting: JoinHandle<()>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards a free loopback port to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Proxy {
            address: listener.local_addr().unwrap(),
            target,
            line: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (target, stopping, conns) = (self.target, stop.clone(), open.clone());
        let accepting = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(_) => return,
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut conns = conns.lock().unwrap();
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
                conns.extend([client, server]);
            }
        });
        *self.line.lock().unwrap() = Some(Line {
            stop,
            accepting,
            open,
        });
    }

    /// Refuses new connections and breaks the open ones.
    pub fn cut(&self) {
        if let Some(line) = self.line.lock().unwrap().take() {
            line.stop.store(true, Ordering::Relaxed);
            line.accepting.join().unwrap();
            for conn in line.open.lock().unwrap().drain(..) {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }

    /// Forwards again, on the same address.
    pub fn restore(&self) {
        self.serve(TcpListener::bind(self.address).unwrap());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

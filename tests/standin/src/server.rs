//! The HTTP listener: the same in-memory API, on a loopback port, for the
//! real `kubectl` and for components started as separate processes. It can
//! be stopped and started again on the same address, closing every open
//! connection and watch, as an API server restart looks to its clients.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::Standin;

/// A running (or stopped) listener for one [`Standin`].
pub struct Server {
    standin: Standin,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Listen on `addr` (port 0 picks one; the chosen port is kept across restarts).
    pub async fn start(standin: Standin, addr: SocketAddr) -> std::io::Result<Self> {
        let mut s = Self {
            standin,
            addr,
            task: None,
        };
        s.resume().await?;
        Ok(s)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for `kubectl` and kube-rs clients of this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\n\
             contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    namespace: default\n\
             current-context: standin\nusers:\n- name: standin\n  user: {{}}\n",
            self.url()
        )
    }

    /// Close the listener and every open connection: clients see refused
    /// connections until [`Server::resume`].
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listen again on the same address.
    pub async fn resume(&mut self) -> std::io::Result<()> {
        self.stop();
        let listener = bind(self.addr).await?;
        self.addr = listener.local_addr()?;
        let standin = self.standin.clone();
        self.task = Some(tokio::spawn(accept_loop(listener, standin)));
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Bind, retrying briefly: right after a stop the kernel may still hold the port.
async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        let sock = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        match sock.bind(addr) {
            Ok(()) => return sock.listen(1024),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}

/// Accept connections; dropping this future (abort) drops the JoinSet, which
/// aborts every connection task with it.
async fn accept_loop(listener: TcpListener, standin: Standin) {
    let mut conns = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => continue,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let standin = standin.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let standin = standin.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let bytes: Bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                    Ok::<_, std::convert::Infallible>(standin.respond_to(&parts, &bytes))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

//! A TCP proxy in front of PostgreSQL that can make the database unreachable (outage tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to PostgreSQL. [`PgProxy::cut`] closes every connection through it and refuses
/// new ones (accepted and closed at once) until [`PgProxy::restore`].
pub struct PgProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    /// Proxies to the host and port of `database_url`.
    pub async fn start(database_url: &str) -> anyhow::Result<PgProxy> {
        let target = host_port(database_url)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = watch::channel(0u64);
        let accepting = up.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Ok(PgProxy {
            port,
            up,
            cut,
            task,
        })
    }

    /// `database_url` with its host and port replaced by this proxy's.
    pub fn url(&self, database_url: &str) -> anyhow::Result<String> {
        let target = host_port(database_url)?;
        Ok(database_url.replacen(&target, &format!("127.0.0.1:{}", self.port), 1))
    }

    /// The database becomes unreachable: open connections are closed, new ones refused.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// The database is reachable again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL (port 5432 when it has none).
fn host_port(database_url: &str) -> anyhow::Result<String> {
    let rest = database_url
        .split_once("://")
        .map(|(_, rest)| rest)
        .context("a database URL with a scheme")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    anyhow::ensure!(!host.is_empty(), "no host in the database URL");
    Ok(if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_name_their_host_and_port() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/db").unwrap(),
            "127.0.0.1:5432"
        );
        assert_eq!(
            host_port("postgres://u:p@db.example/db").unwrap(),
            "db.example:5432"
        );
        assert!(host_port("no scheme").is_err());
    }
}

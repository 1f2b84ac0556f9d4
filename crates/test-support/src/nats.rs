//! A private `nats-server` with JetStream on a free port, killed (and its store removed) on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

/// A private `nats-server` (JetStream on), killed on drop. `NATS_SERVER_BIN` names another
/// binary than the `nats-server` on `PATH`.
pub struct NatsServer {
    child: Option<Child>,
    /// The port it listens on, on 127.0.0.1 (the same after a restart).
    pub port: u16,
    /// Its JetStream store (the same after a restart, removed on drop).
    pub store_dir: PathBuf,
    /// A configuration file given with `-c` (the same after a restart, removed on drop).
    config: Option<PathBuf>,
    /// Environment variables of the server process (a configuration's `$NAME` references).
    env: Vec<(String, String)>,
}

impl NatsServer {
    /// Starts a server on a free port; answers once it accepts connections.
    pub async fn start() -> anyhow::Result<NatsServer> {
        let mut server = NatsServer {
            child: None,
            port: crate::free_port(),
            store_dir: std::env::temp_dir().join(crate::unique("sb-nats")),
            config: None,
            env: Vec::new(),
        };
        server.spawn().await?;
        Ok(server)
    }

    /// Like [`NatsServer::start`], with settings from a configuration file holding `config`
    /// (nats-server's format, e.g. `max_payload: 65536`); the command line's address, port and
    /// JetStream store win over it.
    pub async fn start_with_config(config: &str) -> anyhow::Result<NatsServer> {
        NatsServer::start_with_config_env(config, &[]).await
    }

    /// Like [`NatsServer::start_with_config`], the server process given these environment
    /// variables too (what the configuration's `$NAME` references read, such as passwords).
    pub async fn start_with_config_env(
        config: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<NatsServer> {
        let path = std::env::temp_dir().join(crate::unique("sb-nats-conf"));
        std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
        let mut server = NatsServer {
            child: None,
            port: crate::free_port(),
            store_dir: std::env::temp_dir().join(crate::unique("sb-nats")),
            config: Some(path),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        server.spawn().await?;
        Ok(server)
    }

    /// Starts the server process on this port and store directory; answers once it listens.
    async fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let mut command = Command::new(&bin);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {bin} (install Debian's nats-server, or set NATS_SERVER_BIN)")
            })?;
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("nats-server did not start on port {}", self.port)
    }

    /// `nats://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client that keeps retrying its first connection.
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        Ok(async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(self.url())
            .await?)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients); the store stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port with the same JetStream store,
    /// after `down` without a server.
    pub async fn restart(&mut self, down: Duration) -> anyhow::Result<()> {
        self.kill();
        tokio::time::sleep(down).await;
        self.spawn().await
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store_dir);
        if let Some(config) = &self.config {
            let _ = std::fs::remove_file(config);
        }
    }
}

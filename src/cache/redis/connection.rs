//! Connections to either kind of deployment: one server or a Redis Cluster.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::circuit::MAINTENANCE_TIMEOUT;

/// A connection to either kind of deployment; both multiplex, clone
/// cheaply and reconnect by themselves.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}

/// How connections are made: a URL, or a cluster's seed nodes.
pub(super) enum Deployment {
    Single {
        client: redis::Client,
        config: ConnectionManagerConfig,
    },
    Cluster {
        client: ClusterClient,
    },
}

impl Deployment {
    pub(super) fn new(url: &str, cluster: bool) -> anyhow::Result<Self> {
        if !cluster {
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(100))
                .set_connection_timeout(Some(Duration::from_millis(500)))
                .set_response_timeout(Some(MAINTENANCE_TIMEOUT));
            return Ok(Deployment::Single {
                client: redis::Client::open(url)?,
                config,
            });
        }
        let seeds: Vec<String> = url.split(',').map(|seed| seed.trim().to_owned()).collect();
        let client = ClusterClient::builder(seeds)
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(100)
            .connection_timeout(Duration::from_millis(500))
            .response_timeout(MAINTENANCE_TIMEOUT)
            .build()?;
        Ok(Deployment::Cluster { client })
    }

    /// Connects in the background: no caller waits on a connect.
    pub(super) fn connect(&self) -> RedisResult<Connection> {
        match self {
            Deployment::Single { client, config } => {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map(Connection::Single)
            }
            Deployment::Cluster { client, .. } => Ok(Connection::Cluster(
                client.get_pending_async_connection_with_config(ClusterConfig::new()),
            )),
        }
    }
}

//! Redis Cluster helpers: the primaries serving every slot, read from
//! `CLUSTER NODES`, and the watch that distrusts the cache when they
//! change.

use std::sync::Arc;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::RedisResult;

use super::circuit::{bounded, Circuit, PROBE_INTERVAL};
use super::connection::{Connection, Deployment};

pub(super) fn by_address(host: &str, port: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: host.to_owned(),
        port,
    })
}

/// `CLUSTER NODES` as one node sees it.
async fn cluster_nodes(cluster: &mut ClusterConnection) -> RedisResult<String> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    let nodes = cluster
        .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
        .await?;
    Ok(redis::from_redis_value(nodes)?)
}

/// The primaries serving slots, as one node sees them: `(host, port)` of
/// each; an error unless they serve every slot (a failover in progress).
pub(super) async fn primaries(cluster: &mut ClusterConnection) -> RedisResult<Vec<(String, u16)>> {
    let nodes = cluster_nodes(cluster).await?;
    if covered_slots(&nodes) < SLOTS {
        return Err((redis::ErrorKind::Io, "not every slot is served").into());
    }
    let mut out = Vec::new();
    for node in serving_primaries(&nodes) {
        let address = node.address.split('@').next().unwrap_or_default();
        if let Some((host, port)) = address.rsplit_once(':') {
            if let Ok(port) = port.parse() {
                out.push((host.to_owned(), port));
            }
        }
    }
    if out.is_empty() {
        return Err((redis::ErrorKind::Io, "no primary serves slots").into());
    }
    Ok(out)
}

struct Node<'a> {
    id: &'a str,
    address: &'a str,
    slots: Vec<&'a str>,
}

/// Primaries that are not failing and serve slots, from `CLUSTER NODES`
/// lines (`id addr flags master ping pong epoch link slot…`).
fn serving_primaries(nodes: &str) -> Vec<Node<'_>> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let primary = flags.split(',').any(|flag| flag == "master");
            let failing = flags
                .split(',')
                .any(|flag| flag == "fail" || flag == "fail?");
            (primary && !failing && fields.len() > 8).then(|| Node {
                id: fields[0],
                address: fields[1],
                slots: fields[8..].to_vec(),
            })
        })
        .collect()
}

/// Hash slots of a Redis Cluster.
const SLOTS: usize = 16_384;

/// How many slots healthy primaries serve (`0-5460`, `5461`; migrating
/// `[…]` entries aside).
fn covered_slots(nodes: &str) -> usize {
    serving_primaries(nodes)
        .iter()
        .flat_map(|node| node.slots.iter())
        .filter(|range| !range.starts_with('['))
        .filter_map(|range| match range.split_once('-') {
            Some((from, to)) => Some(to.parse::<usize>().ok()? + 1 - from.parse::<usize>().ok()?),
            None => range.parse::<usize>().ok().map(|_| 1),
        })
        .sum()
}

/// Which node serves which slots: equal while the topology is unchanged.
fn topology(nodes: &str) -> Vec<String> {
    let mut primaries: Vec<String> = serving_primaries(nodes)
        .into_iter()
        .map(|node| format!("{} {}", node.id, node.slots.join(",")))
        .collect();
    primaries.sort();
    primaries
}

/// A cluster whose primaries change (a failover, a resharding) may have
/// lost acknowledged invalidations (replication is asynchronous): what it
/// holds is distrusted, like after an outage, until flushed.
pub(super) async fn watch_topology(deployment: Arc<Deployment>, circuit: Arc<Circuit>) {
    let mut known: Option<Vec<String>> = None;
    let mut connection = None;
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        if connection.is_none() {
            connection = deployment.connect().ok();
        }
        let Some(Connection::Cluster(cluster)) = connection.as_mut() else {
            continue;
        };
        let Ok(nodes) = bounded(cluster_nodes(cluster)).await else {
            connection = None;
            continue;
        };
        let now = topology(&nodes);
        if now.is_empty() {
            continue;
        }
        match &known {
            Some(before) if *before != now => {
                tracing::warn!(
                    "redis cluster topology changed: distrusting the cache until flushed"
                );
                circuit.distrust("topology changed");
            }
            _ => {}
        }
        known = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";

    #[test]
    fn serving_primaries_are_read_from_cluster_nodes() {
        let primaries: Vec<&str> = serving_primaries(NODES).iter().map(|n| n.address).collect();
        assert_eq!(
            primaries,
            [
                "127.0.0.1:30002@31002",
                "127.0.0.1:30003@31003",
                "127.0.0.1:30001@31001"
            ]
        );
    }

    #[test]
    fn every_slot_must_be_served() {
        assert_eq!(covered_slots(NODES), SLOTS);
        let failing = NODES.replace("myself,master -", "myself,master,fail? -");
        assert_eq!(covered_slots(&failing), SLOTS - 5461);
    }

    #[test]
    fn a_failover_changes_the_topology() {
        let failed_over = NODES
            .replace(
                "myself,master - 0 0 1 connected 0-5460",
                "myself,master,fail - 0 0 1 connected",
            )
            .replace(
                "slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected",
                "master - 0 1426238317239 4 connected 0-5460",
            );
        assert_ne!(topology(NODES), topology(&failed_over));
        assert_eq!(
            topology(NODES),
            topology(&NODES.replace("1426238316232", "1426238399999"))
        );
    }
}

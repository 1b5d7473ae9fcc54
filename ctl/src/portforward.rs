//! `skiffctl port-forward POD [LOCAL:]REMOTE…`: listens on local ports and carries every
//! connection to the pod's port through the API server (`pods/{name}/portforward`, one
//! WebSocket per connection), as `kubectl port-forward` does.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};

use crate::client::Cluster;
use crate::errors;
use crate::podref;

/// A `[LOCAL:]REMOTE` pair; local 0 means "pick a free port".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPair {
    pub local: u16,
    pub remote: u16,
}

pub fn parse_port(spec: &str) -> Result<PortPair> {
    let bad = |what: &str| {
        anyhow::anyhow!("invalid port {what} in {spec:?}: expected [LOCAL:]REMOTE with ports 1-65535 (LOCAL may be empty or 0 for any free port)")
    };
    let (local, remote) = match spec.split_once(':') {
        Some((l, r)) => (l, r),
        None => (spec, spec),
    };
    let remote: u16 = remote.parse().map_err(|_| bad("REMOTE"))?;
    if remote == 0 {
        return Err(bad("REMOTE"));
    }
    let local: u16 = if local.is_empty() {
        0
    } else {
        local.parse().map_err(|_| bad("LOCAL"))?
    };
    Ok(PortPair { local, remote })
}

pub fn parse_address(text: &str) -> Result<IpAddr> {
    match text.trim() {
        "localhost" => Ok(IpAddr::from([127, 0, 0, 1])),
        other => other.parse().with_context(|| {
            format!("--address {other:?}: expected an IP address or \"localhost\"")
        }),
    }
}

async fn carry(
    pods: Api<Pod>,
    name: String,
    remote: u16,
    mut conn: TcpStream,
) -> Result<(), String> {
    let mut forwarder = pods
        .portforward(&name, &[remote])
        .await
        .map_err(|e| errors::render(&errors::from_kube(e)))?;
    let mut upstream = forwarder
        .take_stream(remote)
        .ok_or_else(|| format!("no stream for port {remote}"))?;
    let failure = forwarder.take_error(remote);
    let copied = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    drop(upstream);
    if let Some(failure) = failure {
        if let Ok(Some(message)) =
            tokio::time::timeout(std::time::Duration::from_millis(100), failure).await
        {
            return Err(format!("an error occurred forwarding {remote}: {message}"));
        }
    }
    copied
        .map(|_| ())
        .map_err(|e| format!("copying port {remote}: {e}"))
}

pub async fn run(
    cluster: &Cluster,
    pod_arg: &str,
    specs: &[String],
    addresses: &[String],
) -> Result<()> {
    let pairs = specs
        .iter()
        .map(|s| parse_port(s))
        .collect::<Result<Vec<_>>>()?;
    let ips = addresses
        .iter()
        .map(|a| parse_address(a))
        .collect::<Result<Vec<_>>>()?;
    let name = podref::pod_name(pod_arg, "port-forward")?;
    let pod = podref::fetch(cluster, &name).await?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    if phase != "Running" {
        anyhow::bail!("unable to forward port because pod is not running. Current status={phase}");
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut listeners = Vec::new();
    for pair in &pairs {
        // One local port for every address: the first bind picks it when asked for 0.
        let mut local = pair.local;
        for ip in &ips {
            let addr = SocketAddr::new(*ip, local);
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("unable to listen on {addr}"))?;
            let bound = listener
                .local_addr()
                .with_context(|| format!("the address of the listener on {addr}"))?;
            local = bound.port();
            println!("Forwarding from {bound} -> {}", pair.remote);
            listeners.push((listener, pair.remote));
        }
    }
    let mut accepting = tokio::task::JoinSet::new();
    for (listener, remote) in listeners {
        let pods = pods.clone();
        let name = name.clone();
        accepting.spawn(async move {
            loop {
                let (conn, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: accepting a connection: {e}");
                        continue;
                    }
                };
                let local = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                println!("Handling connection for {local}");
                let pods = pods.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    if let Err(e) = carry(pods, name, remote, conn).await {
                        eprintln!("error: {e}");
                    }
                });
            }
        });
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    accepting.abort_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(
            parse_port("8080").unwrap(),
            PortPair {
                local: 8080,
                remote: 8080
            }
        );
        assert_eq!(
            parse_port("8888:80").unwrap(),
            PortPair {
                local: 8888,
                remote: 80
            }
        );
        assert_eq!(parse_port(":80").unwrap().local, 0);
        assert_eq!(parse_port("0:80").unwrap().local, 0);
        assert!(parse_port("80:0").is_err());
        assert!(parse_port("x:80").is_err());
        assert!(parse_port("70000").is_err());
        assert_eq!(
            parse_address("localhost").unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert!(parse_address("nowhere").is_err());
    }
}

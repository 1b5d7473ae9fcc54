//! tcpSocket probes: success when a TCP connection opens within the timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{ProbeError, ProbeResult};

/// All addresses of `host` (an IP literal or a name) with `port`.
pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ProbeError> {
    let host_for_lookup = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host_for_lookup.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host_for_lookup, port))
        .await
        .map_err(|err| ProbeError::Resolve {
            host: host.to_string(),
            reason: err.to_string(),
        })?
        .collect();
    if addresses.is_empty() {
        return Err(ProbeError::Resolve {
            host: host.to_string(),
            reason: "no addresses".into(),
        });
    }
    Ok(addresses)
}

/// `host:port` as Go's `net.JoinHostPort` writes it (IPv6 in brackets).
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Opens a connection to the first address of `host` that answers, within `timeout`; the
/// error text is Go's (`dial tcp ADDR: connect: connection refused`, `... i/o timeout`).
pub(crate) async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let target = join_host_port(host, port);
    let attempt = async {
        let addresses = resolve(host, port).await.map_err(|e| e.to_string())?;
        let mut last = String::new();
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(err) => last = format!("dial tcp {address}: connect: {}", io_text(&err)),
            }
        }
        Err(last)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("dial tcp {target}: i/o timeout")),
    }
}

/// An io error as Go prints a syscall error: the bare strerror text, lower case.
pub(crate) fn io_text(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_lowercase(),
        None => err.to_string(),
    }
}

/// A tcpSocket probe.
pub(crate) async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> ProbeResult {
    match connect(host, port, timeout).await {
        Ok(stream) => {
            drop(stream);
            ProbeResult::Success
        }
        Err(message) => ProbeResult::Failure(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_like_go() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
        assert_eq!(join_host_port("example.test", 443), "example.test:443");
    }

    #[test]
    fn errno_text_is_strerror() {
        let err = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_text(&err), "connection refused");
    }
}

//! `skiffctl logs`: a container's log through the API server (`pods/{name}/log`, which the
//! API server streams from the node daemon), as `kubectl logs` prints it.

use std::io::Write;

use anyhow::{Context, Result};
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::Api;

use crate::client::Cluster;
use crate::errors;
use crate::podref;

/// What `logs` was asked for.
#[derive(Debug, Clone, Default)]
pub struct LogsArgs {
    pub pod: String,
    pub container: Option<String>,
    pub follow: bool,
    /// Lines from the end; negative: all.
    pub tail: i64,
    /// A duration such as `5s`, `2m`, `1h30m`.
    pub since: Option<String>,
    /// An RFC 3339 time.
    pub since_time: Option<String>,
    pub timestamps: bool,
    pub previous: bool,
    pub all_containers: bool,
    pub prefix: bool,
    pub limit_bytes: Option<i64>,
}

/// Seconds in a Go-style duration (`300ms`, `5s`, `2m`, `1h30m`, `1.5h`), rounded up as
/// kubectl rounds `--since`.
pub fn parse_since(text: &str) -> Result<i64> {
    let bad = || {
        anyhow::anyhow!("invalid argument {text:?} for \"--since\" flag: expected a duration such as 5s, 2m or 3h")
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_end);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "h" => 3_600e9,
            "m" => 60e9,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return Err(bad()),
        };
        nanos += value * scale;
        rest = tail;
    }
    if nanos <= 0.0 {
        anyhow::bail!("--since must be greater than 0");
    }
    Ok((nanos / 1e9).ceil() as i64)
}

/// The API parameters for `args` (checked before anything is sent).
pub fn params(args: &LogsArgs) -> Result<LogParams> {
    if args.since.is_some() && args.since_time.is_some() {
        anyhow::bail!("at most one of `sinceTime` or `sinceSeconds` may be specified");
    }
    let since_seconds = args.since.as_deref().map(parse_since).transpose()?;
    let since_time = args
        .since_time
        .as_deref()
        .map(|t| {
            t.parse::<jiff::Timestamp>().with_context(|| {
                format!("invalid argument {t:?} for \"--since-time\" flag: expected an RFC3339 time such as 2024-05-01T10:00:00Z")
            })
        })
        .transpose()?;
    if let Some(n) = args.limit_bytes {
        if n <= 0 {
            anyhow::bail!("--limit-bytes must be greater than 0");
        }
    }
    Ok(LogParams {
        container: None,
        follow: args.follow,
        limit_bytes: args.limit_bytes,
        pretty: false,
        previous: args.previous,
        since_seconds,
        since_time,
        tail_lines: (args.tail >= 0).then_some(args.tail),
        timestamps: args.timestamps,
    })
}

fn write_out(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .context("writing to stdout")
}

/// Streams one container's log to stdout as it arrives, each line behind `prefix` if any.
async fn stream_one(
    pods: &Api<Pod>,
    pod: &str,
    mut lp: LogParams,
    container: &str,
    prefix: Option<String>,
) -> Result<()> {
    lp.container = Some(container.to_string());
    let mut reader = pods.log_stream(pod, &lp).await.map_err(errors::from_kube)?;
    match prefix {
        None => loop {
            let chunk = reader
                .fill_buf()
                .await
                .with_context(|| format!("reading the log of {pod}/{container}"))?;
            if chunk.is_empty() {
                return Ok(());
            }
            let n = chunk.len();
            write_out(chunk)?;
            reader.consume_unpin(n);
        },
        Some(prefix) => {
            let mut lines = reader.lines();
            while let Some(line) = lines
                .try_next()
                .await
                .with_context(|| format!("reading the log of {pod}/{container}"))?
            {
                write_out(format!("{prefix} {line}\n").as_bytes())?;
            }
            Ok(())
        }
    }
}

pub async fn run(cluster: &Cluster, args: &LogsArgs) -> Result<()> {
    let lp = params(args)?;
    let name = podref::pod_name(&args.pod, "logs")?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let pod = podref::fetch(cluster, &name).await?;
    let containers = if args.all_containers {
        if args.container.is_some() {
            anyhow::bail!("--container cannot be given together with --all-containers");
        }
        podref::ContainerNames::of(&pod).all()
    } else {
        vec![podref::choose_container(&pod, args.container.as_deref())?]
    };
    let prefix_of = |c: &str| args.prefix.then(|| format!("[pod/{name}/{c}]"));
    if args.follow && containers.len() > 1 {
        // Every container's stream at once, line by line so lines never interleave.
        let streams = containers.iter().map(|c| {
            let prefix = prefix_of(c).unwrap_or_default();
            let lp = lp.clone();
            let pods = &pods;
            let name = &name;
            async move {
                let mut lp = lp;
                lp.container = Some(c.clone());
                let reader = pods
                    .log_stream(name, &lp)
                    .await
                    .map_err(errors::from_kube)?;
                let mut lines = reader.lines();
                while let Some(line) = lines
                    .try_next()
                    .await
                    .with_context(|| format!("reading the log of {name}/{c}"))?
                {
                    let text = if prefix.is_empty() {
                        format!("{line}\n")
                    } else {
                        format!("{prefix} {line}\n")
                    };
                    write_out(text.as_bytes())?;
                }
                Ok::<(), anyhow::Error>(())
            }
        });
        futures::future::try_join_all(streams).await?;
        return Ok(());
    }
    for c in &containers {
        stream_one(&pods, &name, lp.clone(), c, prefix_of(c)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_durations() {
        assert_eq!(parse_since("5s").unwrap(), 5);
        assert_eq!(parse_since("2m").unwrap(), 120);
        assert_eq!(parse_since("1h30m").unwrap(), 5400);
        assert_eq!(parse_since("1.5h").unwrap(), 5400);
        assert_eq!(parse_since("300ms").unwrap(), 1);
        assert!(parse_since("5").is_err());
        assert!(parse_since("5d").is_err());
        assert!(parse_since("").is_err());
        assert!(parse_since("0s").is_err());
    }

    #[test]
    fn params_from_flags() {
        let args = LogsArgs {
            tail: 10,
            since: Some("1m".into()),
            timestamps: true,
            previous: true,
            ..LogsArgs::default()
        };
        let lp = params(&args).unwrap();
        assert_eq!(lp.tail_lines, Some(10));
        assert_eq!(lp.since_seconds, Some(60));
        assert!(lp.timestamps && lp.previous && !lp.follow);
        let all = params(&LogsArgs {
            tail: -1,
            ..LogsArgs::default()
        })
        .unwrap();
        assert_eq!(all.tail_lines, None);
        let both = LogsArgs {
            since: Some("1m".into()),
            since_time: Some("2024-05-01T10:00:00Z".into()),
            ..LogsArgs::default()
        };
        assert!(params(&both).is_err());
        let time = LogsArgs {
            since_time: Some("2024-05-01T10:00:00Z".into()),
            ..LogsArgs::default()
        };
        assert!(params(&time).unwrap().since_time.is_some());
        let bad = LogsArgs {
            since_time: Some("yesterday".into()),
            ..LogsArgs::default()
        };
        assert!(params(&bad).is_err());
    }
}

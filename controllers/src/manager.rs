//! Runs the control loops: under leader election when several control-plane processes share
//! a store, each leadership term with fresh informer caches, stopped the moment leadership is
//! lost.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use kube::Client;

use crate::clock::Clock;
use crate::context::{Builder, Context, ControllerConfig};
use crate::leader::{LeaderElectionConfig, LeaderElector};

/// Every loop skiff runs, by the name `--controllers` uses.
pub fn all_loops() -> Vec<(&'static str, Builder)> {
    vec![
        ("scheduler", crate::scheduler::start),
        ("replicaset", crate::replicaset::start),
        ("deployment", crate::deployment::start),
        ("daemonset", crate::daemonset::start),
        ("job", crate::job::start),
        ("cronjob", crate::cronjob::start),
        ("statefulset", crate::statefulset::start),
        ("persistentvolume-binder", crate::volumes::start),
        ("nodelifecycle", crate::nodelifecycle::start),
        ("horizontalpodautoscaling", crate::hpa::start),
        ("endpoints", crate::endpoints::start),
        ("garbagecollector", crate::gc::start),
        ("serviceaccount", crate::serviceaccount::start),
    ]
}

pub struct ManagerConfig {
    pub controllers: ControllerConfig,
    /// `None` runs the loops at once, for a control plane that is alone on its store.
    pub leader_election: Option<LeaderElectionConfig>,
    /// Names of the loops to run (see `all_loops`); empty means all.
    pub enabled: Vec<String>,
}

/// Which loops `enabled` selects; an unknown name is an error naming the known ones.
pub fn select_loops(enabled: &[String]) -> Result<Vec<(&'static str, Builder)>, String> {
    let all = all_loops();
    if enabled.is_empty() || enabled.iter().any(|e| e == "*") {
        return Ok(all);
    }
    let known: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
    if let Some(unknown) = enabled.iter().find(|e| !known.contains(&e.as_str())) {
        return Err(format!(
            "unknown controller {unknown:?}; known: {}",
            known.join(", ")
        ));
    }
    Ok(all
        .into_iter()
        .filter(|(n, _)| enabled.iter().any(|e| e == n))
        .collect())
}

/// Runs the loops until `shutdown` completes; with leader election only while leading.
pub async fn run(
    client: Client,
    clock: Arc<dyn Clock>,
    config: ManagerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let loops = select_loops(&config.enabled)?;
    let mut elector = match config.leader_election {
        Some(le) => {
            le.validate().map_err(|e| e.to_string())?;
            Some(LeaderElector::new(client.clone(), le))
        }
        None => None,
    };
    tokio::pin!(shutdown);
    loop {
        if let Some(elector) = elector.as_mut() {
            tokio::select! {
                _ = elector.acquire() => {}
                _ = &mut shutdown => return Ok(()),
            }
        }
        let term = Term::start(&client, &clock, &config.controllers, &loops);
        let lost = async {
            match elector.as_mut() {
                Some(e) => e.keep_leading().await,
                None => std::future::pending().await,
            }
        };
        let stop = tokio::select! {
            _ = lost => false,
            _ = &mut shutdown => true,
        };
        term.stop();
        if stop {
            if let Some(elector) = elector.as_mut() {
                elector.release().await;
            }
            return Ok(());
        }
    }
}

/// The loops of one leadership term.
struct Term {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Term {
    fn start(
        client: &Client,
        clock: &Arc<dyn Clock>,
        config: &ControllerConfig,
        loops: &[(&'static str, Builder)],
    ) -> Term {
        let ctx = Context::new(client.clone(), clock.clone(), config.clone());
        let mut tasks: Vec<_> = loops
            .iter()
            .map(|(name, build)| {
                let run: BoxFuture<'static, ()> = build(&ctx);
                let name = *name;
                tokio::spawn(async move {
                    run.await;
                    tracing::debug!(controller = name, "loop ended");
                })
            })
            .collect();
        tasks.extend(ctx.informers.start());
        tracing::info!(loops = loops.len(), "control loops started");
        Term { tasks }
    }

    fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
        tracing::info!("control loops stopped");
    }
}

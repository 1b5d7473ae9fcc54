//! skiffctl: skiff's command line, with kubectl's habits. Every request goes through
//! kube-rs, configured from the kubeconfig kubectl would use.

mod age;
mod apply;
mod autoscale;
mod client;
mod create;
mod delete;
mod describe;
mod drain;
mod edit;
mod errors;
mod exec;
mod explain;
mod expose;
mod fields;
mod get;
mod info;
mod jsonpath;
mod kubeconfig;
mod labels;
mod logs;
mod manifest;
mod modify;
mod output;
mod podref;
mod portforward;
mod rollout;
mod runpod;
mod set;
mod table;
mod target;
mod threeway;
mod top;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::client::{Cluster, Globals};

#[derive(Parser)]
#[command(
    name = "skiffctl",
    version,
    about = "skiffctl controls a skiff cluster, the way kubectl controls Kubernetes."
)]
struct Cli {
    /// Path to the kubeconfig file (else $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// The namespace to work in.
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Log verbosity (6 and up logs every request).
    #[arg(short = 'v', long = "v", global = true, default_value_t = 0)]
    verbosity: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct AllNamespaces {
    /// List the requested objects across all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Apply a configuration to resources by file name or stdin.
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        /// Check manifests against the Kubernetes types before sending them.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        validate: bool,
        /// Accepted for kubectl compatibility; directories are always read recursively.
        #[arg(short = 'R', long)]
        recursive: bool,
    },
    /// Create resources from files or from flags.
    #[command(args_conflicts_with_subcommands = true)]
    Create {
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        validate: bool,
        /// Record the manifest so a later `apply` can tell what was removed.
        #[arg(long)]
        save_config: bool,
        #[command(subcommand)]
        what: Option<CreateWhat>,
    },
    /// Replace resources by file name or stdin.
    Replace {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        validate: bool,
    },
    /// Delete resources by type and names, files, label selector or --all.
    Delete {
        args: Vec<String>,
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// Delete every object of the given types in the namespace.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        ns: AllNamespaces,
        /// Seconds the object gets to terminate gracefully (-1: its own default).
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        grace_period: i64,
        /// Remove the object at once, without waiting for its node.
        #[arg(long)]
        force: bool,
        /// background, foreground or orphan.
        #[arg(long, default_value = "background", num_args = 0..=1, default_missing_value = "background")]
        cascade: String,
        #[arg(long)]
        ignore_not_found: bool,
        /// Wait for the objects to be gone.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        wait: bool,
        /// How long to wait (e.g. 30s, 5m); 0 waits as long as it takes.
        #[arg(long, default_value = "0s")]
        timeout: String,
    },
    /// Display one or many resources.
    Get {
        args: Vec<String>,
        /// wide, yaml, json, name, jsonpath=…, custom-columns=…
        #[arg(short = 'o', long)]
        output: Option<String>,
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[arg(long)]
        field_selector: Option<String>,
        #[command(flatten)]
        ns: AllNamespaces,
        #[arg(long)]
        show_labels: bool,
        /// Label keys to show as columns.
        #[arg(short = 'L', long = "label-columns", value_delimiter = ',')]
        label_columns: Vec<String>,
        #[arg(short = 'w', long)]
        watch: bool,
        #[arg(long)]
        watch_only: bool,
        #[arg(long)]
        no_headers: bool,
        #[arg(long)]
        ignore_not_found: bool,
    },
    /// Show details of a resource or group of resources.
    Describe {
        args: Vec<String>,
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[command(flatten)]
        ns: AllNamespaces,
    },
    /// Update the labels on a resource.
    Label(LabelCmd),
    /// Update the annotations on a resource.
    Annotate(LabelCmd),
    /// Set a new size for a deployment, replica set, replication controller or stateful set.
    Scale {
        args: Vec<String>,
        #[arg(long)]
        replicas: i64,
        /// Precondition: only scale if the current size is this.
        #[arg(long)]
        current_replicas: Option<i64>,
    },
    /// Edit a resource in your editor.
    Edit {
        args: Vec<String>,
        /// yaml (default) or json.
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Update fields of a resource with a patch.
    Patch {
        args: Vec<String>,
        #[arg(short = 'p', long)]
        patch: String,
        /// strategic, merge or json.
        #[arg(long = "type", default_value = "strategic")]
        patch_type: String,
        #[arg(long)]
        subresource: Option<String>,
    },
    /// Documentation of a resource and its fields.
    Explain { what: String },
    /// The resource types the server supports.
    ApiResources {
        #[arg(long, action = clap::ArgAction::Set)]
        namespaced: Option<bool>,
        #[arg(long)]
        api_group: Option<String>,
        #[arg(short = 'o', long)]
        output: Option<String>,
        #[arg(long)]
        no_headers: bool,
    },
    /// Client and server versions.
    Version {
        #[arg(long)]
        client: bool,
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Addresses of the control plane and cluster services.
    ClusterInfo,
    /// Show or change kubeconfig settings.
    Config {
        #[command(subcommand)]
        what: ConfigCmd,
    },
    /// Print the logs of a container in a pod (POD or pod/POD; pods only).
    Logs {
        pod: String,
        /// The container (default: the only one, else the default-container annotation,
        /// else the first).
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Keep streaming as the log grows.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Lines from the end to show (-1: all).
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        tail: i64,
        /// Only lines newer than this duration (5s, 2m, 3h).
        #[arg(long)]
        since: Option<String>,
        /// Only lines after this RFC3339 time.
        #[arg(long)]
        since_time: Option<String>,
        /// Put the time each line was written in front of it.
        #[arg(long)]
        timestamps: bool,
        /// The log of the previous instance of the container.
        #[arg(short = 'p', long)]
        previous: bool,
        /// The logs of every container of the pod.
        #[arg(long)]
        all_containers: bool,
        /// Put [pod/NAME/CONTAINER] in front of each line.
        #[arg(long)]
        prefix: bool,
        /// At most this many bytes.
        #[arg(long)]
        limit_bytes: Option<i64>,
    },
    /// Execute a command in a container: skiffctl exec POD [-c C] [-i] [-t] -- CMD [ARGS...]
    Exec {
        pod: String,
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Pass stdin to the command.
        #[arg(short = 'i', long)]
        stdin: bool,
        /// Give the command a terminal (with -i and a terminal on stdin).
        #[arg(short = 't', long)]
        tty: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Forward local ports to a pod: skiffctl port-forward POD [LOCAL:]REMOTE...
    PortForward {
        pod: String,
        #[arg(required = true)]
        ports: Vec<String>,
        /// Addresses to listen on (comma-separated IPs or localhost).
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
        address: Vec<String>,
    },
    /// Show CPU and memory use of nodes or pods.
    Top {
        #[command(subcommand)]
        what: TopCmd,
    },
    /// Manage the rollout of a deployment, daemon set or stateful set.
    Rollout {
        #[command(subcommand)]
        what: RolloutCmd,
    },
    /// Set specific features on objects.
    Set {
        #[command(subcommand)]
        what: SetCmd,
    },
    /// Create a HorizontalPodAutoscaler for a deployment, replica set, replication
    /// controller or stateful set.
    Autoscale {
        args: Vec<String>,
        /// The lower limit for the number of pods (-1: the server's default).
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        min: i64,
        /// The upper limit for the number of pods.
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        max: i64,
        /// The target average CPU utilisation over all pods, in percent of the request.
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        cpu_percent: i64,
        /// The name of the autoscaler (default: the target's).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        common: CreateCommon,
    },
    /// Expose a deployment, replica set, replication controller, pod or service as a
    /// new Service.
    Expose {
        args: Vec<String>,
        /// The port(s) the service serves on (default: the target's container ports).
        #[arg(long)]
        port: Option<String>,
        /// The port (number or name) the service forwards to.
        #[arg(long)]
        target_port: Option<String>,
        /// TCP, UDP or SCTP (default: the container port's, else TCP).
        #[arg(long)]
        protocol: Option<String>,
        /// ClusterIP, NodePort, LoadBalancer or ExternalName.
        #[arg(long = "type")]
        service_type: Option<String>,
        /// The name of the service (default: the target's).
        #[arg(long)]
        name: Option<String>,
        /// The pod selector (default: the target's selector, or a pod's labels).
        #[arg(long)]
        selector: Option<String>,
        /// Labels of the service (default: the target's labels).
        #[arg(short = 'l', long)]
        labels: Option<String>,
        /// The cluster IP to ask for ("None" for a headless service).
        #[arg(long)]
        cluster_ip: Option<String>,
        #[arg(long = "external-ip", value_delimiter = ',')]
        external_ip: Vec<String>,
        #[command(flatten)]
        common: CreateCommon,
    },
    /// Create and run a pod: skiffctl run NAME --image=IMAGE [-- ARGS...]
    Run {
        name: String,
        #[arg(long)]
        image: String,
        /// The port the container exposes.
        #[arg(long)]
        port: Option<String>,
        /// KEY=VALUE environment variables (repeatable).
        #[arg(long)]
        env: Vec<String>,
        /// Labels of the pod (replacing run=NAME).
        #[arg(short = 'l', long)]
        labels: Option<String>,
        /// KEY=VALUE annotations (repeatable).
        #[arg(long = "annotations")]
        annotations: Vec<String>,
        /// Always, OnFailure or Never.
        #[arg(long, default_value = "Always")]
        restart: String,
        /// Use the arguments after -- as the command instead of the image's arguments.
        #[arg(long)]
        command: bool,
        #[arg(long)]
        image_pull_policy: Option<String>,
        #[arg(long = "serviceaccount")]
        service_account: Option<String>,
        #[command(flatten)]
        common: CreateCommon,
        /// The container's arguments (or command, with --command), after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Mark nodes as unschedulable.
    Cordon {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Mark nodes as schedulable.
    Uncordon {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Drain a node in preparation for maintenance: cordon it and evict its pods.
    Drain {
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Also delete pods that no controller manages.
        #[arg(long)]
        force: bool,
        /// Leave DaemonSet-managed pods in place.
        #[arg(long)]
        ignore_daemonsets: bool,
        /// Also delete pods using emptyDir volumes (their data is lost).
        #[arg(long, alias = "delete-local-data")]
        delete_emptydir_data: bool,
        /// Seconds each pod gets to terminate (-1: its own default).
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        grace_period: i64,
        /// How long to wait before giving up (0: as long as it takes).
        #[arg(long, default_value = "0s")]
        timeout: String,
        /// Delete pods instead of evicting them.
        #[arg(long)]
        disable_eviction: bool,
        /// Only drain the pods matching this label selector.
        #[arg(long)]
        pod_selector: Option<String>,
    },
}

#[derive(Subcommand)]
enum RolloutCmd {
    /// Show the status of the rollout.
    Status {
        args: Vec<String>,
        /// Keep watching until the rollout is done.
        #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set,
              num_args = 0..=1, default_missing_value = "true")]
        watch: bool,
        /// How long to wait (0: as long as it takes).
        #[arg(long, default_value = "0s")]
        timeout: String,
        /// Pin to a specific revision (deployments only).
        #[arg(long, default_value_t = 0)]
        revision: i64,
    },
    /// View the rollout history.
    History {
        args: Vec<String>,
        /// Show the details of this revision.
        #[arg(long, default_value_t = 0)]
        revision: i64,
    },
    /// Roll back to a previous rollout.
    Undo {
        args: Vec<String>,
        /// The revision to roll back to (0: the previous one).
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        to_revision: i64,
    },
    /// Mark a deployment as paused.
    Pause { args: Vec<String> },
    /// Resume a paused deployment.
    Resume { args: Vec<String> },
    /// Restart the pods of a deployment, daemon set or stateful set.
    Restart { args: Vec<String> },
}

#[derive(Subcommand)]
enum SetCmd {
    /// Update the images of a pod template: TYPE/NAME CONTAINER=IMAGE...
    Image {
        args: Vec<String>,
        /// Record the command in the kubernetes.io/change-cause annotation.
        #[arg(long, default_value_t = false, action = clap::ArgAction::Set,
              num_args = 0..=1, default_missing_value = "true")]
        record: bool,
    },
}

#[derive(Subcommand)]
enum TopCmd {
    /// CPU and memory use of nodes.
    #[command(visible_aliases = ["nodes", "no"])]
    Node {
        name: Option<String>,
        #[arg(long)]
        no_headers: bool,
    },
    /// CPU and memory use of pods.
    #[command(visible_aliases = ["pods", "po"])]
    Pod {
        name: Option<String>,
        #[command(flatten)]
        ns: AllNamespaces,
        /// One row per container.
        #[arg(long)]
        containers: bool,
        #[arg(long)]
        no_headers: bool,
    },
}

#[derive(Args)]
struct LabelCmd {
    /// TYPE NAME… or TYPE/NAME…, then KEY=VALUE… and KEY-…
    args: Vec<String>,
    /// Allow changing existing values.
    #[arg(long)]
    overwrite: bool,
    #[arg(short = 'l', long)]
    selector: Option<String>,
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    ns: AllNamespaces,
}

#[derive(Subcommand)]
enum CreateWhat {
    /// Create a namespace.
    #[command(alias = "ns")]
    Namespace {
        name: String,
        #[command(flatten)]
        common: CreateCommon,
    },
    /// Create a config map from literals, files or directories.
    #[command(alias = "cm")]
    Configmap {
        name: String,
        #[arg(long)]
        from_literal: Vec<String>,
        #[arg(long)]
        from_file: Vec<String>,
        #[command(flatten)]
        common: CreateCommon,
    },
    /// Create a secret.
    Secret {
        #[command(subcommand)]
        kind: SecretKind,
    },
}

#[derive(Subcommand)]
enum SecretKind {
    /// A secret from literals, files or directories.
    Generic {
        name: String,
        #[arg(long)]
        from_literal: Vec<String>,
        #[arg(long)]
        from_file: Vec<String>,
        #[arg(long = "type", default_value = "Opaque")]
        secret_type: String,
        #[command(flatten)]
        common: CreateCommon,
    },
    /// A TLS secret from a PEM certificate and key.
    Tls {
        name: String,
        #[arg(long)]
        cert: String,
        #[arg(long)]
        key: String,
        #[command(flatten)]
        common: CreateCommon,
    },
}

#[derive(Args, Clone)]
struct CreateCommon {
    /// none, client (print only) or server.
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    dry_run: String,
    #[arg(short = 'o', long)]
    output: Option<String>,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Show the merged kubeconfig, secrets redacted.
    View {
        #[arg(long)]
        raw: bool,
        #[arg(long)]
        minify: bool,
        /// Accepted for kubectl compatibility; data is shown inline with --raw.
        #[arg(long)]
        flatten: bool,
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Set the current context.
    UseContext { name: String },
    /// Show the current context.
    CurrentContext,
    /// List the contexts.
    GetContexts,
}

/// The command line, as `--record` writes it into `kubernetes.io/change-cause`.
fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or(p)
        })
        .unwrap_or_else(|| "skiffctl".into());
    std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_duration(text: &str) -> Result<Option<Duration>> {
    let text = text.trim();
    let (num, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid duration {text:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        other => anyhow::bail!("invalid duration unit {other:?} in {text:?}"),
    };
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

async fn connect(cli_globals: &Globals, all_namespaces: bool) -> Result<Cluster> {
    let mut globals = cli_globals.clone();
    globals.all_namespaces = all_namespaces;
    Cluster::connect(&globals).await
}

async fn run(cli: Cli) -> Result<()> {
    let globals = Globals {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        namespace: cli.namespace.clone(),
        all_namespaces: false,
    };
    match cli.command {
        Command::Apply {
            files, validate, ..
        } => {
            let cluster = connect(&globals, false).await?;
            apply::run(&cluster, apply::Verb::Apply, &files, validate, false).await
        }
        Command::Create {
            files,
            validate,
            save_config,
            what,
        } => match what {
            None => {
                let cluster = connect(&globals, false).await?;
                apply::run(&cluster, apply::Verb::Create, &files, validate, save_config).await
            }
            Some(what) => {
                let (object, common) = match what {
                    CreateWhat::Namespace { name, common } => (create::namespace(&name), common),
                    CreateWhat::Configmap {
                        name,
                        from_literal,
                        from_file,
                        common,
                    } => {
                        let entries =
                            create::gather(&from_literal, &from_file, "ConfigMap", &name)?;
                        (create::configmap(&name, &entries), common)
                    }
                    CreateWhat::Secret {
                        kind:
                            SecretKind::Generic {
                                name,
                                from_literal,
                                from_file,
                                secret_type,
                                common,
                            },
                    } => {
                        let entries = create::gather(&from_literal, &from_file, "Secret", &name)?;
                        (create::secret(&name, &secret_type, &entries), common)
                    }
                    CreateWhat::Secret {
                        kind:
                            SecretKind::Tls {
                                name,
                                cert,
                                key,
                                common,
                            },
                    } => (create::tls_secret(&name, &cert, &key)?, common),
                };
                let cluster = if common.dry_run == "client" {
                    None
                } else {
                    Some(connect(&globals, false).await?)
                };
                create::submit(
                    cluster.as_ref(),
                    object,
                    &common.dry_run,
                    common.output.as_deref(),
                )
                .await
            }
        },
        Command::Replace { files, validate } => {
            let cluster = connect(&globals, false).await?;
            apply::run(&cluster, apply::Verb::Replace, &files, validate, false).await
        }
        Command::Delete {
            args,
            files,
            selector,
            all,
            ns,
            grace_period,
            force,
            cascade,
            ignore_not_found,
            wait,
            timeout,
        } => {
            let cluster = connect(&globals, ns.all_namespaces).await?;
            let args = delete::DeleteArgs {
                args,
                files,
                selector,
                all,
                grace_period,
                force,
                cascade,
                ignore_not_found,
                wait,
                timeout: parse_duration(&timeout)?,
            };
            delete::run(&cluster, &args).await
        }
        Command::Get {
            args,
            output,
            selector,
            field_selector,
            ns,
            show_labels,
            label_columns,
            watch,
            watch_only,
            no_headers,
            ignore_not_found,
        } => {
            // Check the arguments before connecting, so mistakes read the same anywhere.
            output::Format::parse(output.as_deref())?;
            target::parse(&args, "get")?;
            let cluster = connect(&globals, ns.all_namespaces).await?;
            let args = get::GetArgs {
                args,
                output,
                selector,
                field_selector,
                show_labels,
                label_columns,
                watch,
                watch_only,
                no_headers,
                ignore_not_found,
            };
            get::run(&cluster, &args).await
        }
        Command::Describe { args, selector, ns } => {
            target::parse(&args, "describe")?;
            let cluster = connect(&globals, ns.all_namespaces).await?;
            describe::run(&cluster, &args, selector.as_deref()).await
        }
        Command::Label(cmd) => label(&globals, labels::Field::Labels, cmd).await,
        Command::Annotate(cmd) => label(&globals, labels::Field::Annotations, cmd).await,
        Command::Scale {
            args,
            replicas,
            current_replicas,
        } => {
            let cluster = connect(&globals, false).await?;
            modify::scale(&cluster, &args, replicas, current_replicas).await
        }
        Command::Edit { args, output } => {
            let json = match output.as_deref() {
                None | Some("yaml") => false,
                Some("json") => true,
                Some(other) => anyhow::bail!("the edit mode must be yaml or json, not {other:?}"),
            };
            let cluster = connect(&globals, false).await?;
            edit::run(&cluster, &args, json).await
        }
        Command::Patch {
            args,
            patch,
            patch_type,
            subresource,
        } => {
            let kind = modify::parse_patch_type(&patch_type)?;
            let cluster = connect(&globals, false).await?;
            modify::patch(&cluster, &args, &patch, kind, subresource.as_deref()).await
        }
        Command::Explain { what } => {
            print!("{}", explain::explain(&what)?);
            Ok(())
        }
        Command::ApiResources {
            namespaced,
            api_group,
            output,
            no_headers,
        } => {
            let cluster = connect(&globals, false).await?;
            let args = info::ApiResourcesArgs {
                namespaced,
                api_group,
                output,
                no_headers,
            };
            info::api_resources(&cluster, &args).await
        }
        Command::Version { client, output } => {
            if client {
                info::version(None, output.as_deref()).await
            } else {
                let cluster = connect(&globals, false).await?;
                info::version(Some(&cluster), output.as_deref()).await
            }
        }
        Command::ClusterInfo => {
            let cluster = connect(&globals, false).await?;
            info::cluster_info(&cluster).await
        }
        Command::Config { what } => config(&globals, what),
        Command::Logs {
            pod,
            container,
            follow,
            tail,
            since,
            since_time,
            timestamps,
            previous,
            all_containers,
            prefix,
            limit_bytes,
        } => {
            let args = logs::LogsArgs {
                pod,
                container,
                follow,
                tail,
                since,
                since_time,
                timestamps,
                previous,
                all_containers,
                prefix,
                limit_bytes,
            };
            // Bad flags are reported before any connection is made.
            logs::params(&args)?;
            let cluster = connect(&globals, false).await?;
            logs::run(&cluster, &args).await
        }
        Command::Exec {
            pod,
            container,
            stdin,
            tty,
            command,
        } => {
            if command.is_empty() {
                anyhow::bail!("you must specify at least one command for the container (after --)");
            }
            let cluster = connect(&globals, false).await?;
            let args = exec::ExecArgs {
                pod,
                container,
                stdin,
                tty,
                command,
            };
            exec::run(&cluster, &args).await
        }
        Command::PortForward {
            pod,
            ports,
            address,
        } => {
            for p in &ports {
                portforward::parse_port(p)?;
            }
            let cluster = connect(&globals, false).await?;
            portforward::run(&cluster, &pod, &ports, &address).await
        }
        Command::Top { what } => match what {
            TopCmd::Node { name, no_headers } => {
                let cluster = connect(&globals, false).await?;
                top::nodes(&cluster, name.as_deref(), no_headers).await
            }
            TopCmd::Pod {
                name,
                ns,
                containers,
                no_headers,
            } => {
                let cluster = connect(&globals, ns.all_namespaces).await?;
                let args = top::TopPodArgs {
                    name,
                    all_namespaces: ns.all_namespaces,
                    containers,
                    no_headers,
                };
                top::pods(&cluster, &args).await
            }
        },
        Command::Rollout { what } => rollout(&globals, what).await,
        Command::Set {
            what: SetCmd::Image { args, record },
        } => {
            set::check_args(&args)?;
            let cluster = connect(&globals, false).await?;
            let cause = record.then(command_line);
            set::image(&cluster, &args, cause.as_deref()).await
        }
        Command::Autoscale {
            args,
            min,
            max,
            cpu_percent,
            name,
            common,
        } => {
            let opts = autoscale::AutoscaleArgs {
                min,
                max,
                cpu_percent,
                name,
            };
            autoscale::check(&opts)?;
            target::parse(&args, "autoscale")?;
            let cluster = connect(&globals, false).await?;
            autoscale::run(
                &cluster,
                &args,
                &opts,
                &common.dry_run,
                common.output.as_deref(),
            )
            .await
        }
        Command::Expose {
            args,
            port,
            target_port,
            protocol,
            service_type,
            name,
            selector,
            labels,
            cluster_ip,
            external_ip,
            common,
        } => {
            target::parse(&args, "expose")?;
            let opts = expose::ExposeArgs {
                port,
                target_port,
                protocol,
                service_type,
                name,
                selector,
                labels,
                cluster_ip,
                external_ips: external_ip,
            };
            let cluster = connect(&globals, false).await?;
            expose::run(
                &cluster,
                &args,
                &opts,
                &common.dry_run,
                common.output.as_deref(),
            )
            .await
        }
        Command::Run {
            name,
            image,
            port,
            env,
            labels,
            annotations,
            restart,
            command,
            image_pull_policy,
            service_account,
            common,
            args,
        } => {
            let opts = runpod::RunArgs {
                name,
                image,
                port,
                env,
                labels,
                annotations,
                restart,
                command,
                image_pull_policy,
                service_account,
                args,
            };
            // Bad flags are reported before any connection is made.
            runpod::pod_for(&opts)?;
            let cluster = if common.dry_run == "client" {
                None
            } else {
                Some(connect(&globals, false).await?)
            };
            runpod::run(
                cluster.as_ref(),
                &opts,
                &common.dry_run,
                common.output.as_deref(),
            )
            .await
        }
        Command::Cordon { nodes } => {
            let cluster = connect(&globals, false).await?;
            drain::cordon(&cluster, &nodes, true).await
        }
        Command::Uncordon { nodes } => {
            let cluster = connect(&globals, false).await?;
            drain::cordon(&cluster, &nodes, false).await
        }
        Command::Drain {
            nodes,
            force,
            ignore_daemonsets,
            delete_emptydir_data,
            grace_period,
            timeout,
            disable_eviction,
            pod_selector,
        } => {
            let args = drain::DrainArgs {
                nodes,
                options: drain::DrainOptions {
                    force,
                    ignore_daemonsets,
                    delete_emptydir_data,
                },
                grace_period,
                timeout: parse_duration(&timeout)?,
                disable_eviction,
                pod_selector,
            };
            let cluster = connect(&globals, false).await?;
            drain::drain(&cluster, &args).await
        }
    }
}

async fn rollout(globals: &Globals, what: RolloutCmd) -> Result<()> {
    match what {
        RolloutCmd::Status {
            args,
            watch,
            timeout,
            revision,
        } => {
            let opts = rollout::StatusOptions {
                watch,
                timeout: parse_duration(&timeout)?,
                revision: (revision > 0).then_some(revision),
            };
            target::parse(&args, "rollout status")?;
            let cluster = connect(globals, false).await?;
            rollout::status(&cluster, &args, opts).await
        }
        RolloutCmd::History { args, revision } => {
            target::parse(&args, "rollout history")?;
            let cluster = connect(globals, false).await?;
            rollout::history(&cluster, &args, revision).await
        }
        RolloutCmd::Undo { args, to_revision } => {
            target::parse(&args, "rollout undo")?;
            let cluster = connect(globals, false).await?;
            rollout::undo(&cluster, &args, to_revision).await
        }
        RolloutCmd::Pause { args } => rollout_change(globals, args, rollout::Change::Pause).await,
        RolloutCmd::Resume { args } => rollout_change(globals, args, rollout::Change::Resume).await,
        RolloutCmd::Restart { args } => {
            rollout_change(globals, args, rollout::Change::Restart).await
        }
    }
}

async fn rollout_change(
    globals: &Globals,
    args: Vec<String>,
    change: rollout::Change,
) -> Result<()> {
    target::parse(&args, "rollout")?;
    let cluster = connect(globals, false).await?;
    rollout::change(&cluster, &args, change).await
}

async fn label(globals: &Globals, field: labels::Field, cmd: LabelCmd) -> Result<()> {
    // Bad change specs are reported before any connection is made.
    labels::parse_args(&cmd.args, field)?;
    let cluster = connect(globals, cmd.ns.all_namespaces).await?;
    let args = labels::LabelArgs {
        args: cmd.args,
        overwrite: cmd.overwrite,
        selector: cmd.selector,
        all: cmd.all,
    };
    labels::run(&cluster, field, &args).await
}

fn config(globals: &Globals, what: ConfigCmd) -> Result<()> {
    let paths = kubeconfig::paths(globals.kubeconfig.as_deref())?;
    match what {
        ConfigCmd::View {
            raw,
            minify,
            flatten: _,
            output,
        } => {
            let merged = kubeconfig::merged(&paths)?;
            let view = kubeconfig::view(&merged, raw, minify)?;
            match output.as_deref() {
                None | Some("yaml") => print!("{}", output::to_yaml(&view)),
                Some("json") => print!("{}", output::to_json(&view)),
                Some(spec) => match output::Format::parse(Some(spec))? {
                    output::Format::JsonPath(t) => print!("{}", t.render(&view)),
                    _ => anyhow::bail!("--output must be yaml, json or jsonpath=…"),
                },
            }
        }
        ConfigCmd::UseContext { name } => {
            kubeconfig::use_context(&paths, &name)?;
            println!("Switched to context \"{name}\".");
        }
        ConfigCmd::CurrentContext => {
            let merged = kubeconfig::merged(&paths)?;
            let (_, current) = kubeconfig::contexts(&merged);
            if current.is_empty() {
                anyhow::bail!("current-context is not set");
            }
            println!("{current}");
        }
        ConfigCmd::GetContexts => {
            let merged = kubeconfig::merged(&paths)?;
            let (list, current) = kubeconfig::contexts(&merged);
            let header = ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
                .map(String::from)
                .to_vec();
            let rows = list
                .iter()
                .map(|c| {
                    let name = c.get("name").and_then(|v| v.as_str()).unwrap_or("");
                    let field = |f: &str| {
                        c.pointer(&format!("/context/{f}"))
                            .and_then(|v| v.as_str())
                            .unwrap_or("")
                            .to_string()
                    };
                    vec![
                        if name == current {
                            "*".into()
                        } else {
                            String::new()
                        },
                        name.to_string(),
                        field("cluster"),
                        field("user"),
                        field("namespace"),
                    ]
                })
                .collect();
            print!("{}", table::render(header, rows, false));
        }
    }
    Ok(())
}

fn init_logging(verbosity: u8) {
    let default = match verbosity {
        // kube-rs logs failures it also returns; the returned error is what the user sees.
        0..=3 => "skiffctl=warn",
        4..=5 => "skiffctl=info,kube=info",
        6..=7 => "skiffctl=debug,kube=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKIFFCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbosity);
    // Exactly one TLS backend is compiled in; make it the process default explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<errors::Reported>().is_some() => ExitCode::FAILURE,
        Err(e) if e.downcast_ref::<errors::Exit>().is_some() => {
            let code = e.downcast_ref::<errors::Exit>().map_or(1, |x| x.0);
            ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("{}", errors::render(&e));
            ExitCode::FAILURE
        }
    }
}

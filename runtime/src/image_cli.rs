//! `skiff-runtime image …`: the node's image store from the command line — import an OCI
//! layout archive, pull with a progress display, list, remove. Safe beside a running daemon
//! (the store serialises its table across processes).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use skiff_runtime::image::{ImageStore, PullOptions, PullProgress, RegistryCredentials};

#[derive(clap::Args, Debug, Clone)]
pub struct ImageArgs {
    /// The daemon's root dir (the store is `{root}/images`).
    #[arg(long, global = true, default_value = "/var/lib/skiff")]
    pub root_dir: PathBuf,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ImageCommand {
    /// Import the images of an OCI image layout archive (`docker save`/`skopeo copy
    /// oci-archive:` output, or `buildah push … oci-archive:`).
    Import {
        archive: PathBuf,
        /// Repository for images named only by a tag in the archive.
        #[arg(long)]
        repository: Option<String>,
    },
    /// Pull an image from a registry (Docker Hub names as `docker pull` understands them).
    Pull {
        reference: String,
        /// Registries spoken to over plain HTTP (`host:port`).
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        /// `REGISTRY=MIRROR`: pull images of REGISTRY from MIRROR first.
        #[arg(long = "registry-mirror")]
        registry_mirrors: Vec<String>,
        /// `USER:PASSWORD` for the registry.
        #[arg(long, env = "SKIFF_REGISTRY_CREDS")]
        creds: Option<String>,
    },
    /// List the images in the store.
    Ls,
    /// Remove an image by reference or ID (its layers go once no image uses them).
    Rm { references: Vec<String> },
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

pub async fn run(args: ImageArgs) -> Result<()> {
    let store = ImageStore::open(&args.root_dir)
        .with_context(|| format!("opening the image store under {}", args.root_dir.display()))?;
    match args.command {
        ImageCommand::Import {
            archive,
            repository,
        } => {
            let records = store
                .import_archive_as(&archive, repository.as_deref())
                .await
                .with_context(|| format!("importing {}", archive.display()))?;
            for r in records {
                println!(
                    "imported {} ({}, {})",
                    r.references.join(", "),
                    short_id(&r.image_id()),
                    human(r.size)
                );
            }
        }
        ImageCommand::Pull {
            reference,
            insecure_registries,
            registry_mirrors,
            creds,
        } => {
            let mirrors: HashMap<String, String> = registry_mirrors
                .iter()
                .map(|s| {
                    s.split_once('=')
                        .map(|(r, m)| (r.to_string(), m.to_string()))
                        .with_context(|| {
                            format!("--registry-mirror {s:?}: expected REGISTRY=MIRROR")
                        })
                })
                .collect::<Result<_>>()?;
            let credentials = match creds {
                Some(c) => {
                    let (username, password) = c
                        .split_once(':')
                        .context("--creds: expected USER:PASSWORD")?;
                    RegistryCredentials::Basic {
                        username: username.to_string(),
                        password: password.to_string(),
                    }
                }
                None => RegistryCredentials::Anonymous,
            };
            let options = PullOptions {
                credentials,
                insecure_registries,
                mirrors,
            };
            let bars = MultiProgress::new();
            let style = ProgressStyle::with_template(
                "{prefix:>14} [{bar:30}] {bytes:>10}/{total_bytes:<10} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let mut layers: HashMap<String, ProgressBar> = HashMap::new();
            let record = store
                .pull(&reference, &options, |progress| match progress {
                    PullProgress::Resolved {
                        reference,
                        registry,
                        layers: n,
                        total_bytes,
                        ..
                    } => {
                        let _ = bars.println(format!(
                            "pulling {reference} from {registry}: {n} layers, {}",
                            human(total_bytes)
                        ));
                    }
                    PullProgress::Layer {
                        digest,
                        bytes_done,
                        bytes_total,
                        already_present,
                    } => {
                        let bar = layers.entry(digest.clone()).or_insert_with(|| {
                            let bar = bars.add(ProgressBar::new(bytes_total));
                            bar.set_style(style.clone());
                            bar.set_prefix(short_id(&digest).to_string());
                            bar
                        });
                        bar.set_position(bytes_done);
                        if already_present {
                            bar.finish_with_message("already present");
                        } else if bytes_done >= bytes_total {
                            bar.finish_with_message("done");
                        }
                    }
                    PullProgress::Done {
                        reference,
                        image_id,
                        size,
                        bytes_fetched,
                        elapsed,
                    } => {
                        let _ = bars.println(format!(
                            "pulled {reference} ({}): {} in {:.1?}, {} fetched",
                            short_id(&image_id),
                            human(size),
                            elapsed,
                            human(bytes_fetched)
                        ));
                    }
                })
                .await
                .with_context(|| format!("pulling {reference}"))?;
            println!("{}", record.image_id());
        }
        ImageCommand::Ls => {
            let images = store.list().context("listing images")?;
            println!("{:<60} {:<14} {:>10}", "REFERENCE", "IMAGE ID", "SIZE");
            for image in images {
                let refs = if image.references.is_empty() {
                    vec!["<none>".to_string()]
                } else {
                    image.references.clone()
                };
                for r in refs {
                    println!(
                        "{:<60} {:<14} {:>10}",
                        r,
                        short_id(&image.image_id()),
                        human(image.size)
                    );
                }
            }
        }
        ImageCommand::Rm { references } => {
            if references.is_empty() {
                anyhow::bail!("image rm: name at least one image reference or ID");
            }
            for reference in references {
                let removed = store
                    .remove(&reference)
                    .await
                    .with_context(|| format!("removing {reference}"))?;
                for r in removed {
                    println!("untagged {r}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ids_read_like_docker() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1_500_000), "1.5 MB");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}

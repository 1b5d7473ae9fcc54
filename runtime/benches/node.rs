//! Node benchmarks (root, real kernel):
//!
//! - `pods`: pod create → Running with the real daemon (one after another, and all at
//!   once), its memory with the pods running, and deletion;
//! - `containers`: `skiff-runtime run` vs `crun run` vs `runc run` of `/bin/true`;
//! - `network`: skiff's pod network setup vs the CNI `bridge` plugin.
//!
//! Run: `cargo bench -p skiff-runtime --bench node -- [pods]
//! [containers] [network] [--pods N] [--runs N] [--netns N]` (all three when none is
//! named), or `scripts/bench-node.sh`, which installs what they need first.
//!
//! Everything happens in network namespaces, cgroups (under a bench parent) and temp dirs
//! the benchmark makes, removed at the end, on error, on panic and on Ctrl-C.

#[path = "node/common.rs"]
mod common;
#[path = "node/containers.rs"]
mod containers;
#[path = "../tests/support/image/mod.rs"]
mod image_support;
#[path = "node/network.rs"]
mod network;
#[path = "node/pods.rs"]
mod pods;
#[path = "../tests/support/rootfs.rs"]
mod rootfs;

use anyhow::{bail, Context, Result};

const BENCHMARKS: &[&str] = &["pods", "containers", "network"];

/// Command-line options.
struct Options {
    benchmarks: Vec<String>,
    pods: usize,
    runs: usize,
    netns: usize,
}

fn usage() -> String {
    format!(
        "usage: cargo bench -p skiff-runtime --bench node -- [{}] \
         [--pods N (default 100)] [--runs N (default 200)] [--netns N (default 100)]",
        BENCHMARKS.join("] [")
    )
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        benchmarks: Vec::new(),
        pods: 100,
        runs: 200,
        netns: 100,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> Result<usize> {
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a number"))?;
            let n: usize = value
                .parse()
                .with_context(|| format!("{flag} {value:?}: not a number"))?;
            if n == 0 {
                bail!("{flag} must be at least 1");
            }
            Ok(n)
        };
        match arg.as_str() {
            // cargo passes --bench to harness-less benchmarks.
            "--bench" => {}
            "--pods" => options.pods = number("--pods")?,
            "--runs" => options.runs = number("--runs")?,
            "--netns" => options.netns = number("--netns")?,
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            name if BENCHMARKS.contains(&name) => options.benchmarks.push(name.to_string()),
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    if options.benchmarks.is_empty() {
        options.benchmarks = BENCHMARKS.iter().map(|b| b.to_string()).collect();
    }
    Ok(options)
}

fn run(options: &Options) -> Result<common::Summary> {
    common::require_root()?;
    common::require_program("ip", "apt-get install -y iproute2")?;
    let mut summary = common::Summary::default();
    let mut failures = Vec::new();
    for name in &options.benchmarks {
        common::check_interrupted()?;
        let result = match name.as_str() {
            "pods" => pods::run(&mut summary, options.pods),
            "containers" => containers::run(&mut summary, options.runs),
            "network" => network::run(&mut summary, options.netns),
            other => bail!("unknown benchmark {other}"),
        };
        if let Err(error) = result {
            if common::interrupted() {
                return Err(error);
            }
            eprintln!("\nbenchmark {name} failed: {error:#}");
            summary.figure("—", name.clone(), format!("failed: {error}"));
            failures.push(name.clone());
        }
    }
    if !failures.is_empty() {
        print_summary(&summary);
        bail!("failed: {}", failures.join(", "));
    }
    Ok(summary)
}

fn print_summary(summary: &common::Summary) {
    println!("\n---- summary (Markdown) ----\n");
    print!("{}", summary.render(&common::machine_description()));
    println!("\nRerun: `scripts/bench-node.sh [pods|containers|network]` (as root).");
}

fn main() {
    if let Some(plan) = std::env::var_os(containers::HELPER_ENV) {
        std::process::exit(containers::helper_main(&plan.to_string_lossy()));
    }
    let options = match parse_args() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("bench: {error:#}");
            std::process::exit(2);
        }
    };
    if let Err(error) = common::install_interrupt_handler() {
        eprintln!("bench: {error:#}");
        std::process::exit(1);
    }
    let code = match run(&options) {
        Ok(summary) => {
            print_summary(&summary);
            0
        }
        Err(error) => {
            eprintln!("\nbench: {error:#}");
            1
        }
    };
    std::process::exit(code);
}

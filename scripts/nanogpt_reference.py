"""The PyTorch reference for `cargo xtask bench peers`: nanoGPT's model and training loop at
Kiln's `shakespeare-baby` preset, on Kiln's corpus and split, so the two can be compared on the
same curve and the same clock.

    python scripts/nanogpt_reference.py train --out bench/peers-pytorch-train.json
    python scripts/nanogpt_reference.py time --steps 20 --out bench/peers-pytorch-time.json

The model is nanoGPT's (karpathy/nanoGPT model.py, written out again here): learned positions,
pre-LayerNorm blocks without biases, causal attention, tanh-GELU MLP, tied LM head, GPT-2's
initialisation with residual projections scaled by 1/sqrt(2·n_layer). Training follows Kiln's
preset (crate/src/config.rs): AdamW (decay on matrices only), linear warmup then cosine decay,
gradient clipping at 1.0. The split is Kiln's: the first 90% of the characters train, the rest
validate (crate/src/data/corpus.rs). Runs on the CPU with 2 threads, as the machine has 2 cores.
"""
import argparse
import json
import math
import pathlib
import time

import torch
import torch.nn as nn
from torch.nn import functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Kiln's shakespeare-baby preset.
N_LAYER, N_HEAD, N_EMBD, BLOCK = 4, 4, 128, 64
BATCH, LR, MIN_LR, WARMUP, MAX_STEPS = 12, 1e-3, 1e-4, 100, 2000
WEIGHT_DECAY, BETAS, GRAD_CLIP, EVAL_INTERVAL, SEED = 0.1, (0.9, 0.99), 1.0, 250, 1337


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(N_EMBD, bias=False)
        self.c_attn = nn.Linear(N_EMBD, 3 * N_EMBD, bias=False)
        self.attn_proj = nn.Linear(N_EMBD, N_EMBD, bias=False)
        self.ln_2 = nn.LayerNorm(N_EMBD, bias=False)
        self.c_fc = nn.Linear(N_EMBD, 4 * N_EMBD, bias=False)
        self.mlp_proj = nn.Linear(4 * N_EMBD, N_EMBD, bias=False)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(N_EMBD, dim=2)
        q, k, v = (y.view(b, t, N_HEAD, c // N_HEAD).transpose(1, 2) for y in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.wte = nn.Embedding(vocab, N_EMBD)
        self.wpe = nn.Embedding(BLOCK, N_EMBD)
        self.h = nn.ModuleList(Block() for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(N_EMBD, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * N_LAYER) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def lr_at(step):
    """Kiln's schedule (crate/src/train.rs lr_at), which is nanoGPT's get_lr."""
    if step < WARMUP:
        return LR * (step + 1) / (WARMUP + 1)
    progress = (step - WARMUP) / (MAX_STEPS - WARMUP)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * progress)) * (LR - MIN_LR)


def data():
    text = (ROOT / "web/data/shakespeare.txt").read_text(encoding="utf-8")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    tokens = torch.tensor([index[c] for c in text], dtype=torch.long)
    split = int(len(text) * 0.9)
    return len(chars), tokens[:split], tokens[split:]


def batch(tokens, generator):
    starts = torch.randint(len(tokens) - BLOCK, (BATCH,), generator=generator)
    x = torch.stack([tokens[s:s + BLOCK] for s in starts])
    y = torch.stack([tokens[s + 1:s + 1 + BLOCK] for s in starts])
    return x, y


def setup():
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    vocab, train, val = data()
    model = GPT(vocab)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                               {"params": other, "weight_decay": 0.0}], lr=LR, betas=BETAS)
    return model, optim, train, val


def step(model, optim, train, generator, n):
    for group in optim.param_groups:
        group["lr"] = lr_at(n)
    loss = model(*batch(train, generator))
    optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optim.step()
    return loss.item()


@torch.no_grad()
def evaluate(model, val, eval_steps):
    """Mean loss over the same `eval_steps` validation batches at every evaluation (as Kiln)."""
    model.eval()
    generator = torch.Generator().manual_seed(SEED + 1)
    loss = sum(model(*batch(val, generator)).item() for _ in range(eval_steps)) / eval_steps
    model.train()
    return loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "time"])
    parser.add_argument("--steps", type=int, default=MAX_STEPS)
    parser.add_argument("--eval-steps", type=int, default=200)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    a = parser.parse_args()
    model, optim, train, val = setup()
    generator = torch.Generator().manual_seed(SEED)
    params = sum(p.numel() for p in model.parameters())
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "params": params}
    if a.mode == "time":
        for n in range(2):
            step(model, optim, train, generator, n)
        times = []
        for n in range(2, 2 + a.steps):
            start = time.perf_counter()
            step(model, optim, train, generator, n)
            times.append((time.perf_counter() - start) * 1e3)
        ms = sorted(times)[len(times) // 2]
        result |= {"ms_per_step": ms, "tokens_per_sec": BATCH * BLOCK / (ms / 1e3), "steps": a.steps}
    else:
        curve = []
        start = time.perf_counter()
        for n in range(a.steps):
            loss = step(model, optim, train, generator, n)
            done = n + 1
            if done % EVAL_INTERVAL == 0 or done == a.steps:
                curve.append({"step": done, "train_loss": loss, "val_loss": evaluate(model, val, a.eval_steps)})
                print(f"step {done}: train loss {loss:.4f}, val loss {curve[-1]['val_loss']:.4f}", flush=True)
        result |= {"curve": curve, "seconds": time.perf_counter() - start, "eval_steps": a.eval_steps}
    a.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

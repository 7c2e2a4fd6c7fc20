"""The GPT-2 parity fixture: random tiny GPT-2 weights under transformers' tensor names, and the
logits a reference GPT-2 forward pass (numpy, float64, written from the GPT-2 paper's and
transformers' definitions) gives for fixed token ids. Kiln's import must reproduce them
(crate/tests/gpt2.rs).

    pip install numpy safetensors && python scripts/gpt2_fixture.py

writes crate/tests/fixtures/gpt2-tiny/{model.safetensors, config.json, tokenizer.json,
expected.json}; tokenizer.json is GPT-2's byte-level BPE in Hugging Face's format with no merges
(256 tokens, one per byte, in GPT-2's byte-to-character mapping).
"""
import json
import pathlib

import numpy as np
from safetensors.numpy import save_file

VOCAB, POSITIONS, EMBD, LAYERS, HEADS = 256, 16, 32, 2, 4
OUT = pathlib.Path(__file__).resolve().parent.parent / "crate/tests/fixtures/gpt2-tiny"

rng = np.random.default_rng(7)


def normal(*shape, std=0.2):
    return (rng.standard_normal(shape) * std).astype(np.float32)


# GPT-2's Conv1D stores weights as [in, out].
w = {"transformer.wte.weight": normal(VOCAB, EMBD), "transformer.wpe.weight": normal(POSITIONS, EMBD)}
for i in range(LAYERS):
    p = f"transformer.h.{i}."
    for name, fan_in, fan_out in [("attn.c_attn", EMBD, 3 * EMBD), ("attn.c_proj", EMBD, EMBD),
                                  ("mlp.c_fc", EMBD, 4 * EMBD), ("mlp.c_proj", 4 * EMBD, EMBD)]:
        w[p + name + ".weight"] = normal(fan_in, fan_out)
        w[p + name + ".bias"] = normal(fan_out, std=0.1)
    for ln in ["ln_1", "ln_2"]:
        w[p + ln + ".weight"] = 1 + normal(EMBD, std=0.1)
        w[p + ln + ".bias"] = normal(EMBD, std=0.1)
w["transformer.ln_f.weight"] = 1 + normal(EMBD, std=0.1)
w["transformer.ln_f.bias"] = normal(EMBD, std=0.1)


def layer_norm(x, name):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * w[name + ".weight"] + w[name + ".bias"]


def conv1d(x, name):
    return x @ w[name + ".weight"] + w[name + ".bias"]


def gelu_new(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def forward(ids):
    """Logits [T, VOCAB] for one sequence."""
    t = len(ids)
    x = w["transformer.wte.weight"][ids].astype(np.float64) + w["transformer.wpe.weight"][:t]
    d = EMBD // HEADS
    causal = np.tril(np.ones((t, t), dtype=bool))
    for i in range(LAYERS):
        p = f"transformer.h.{i}."
        q, k, v = np.split(conv1d(layer_norm(x, p + "ln_1"), p + "attn.c_attn"), 3, axis=-1)
        heads = lambda y: y.reshape(t, HEADS, d).transpose(1, 0, 2)
        q, k, v = heads(q), heads(k), heads(v)
        scores = np.where(causal, q @ k.transpose(0, 2, 1) / np.sqrt(d), -np.inf)
        att = np.exp(scores - scores.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(1, 0, 2).reshape(t, EMBD)
        x = x + conv1d(y, p + "attn.c_proj")
        h = gelu_new(conv1d(layer_norm(x, p + "ln_2"), p + "mlp.c_fc"))
        x = x + conv1d(h, p + "mlp.c_proj")
    return layer_norm(x, "transformer.ln_f") @ w["transformer.wte.weight"].T


ids = rng.integers(0, VOCAB, size=(2, 12)).tolist()
OUT.mkdir(parents=True, exist_ok=True)
save_file(w, str(OUT / "model.safetensors"))
config = {
    "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": VOCAB,
    "n_positions": POSITIONS, "n_ctx": POSITIONS, "n_embd": EMBD, "n_layer": LAYERS,
    "n_head": HEADS, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
    "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": True,
}
(OUT / "config.json").write_text(json.dumps(config, indent=2))


def bytes_to_unicode():
    """GPT-2's printable stand-in character for each byte."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
tokenizer = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
    "pre_tokenizer": byte_level, "post_processor": byte_level, "decoder": byte_level,
    "model": {
        "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
        "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
        "vocab": {c: b for b, c in sorted(bytes_to_unicode().items())}, "merges": [],
    },
}
(OUT / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False, indent=1))
logits = [np.round(forward(seq), 7).tolist() for seq in ids]
(OUT / "expected.json").write_text(json.dumps({"ids": ids, "logits": logits}))
print(f"wrote {OUT}")

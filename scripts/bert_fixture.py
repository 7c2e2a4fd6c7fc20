"""The BERT parity fixture, written by transformers itself (crate/tests/bert.rs reads it).

    cargo xtask interop        # creates bench/.venv, runs this, then checks Kiln against it
    python scripts/bert_fixture.py web/data/shakespeare.txt
    python scripts/bert_fixture.py --check MLM_DIR CLASSIFIER_DIR   # `kiln export`s of the imports

- The tokenizer is BERT's pipeline (lower-casing normalizer, BERT's pre-tokenizer, WordPiece,
  the `[CLS] … [SEP]` template) trained by `tokenizers` on the bundled Shakespeare, with BERT's
  special tokens first.
- The models are transformers' BertForMaskedLM and BertForSequenceClassification (three classes)
  at a tiny width, every parameter random: biases, LayerNorms and the token-type (segment)
  embedding too, which BERT's initialisation leaves at 0, 1 and small values. LayerNorm ε is
  BERT's 1e-12.
- The logits are transformers' forward pass in float64 for two real sentences cut to 80 tokens
  ([CLS] and [SEP] included), longer than one tile of Kiln's fused attention kernel (64 rows).
- The GELU question: BERT uses the exact (erf) GELU. The same weights with the tanh
  approximation give logits this far from the expected ones (`tanh_gelu_max_delta`), so a parity
  tolerance of 1e-4 tells the two apart. So does LayerNorm's ε: BERT's 1e-12 against PyTorch's
  and GPT-2's 1e-5 (`layer_norm_eps_1e-5_max_delta`).

Writes crate/tests/fixtures/bert-tiny/{mlm,classifier}/{model.safetensors, config.json,
tokenizer.json} and crate/tests/fixtures/bert-tiny/{logits.safetensors, expected.json}.
"""
import json
import pathlib
import sys

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

from gpt2_fixture import TEXTS  # the same two sentences as GPT-2's fixture

VOCAB, POSITIONS, HIDDEN, LAYERS, HEADS, TOKENS = 400, 96, 32, 2, 4, 80
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = ["comedy", "history", "tragedy"]
OUT = pathlib.Path(__file__).resolve().parent.parent / "crate/tests/fixtures/bert-tiny"
def bert_tokenizer(corpus):
    """BERT's tokenizer pipeline (as bert-base-uncased's tokenizer.json has it), trained here."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train([str(corpus)], trainers.WordPieceTrainer(vocab_size=VOCAB, special_tokens=SPECIALS))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def config(vocab_size, **extra):
    return BertConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, intermediate_size=4 * HIDDEN,
                      max_position_embeddings=POSITIONS, type_vocab_size=2, layer_norm_eps=1e-12,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0,
                      **extra)


def randomize(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name and name.endswith(".weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_((0.1 if name.endswith(".bias") else 0.2) * torch.randn_like(p))


def logits(cls, directory, ids, **overrides):
    model = cls.from_pretrained(directory, attn_implementation="eager", dtype=torch.float64,
                                **overrides).eval()
    with torch.no_grad():
        return model(torch.tensor(ids)).logits


def check(mlm_dir, classifier_dir):
    """transformers' Auto classes on Kiln's exports of the imported fixture: the fixture's ids
    (through the exported tokenizer) and logits (to 1e-4)."""
    from transformers import (AutoModelForMaskedLM, AutoModelForSequenceClassification,
                              AutoTokenizer)

    want = load_file(str(OUT / "logits.safetensors"))
    texts = json.loads((OUT / "expected.json").read_text())["texts"]
    for directory, auto, key in [(mlm_dir, AutoModelForMaskedLM, "mlm"),
                                 (classifier_dir, AutoModelForSequenceClassification, "classifier")]:
        tok = AutoTokenizer.from_pretrained(directory)
        assert tok.mask_token == "[MASK]" and tok.cls_token == "[CLS]", tok
        ids = [tok(text, truncation=True, max_length=TOKENS)["input_ids"] for text in texts]
        assert ids == want["ids"].tolist(), f"{key}: AutoTokenizer's ids differ from the fixture's"
        model = auto.from_pretrained(directory, dtype=torch.float64).eval()
        with torch.no_grad():
            got = model(torch.tensor(ids)).logits
        worst = (got - want[key].double()).abs().max().item()
        print(f"{key} export -> transformers ({type(model).__name__}): max |delta logit| = {worst:.2e}")
        assert worst <= 1e-4, worst
    labels = AutoModelForSequenceClassification.from_pretrained(classifier_dir).config.id2label
    assert [labels[i] for i in range(len(LABELS))] == LABELS, labels


def main():
    if sys.argv[1] == "--check":
        return check(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))
    torch.manual_seed(11)
    tok = bert_tokenizer(pathlib.Path(sys.argv[1]))
    assert [tok.token_to_id(s) for s in SPECIALS] == list(range(len(SPECIALS)))
    tok.enable_truncation(TOKENS)
    ids = [tok.encode(text).ids for text in TEXTS]
    assert all(len(seq) == TOKENS for seq in ids), [len(seq) for seq in ids]
    vocab_size = tok.get_vocab_size()

    expected, tanh, eps = {"ids": torch.tensor(ids)}, 0.0, 0.0
    for key, cls, extra in [
        ("mlm", BertForMaskedLM, {}),
        ("classifier", BertForSequenceClassification,
         {"id2label": dict(enumerate(LABELS)), "label2id": {l: i for i, l in enumerate(LABELS)}}),
    ]:
        model = cls(config(vocab_size, **extra)).eval()
        randomize(model)
        directory = OUT / key
        directory.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(directory)
        tok.no_truncation()
        tok.save(str(directory / "tokenizer.json"))
        tok.enable_truncation(TOKENS)
        expected[key] = logits(cls, directory, ids).float().contiguous()
        delta = lambda **change: (logits(cls, directory, ids, **change).float() - expected[key]
                                  ).abs().max().item()
        tanh = max(tanh, delta(hidden_act="gelu_new"))
        eps = max(eps, delta(layer_norm_eps=1e-5))
    save_file(expected, str(OUT / "logits.safetensors"))
    (OUT / "expected.json").write_text(json.dumps({
        "texts": TEXTS,
        "tanh_gelu_max_delta": tanh,
        "layer_norm_eps_1e-5_max_delta": eps,
    }, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: vocabulary {vocab_size}, {TOKENS} tokens per sequence, "
          f"the tanh GELU moves the logits by up to {tanh:.2e}")


if __name__ == "__main__":
    main()

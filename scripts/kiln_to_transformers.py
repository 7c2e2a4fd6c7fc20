"""Load a Kiln model into Hugging Face transformers, generate from it, and keep training it in
PyTorch: the path for runs that outgrow the browser (multi-GPU: launch this with torchrun and
wrap the model in DistributedDataParallel, or use transformers' Trainer).

    cargo run -p kiln -- export --ckpt runs/baby --out runs/baby-hf
    pip install torch transformers tokenizers
    python scripts/kiln_to_transformers.py runs/baby-hf --prompt "HAMLET:" --train web/data/shakespeare.txt

The export directory holds model.safetensors (GPT-2's tensor names), config.json and
tokenizer.json: GPT-2 byte-level BPE in Hugging Face's format, or, for a character-level model,
Kiln's character list, which this script turns into ids itself.
"""
import argparse
import json
import pathlib

import torch
from transformers import GPT2LMHeadModel


class Tokenizer:
    """tokenizer.json as text <-> ids: Hugging Face's format or Kiln's character vocabulary."""

    def __init__(self, path):
        spec = json.loads(path.read_text())
        if "kiln_char_tokenizer" in spec:
            chars = spec["kiln_char_tokenizer"]["chars"]
            index = {c: i for i, c in enumerate(chars)}
            self.encode = lambda text: [index[c] for c in text]
            self.decode = lambda ids: "".join(chars[i] for i in ids)
        else:
            from tokenizers import Tokenizer as HfTokenizer

            hf = HfTokenizer.from_file(str(path))
            self.encode = lambda text: hf.encode(text).ids
            self.decode = lambda ids: hf.decode(ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=pathlib.Path, help="a directory written by `kiln export`")
    parser.add_argument("--prompt", default="\n")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--train", type=pathlib.Path, help="a text file to continue training on")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--out", type=pathlib.Path, help="where to save the trained model (transformers' format)")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = GPT2LMHeadModel.from_pretrained(args.model).to(device)
    tok = Tokenizer(args.model / "tokenizer.json")
    context = model.config.n_positions

    def sample():
        """Top-k sampling whose context slides past n_positions, as Kiln's generation does."""
        ids = tok.encode(args.prompt)
        model.eval()
        with torch.no_grad():
            for _ in range(args.max_new_tokens):
                logits = model(torch.tensor([ids[-context:]], device=device)).logits[0, -1]
                top = torch.topk(logits / 0.8, min(40, logits.numel()))
                pick = torch.multinomial(torch.softmax(top.values, -1), 1)
                ids.append(top.indices[pick].item())
        return tok.decode(ids)

    print(sample())
    if args.train is None:
        return

    data = torch.tensor(tok.encode(args.train.read_text()), dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    model.train()
    for step in range(1, args.steps + 1):
        starts = torch.randint(0, len(data) - context - 1, (8,))
        x = torch.stack([data[s:s + context] for s in starts]).to(device)
        loss = model(x, labels=x).loss  # transformers shifts the labels by one itself
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 10 == 0 or step == 1:
            print(f"step {step}: loss {loss.item():.4f}")
    print(sample())
    if args.out:
        model.save_pretrained(args.out)
        (args.out / "tokenizer.json").write_text((args.model / "tokenizer.json").read_text())


if __name__ == "__main__":
    main()

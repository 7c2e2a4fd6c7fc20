"""Load a Kiln model into Hugging Face transformers, generate from it, and keep training it in
PyTorch: the path for runs that outgrow the browser (multi-GPU: launch this with torchrun and
wrap the model in DistributedDataParallel, or use transformers' Trainer).

    cargo run -p kiln -- export --ckpt runs/baby --out runs/baby-hf
    pip install torch transformers tokenizers
    python scripts/kiln_to_transformers.py runs/baby-hf --prompt "HAMLET:" --train web/data/shakespeare.txt

The export directory holds model.safetensors (GPT-2's tensor names), config.json,
tokenizer.json and tokenizer_config.json, all in Hugging Face's formats (a character-level model's
vocabulary is a BPE without merges), so AutoModelForCausalLM and AutoTokenizer load it as it is.

`--greedy --expect FILE` is the interop check (`cargo xtask interop`): the greedy continuation
must equal FILE's text, which `kiln generate --temperature 0` wrote.
"""
import argparse
import pathlib
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=pathlib.Path, help="a directory written by `kiln export`")
    parser.add_argument("--prompt", default="\n")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--train", type=pathlib.Path, help="a text file to continue training on")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--out", type=pathlib.Path, help="where to save the trained model (transformers' format)")
    parser.add_argument("--greedy", action="store_true", help="argmax decoding instead of top-k sampling")
    parser.add_argument("--expect", type=pathlib.Path, help="fail unless the generated text equals this file's")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(args.model).to(device)
    tok = AutoTokenizer.from_pretrained(args.model)
    context = model.config.n_positions

    def sample():
        """Top-k sampling (or argmax) whose context slides past n_positions, as Kiln's does."""
        ids = tok.encode(args.prompt)
        model.eval()
        with torch.no_grad():
            for _ in range(args.max_new_tokens):
                logits = model(torch.tensor([ids[-context:]], device=device)).logits[0, -1]
                if args.greedy:
                    ids.append(logits.argmax().item())
                    continue
                top = torch.topk(logits / 0.8, min(40, logits.numel()))
                pick = torch.multinomial(torch.softmax(top.values, -1), 1)
                ids.append(top.indices[pick].item())
        return tok.decode(ids)

    text = sample()
    print(text)
    if args.expect is not None:
        expected = args.expect.read_text().removesuffix("\n")
        if text != expected:
            sys.exit(f"transformers generated {text!r}, Kiln {expected!r}")
        print(f"the same {args.max_new_tokens} greedy tokens as Kiln")
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
        tok.save_pretrained(args.out)


if __name__ == "__main__":
    main()

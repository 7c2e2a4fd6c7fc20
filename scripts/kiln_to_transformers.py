"""Load a Kiln model into Hugging Face transformers, generate from it, and keep training it in
PyTorch: the path for runs that outgrow the browser. The same command trains on one CPU or GPU,
and unchanged under torchrun on several (DistributedDataParallel: each process draws its own
batches, gradients are averaged across them).

    cargo run -p kiln -- export --ckpt runs/baby --out runs/baby-hf
    pip install torch transformers
    python scripts/kiln_to_transformers.py runs/baby-hf --prompt "HAMLET:" --train web/data/shakespeare.txt --out runs/baby-more
    torchrun --nproc_per_node=2 scripts/kiln_to_transformers.py runs/baby-hf --train web/data/shakespeare.txt --out runs/baby-more
    cargo run -p kiln -- import --from runs/baby-more --out runs/baby-more-kiln

The export directory holds model.safetensors (GPT-2's tensor names), config.json,
tokenizer.json and tokenizer_config.json, all in Hugging Face's formats (a character-level model's
vocabulary is a BPE without merges), so AutoModelForCausalLM and AutoTokenizer load it as it is;
`--out` writes the same files, which `kiln import` reads back.

Checks for `cargo xtask interop`: `--greedy --expect FILE` (the greedy continuation must equal
FILE's text, which `kiln generate --temperature 0` wrote); `--score TEXT` (prints transformers'
mean log-probability per token of TEXT, which `kiln score` must match). With `--train`, the loss
on the text's last tenth (held out) is measured before and after, and must fall.
"""
import argparse
import os
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
    parser.add_argument("--batch-size", type=int, default=8, help="per process")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--out", type=pathlib.Path, help="where to save the trained model (transformers' format)")
    parser.add_argument("--greedy", action="store_true", help="argmax decoding instead of top-k sampling")
    parser.add_argument("--expect", type=pathlib.Path, help="fail unless the generated text equals this file's")
    parser.add_argument("--adapters", type=pathlib.Path,
                        help="a PEFT LoRA adapter directory (e.g. `kiln export --adapters-only`) to apply")
    parser.add_argument("--score", help="print the mean log-probability per token of this text, and stop")
    args = parser.parse_args()

    # torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; a plain `python` run is one process.
    distributed = "RANK" in os.environ
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if distributed:
        torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
        if device == "cuda":
            device = f"cuda:{os.environ['LOCAL_RANK']}"
    rank = torch.distributed.get_rank() if distributed else 0
    main_process = rank == 0
    model = AutoModelForCausalLM.from_pretrained(args.model).to(device)
    if args.adapters is not None:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, args.adapters).to(device)
    tok = AutoTokenizer.from_pretrained(args.model)
    context = model.config.n_positions

    if args.score is not None:
        model.eval()
        with torch.no_grad():
            x = torch.tensor([tok.encode(args.score)], device=device)
            loss = model(x, labels=x).loss  # the mean over every token after the first
        print(f"per-token log-probability: {-loss.item():.6f}")
        return

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

    if main_process:
        text = sample()
        print(text)
        if args.expect is not None:
            expected = args.expect.read_text().removesuffix("\n")
            if text != expected:
                sys.exit(f"transformers generated {text!r}, Kiln {expected!r}")
            print(f"the same {args.max_new_tokens} greedy tokens as Kiln")
    if args.train is None:
        return
    train(args, model, tok, device, distributed, rank)
    if main_process:
        print(sample())
        if args.out:
            model.save_pretrained(args.out)
            tok.save_pretrained(args.out)
    if distributed:
        torch.distributed.destroy_process_group()


def train(args, model, tok, device, distributed, rank):
    """AdamW on random windows of the text's first 90%; the last 10% is held out."""
    context = model.config.n_positions
    data = torch.tensor(tok.encode(args.train.read_text()), dtype=torch.long)
    split = len(data) * 9 // 10
    train_data, held_out = data[:split], data[split:]
    windows = [held_out[s:s + context] for s in range(0, len(held_out) - context, context)][:64]

    def held_out_loss():
        model.eval()
        with torch.no_grad():
            x = torch.stack(windows).to(device)
            return model(x, labels=x).loss.item()

    before = held_out_loss()
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    batches = torch.Generator().manual_seed(1234 + rank)  # each process its own batches
    for step in range(1, args.steps + 1):
        net.train()
        starts = torch.randint(0, len(train_data) - context - 1, (args.batch_size,), generator=batches)
        x = torch.stack([train_data[s:s + context] for s in starts]).to(device)
        loss = net(x, labels=x).loss  # transformers shifts the labels by one itself
        optimizer.zero_grad()
        loss.backward()  # under DDP, the gradients are averaged over the processes here
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 10 == 0 or step == 1:
            print(f"rank {rank} step {step}: loss {loss.item():.4f}", flush=True)
    after = held_out_loss()
    print(f"rank {rank}: held-out loss {before:.4f} -> {after:.4f}", flush=True)
    if not after < before:
        sys.exit(f"rank {rank}: the held-out loss did not fall ({before:.4f} -> {after:.4f})")


if __name__ == "__main__":
    main()

"""A LoRA adapter made by PEFT itself, for `cargo xtask interop`: PEFT's LoraConfig on a GPT-2
directory (rank 4, alpha 8, on attn.c_attn and mlp.c_fc), every factor random (PEFT's own
initialisation leaves lora_B at zero, which would make the adapter a no-op), saved with
`save_pretrained`. Kiln must apply it as PEFT does (`kiln score --adapters`).

    python scripts/peft_adapter.py runs/interop-hf runs/interop-peft-made
"""
import sys

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

base_dir, out = sys.argv[1], sys.argv[2]
torch.manual_seed(3)
base = AutoModelForCausalLM.from_pretrained(base_dir)
config = LoraConfig(r=4, lora_alpha=8, target_modules=["attn.c_attn", "mlp.c_fc"], fan_in_fan_out=True,
                    init_lora_weights=False)
model = get_peft_model(base, config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.copy_(0.3 * torch.randn_like(p))
model.save_pretrained(out)
print(f"wrote a PEFT LoRA adapter to {out}")

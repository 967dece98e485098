#!/usr/bin/env python3
"""Regenerates the PyTorch / Hugging Face parity fixtures for SwiftDraft's Llama model.

For each small configuration (tied and untied embeddings) it builds `transformers.LlamaForCausalLM` in fp32 with
seeded random weights, then records in one safetensors file:
  - every parameter under its Hugging Face name,
  - `input_ids`, `labels` (int32), the logits, the mean cross-entropy loss,
  - `grad.<name>`: the gradient of the mean loss for every parameter,
  - `adamw<k>.<name>`: parameters after k = 1..3 AdamW steps on the same batch, with global-norm clipping and
    weight decay on matrices only (no decay on RMSNorm weights), the rule SwiftDraft uses.
The hyperparameters go into the file's metadata. Run: python3 scripts/reference/llama_parity_fixtures.py OUTDIR
"""
import json
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

HYPER = dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=0.5)


def make(tied: bool, out_path: str) -> None:
    torch.manual_seed(1234 if tied else 4321)
    cfg = dict(vocab_size=512, dim=64, layers=2, heads=4, kv_heads=2, ffn_dim=176, max_seq_len=64,
               rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=tied)
    batch, seq = 2, 32
    config = LlamaConfig(vocab_size=cfg["vocab_size"], hidden_size=cfg["dim"], num_hidden_layers=cfg["layers"],
                         num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kv_heads"],
                         intermediate_size=cfg["ffn_dim"], max_position_embeddings=cfg["max_seq_len"],
                         rope_theta=cfg["rope_theta"], rms_norm_eps=cfg["norm_eps"], tie_word_embeddings=tied,
                         attention_bias=False, mlp_bias=False, hidden_act="silu", attn_implementation="eager",
                         torch_dtype=torch.float32)
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():
        # Non-trivial norm weights, so the norm gradients are exercised away from 1.
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    ids = torch.randint(0, cfg["vocab_size"], (batch, seq + 1))
    inputs, labels = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    labels[0, :3] = -100  # ignored targets must not count in the mean

    tensors = {}
    names = [n for n, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        tensors[name] = p.detach().clone()

    def loss_of(m):
        logits = m(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100)
        return logits, loss

    logits, loss = loss_of(model)
    loss.backward()
    tensors["logits"] = logits.detach().reshape(batch * seq, -1).clone()
    tensors["loss"] = loss.detach().reshape(1).clone()
    for name, p in model.named_parameters():
        tensors["grad." + name] = p.grad.detach().clone()
    model.zero_grad()

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": HYPER["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=HYPER["lr"], betas=(HYPER["beta1"], HYPER["beta2"]), eps=HYPER["eps"],
                            foreach=False)
    norms = []
    for step in range(1, 4):
        opt.zero_grad()
        _, l = loss_of(model)
        l.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), HYPER["grad_clip"])))
        opt.step()
        for name, p in model.named_parameters():
            tensors[f"adamw{step}.{name}"] = p.detach().clone()

    tensors["input_ids"] = inputs.to(torch.int32)
    tensors["labels"] = labels.to(torch.int32)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {"config": json.dumps(cfg), "batch": str(batch), "seq_len": str(seq), "hyper": json.dumps(HYPER),
            "grad_norms": json.dumps(norms), "parameter_names": json.dumps(names),
            "torch": torch.__version__}
    save_file(tensors, out_path, metadata=meta)
    print(f"{out_path}: loss {loss.item():.6f}, grad norms {norms}")


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "Tests/DraftModelTests/Fixtures"
    make(True, f"{out}/llama-tied.safetensors")
    make(False, f"{out}/llama-untied.safetensors")

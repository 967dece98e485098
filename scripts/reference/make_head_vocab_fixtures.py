#!/usr/bin/env python3
"""Regenerates the PyTorch parity fixtures for SwiftDraft's subset LM head (`model.head_vocab`, FR-Spec / VocabTrim).

For a small Llama (tied and untied embeddings) built as `transformers.LlamaForCausalLM` in fp32 with seeded random
weights, the batch's targets are drawn from a skewed distribution and the K most frequent target ids (ties to the
smaller id, then sorted ascending: SwiftDraft's ranking rule) form the head's subset. The reference loss is the
cross-entropy of the logits restricted to those K columns, over the targets inside the subset only (targets outside
it are ignored, as masked ones are). One safetensors file per configuration records:
  - every parameter under its Hugging Face name,
  - `input_ids`, `labels` (int32, full-vocabulary ids, -100 ignored), `head_ids` (int32, ascending),
  - `logits` (the subset's K columns), `loss`, `grad.<name>` for every parameter,
  - metadata: the model config (with head_vocab), batch, seq_len, and how many targets fall outside the subset.
Run with the reference venv: ~/.cache/swiftdraft/ref-venv/bin/python scripts/reference/make_head_vocab_fixtures.py
"""
import json
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM


def make(tied: bool, out_path: str) -> None:
    torch.manual_seed(2024 if tied else 4202)
    k = 16
    cfg = dict(vocab_size=160, dim=32, layers=2, heads=4, kv_heads=2, ffn_dim=64, max_seq_len=32,
               rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=tied, head_vocab=k, head_vocab_source="fixture")
    batch, seq = 2, 24
    config = LlamaConfig(vocab_size=cfg["vocab_size"], hidden_size=cfg["dim"], num_hidden_layers=cfg["layers"],
                         num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kv_heads"],
                         intermediate_size=cfg["ffn_dim"], max_position_embeddings=cfg["max_seq_len"],
                         rope_theta=cfg["rope_theta"], rms_norm_eps=cfg["norm_eps"], tie_word_embeddings=tied,
                         attention_bias=False, mlp_bias=False, hidden_act="silu", attn_implementation="eager",
                         torch_dtype=torch.float32)
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    # Zipf-like ids, so the subset covers most targets but not all of them.
    weights = 1.0 / torch.arange(1, cfg["vocab_size"] + 1, dtype=torch.float64)
    permutation = torch.randperm(cfg["vocab_size"])
    ids = permutation[torch.multinomial(weights, batch * (seq + 1), replacement=True)].reshape(batch, seq + 1)
    inputs, labels = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    labels[0, :2] = -100

    counts = torch.bincount(labels[labels >= 0], minlength=cfg["vocab_size"]).tolist()
    order = sorted(range(cfg["vocab_size"]), key=lambda i: (-counts[i], i))
    head_ids = torch.tensor(sorted(order[:k]), dtype=torch.long)
    position = torch.full((cfg["vocab_size"],), -100, dtype=torch.long)
    position[head_ids] = torch.arange(k)
    local = torch.where(labels >= 0, position[labels.clamp(min=0)], torch.full_like(labels, -100))
    outside = int(((labels >= 0) & (local < 0)).sum())
    assert 0 < outside < int((labels >= 0).sum())

    tensors = {name: p.detach().clone() for name, p in model.named_parameters()}
    logits = model(input_ids=inputs).logits[:, :, head_ids]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, k), local.reshape(-1), ignore_index=-100)
    loss.backward()
    tensors["logits"] = logits.detach().reshape(batch * seq, k).clone()
    tensors["loss"] = loss.detach().reshape(1).clone()
    for name, p in model.named_parameters():
        tensors["grad." + name] = p.grad.detach().clone()
    tensors["input_ids"] = inputs.to(torch.int32)
    tensors["labels"] = labels.to(torch.int32)
    tensors["head_ids"] = head_ids.to(torch.int32)
    tensors = {name: t.contiguous() for name, t in tensors.items()}
    meta = {"config": json.dumps(cfg), "batch": str(batch), "seq_len": str(seq), "outside_targets": str(outside),
            "torch": torch.__version__}
    save_file(tensors, out_path, metadata=meta)
    print(f"{out_path}: loss {loss.item():.6f}, {outside} of {int((labels >= 0).sum())} targets outside the subset")


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "Tests/DraftModelTests/Fixtures"
    make(True, f"{out}/head-vocab-tied.safetensors")
    make(False, f"{out}/head-vocab-untied.safetensors")

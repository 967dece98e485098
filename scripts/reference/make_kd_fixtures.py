#!/usr/bin/env python3
"""Regenerates the PyTorch parity fixtures for SwiftDraft's token-level distillation losses.

Definitions (those of Device.distillationLossForwardBackward): per target row with a teacher row, teacher top-K ids
t_i with log-probs l_i, p_i = exp(l_i), p_rest = max(0, 1 - sum p_i); student q = softmax(logits), q_i = q[t_i],
q_rest = max(sum of q outside the top-K, FLT_MIN).
  kl    = sum_i p_i (l_i - log q_i) + p_rest (log p_rest - log q_rest)     (0 log 0 = 0)
  tvd   = 1/2 (sum_i |p_i - q_i| + |p_rest - q_rest|)
  ce_kl = (1 - w) ce + w kl
Rows with target < 0 contribute nothing; rows with a target but no teacher row (ids -1) take ce. The loss is the
mean over target rows. Everything is computed in float64 by autograd from float32 inputs.

Two files:
  kd-loss.safetensors: random logits (N, V) and teacher rows, per kind the per-row losses (combined, ce, kd) and
    the gradient of the mean loss with respect to the logits; plus reverse KL(q||p) per row, a wrong definition the
    tests check ours differs from. Rows include masked targets, rows without a teacher, a target inside the top-K,
    and a student that puts almost all its mass on the top-K (q_rest ~ 1e-13, where 1 - sum q_i cancels).
  kd-model.safetensors: a tiny transformers.LlamaForCausalLM (float64 copy of float32 weights), inputs, labels and
    teacher rows, and per kind the mean loss, its ce and kd terms and the gradient of every parameter.
Run: ~/.cache/swiftdraft/ref-venv/bin/python scripts/reference/make_kd_fixtures.py [OUTDIR]
"""
import json
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

KINDS = {"kl": ("kl", 1.0), "tvd": ("tvd", 1.0), "ce_kl": ("kl", 0.3)}
TINY = torch.finfo(torch.float32).tiny


def kd_rows(logits, targets, ids, logprobs, divergence, weight):
    """Per-row (loss, ce, kd), float64; logits (N, V), targets (N,), ids (N, K) with -1 rows, logprobs (N, K)."""
    log_q = torch.log_softmax(logits, dim=-1)
    ce = -log_q.gather(1, targets.clamp(min=0).unsqueeze(1)).squeeze(1)
    has_teacher = ids[:, 0] >= 0
    safe_ids = ids.clamp(min=0)
    log_q_i = log_q.gather(1, safe_ids)
    q_i = log_q_i.exp()
    outside = torch.ones_like(logits, dtype=torch.bool).scatter(1, safe_ids, False)
    q_rest = torch.clamp((torch.softmax(logits, dim=-1) * outside).sum(-1), min=TINY)
    p = logprobs.exp()
    p_rest = torch.clamp(1 - p.sum(-1), min=0)
    if divergence == "kl":
        kd = (torch.xlogy(p, p) - p * log_q_i).sum(-1) + torch.xlogy(p_rest, p_rest) - p_rest * torch.log(q_rest)
    elif divergence == "tvd":
        kd = 0.5 * ((p - q_i).abs().sum(-1) + (p_rest - q_rest).abs())
    elif divergence == "reverse_kl":
        kd = (q_i * (log_q_i - logprobs)).sum(-1) + torch.xlogy(q_rest, q_rest) - q_rest * torch.log(
            torch.clamp(p_rest, min=TINY))
    has_target = targets >= 0
    kd = torch.where(has_teacher & has_target, kd, torch.zeros_like(kd))
    ce = torch.where(has_target, ce, torch.zeros_like(ce))
    loss = torch.where(has_teacher, (1 - weight) * ce + weight * kd, ce)
    return loss, ce, kd


def teacher_rows(generator, n, vocab, k):
    """Top-K of a random teacher distribution per row (softmax of random logits), as `distill` stores them."""
    teacher_logits = 2.5 * torch.randn(n, vocab, generator=generator, dtype=torch.float64)
    logprobs, ids = torch.log_softmax(teacher_logits, dim=-1).topk(k, dim=-1)
    return ids.to(torch.int32), logprobs.to(torch.float32)


def make_loss_fixture(path):
    g = torch.Generator().manual_seed(2024)
    n, vocab, k = 24, 301, 8  # V not a multiple of 8: the kernels' vector tails run
    logits = (3.0 * torch.randn(n, vocab, generator=g, dtype=torch.float64)).to(torch.float32)
    ids, logprobs = teacher_rows(g, n, vocab, k)
    targets = torch.randint(0, vocab, (n,), generator=g, dtype=torch.int32)
    targets[[2, 11]] = -1                       # loss-masked rows
    ids[[5, 11, 17]] = -1                       # rows without a teacher (11 also masked)
    logprobs[[5, 11, 17]] = 0
    targets[7] = ids[7, 0]                      # the data token is the teacher's top token
    targets[8] = ids[8, 3]
    logits[9, ids[9].long()] += 40.0            # q_rest ~ 1e-13: 1 - sum q_i would cancel to nothing
    logits[10] *= 6.0                           # a peaked student
    # A near-one-hot teacher: p_rest ~ 1e-9.
    sharp = torch.full((k,), -30.0, dtype=torch.float64)
    sharp[0] = 0.0
    logprobs[12] = torch.log_softmax(sharp, dim=0).to(torch.float32)
    count = int((targets >= 0).sum())
    tensors = {"logits": logits, "targets": targets, "teacher_ids": ids, "teacher_logprobs": logprobs}
    for kind, (divergence, weight) in KINDS.items():
        x = logits.double().requires_grad_(True)
        loss, ce, kd = kd_rows(x, targets.long(), ids.long(), logprobs.double(), divergence, weight)
        (loss.sum() / count).backward()
        tensors[f"{kind}.losses"] = loss.detach().float()
        tensors[f"{kind}.ce"] = ce.detach().float()
        tensors[f"{kind}.kd"] = kd.detach().float()
        tensors[f"{kind}.grad"] = x.grad.float()
    wrong, _, _ = kd_rows(logits.double(), targets.long(), ids.long(), logprobs.double(), "reverse_kl", 1.0)
    tensors["reverse_kl.losses"] = wrong.float()
    meta = {"kinds": json.dumps({kind: w for kind, (_, w) in KINDS.items()}), "top_k": str(k),
            "vocab": str(vocab), "torch": torch.__version__}
    save_file({name: t.contiguous() for name, t in tensors.items()}, path, metadata=meta)
    print(f"{path}: {n} rows, vocab {vocab}, top-{k}, {count} target rows")


def make_model_fixture(path):
    torch.manual_seed(77)
    cfg = dict(vocab_size=96, dim=32, layers=2, heads=4, kv_heads=2, ffn_dim=64, max_seq_len=32,
               rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=True)
    batch, seq, k = 2, 16, 6
    config = LlamaConfig(vocab_size=cfg["vocab_size"], hidden_size=cfg["dim"], num_hidden_layers=cfg["layers"],
                         num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kv_heads"],
                         intermediate_size=cfg["ffn_dim"], max_position_embeddings=cfg["max_seq_len"],
                         rope_theta=cfg["rope_theta"], rms_norm_eps=cfg["norm_eps"], tie_word_embeddings=True,
                         attention_bias=False, mlp_bias=False, hidden_act="silu", attn_implementation="eager",
                         torch_dtype=torch.float32)
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if p.dim() == 1 else 0.2 * torch.randn_like(p))
    tensors = {name: p.detach().clone() for name, p in model.named_parameters()}
    model = model.double()
    g = torch.Generator().manual_seed(78)
    n = batch * seq
    inputs = torch.randint(0, cfg["vocab_size"], (batch, seq), generator=g)
    labels = torch.randint(0, cfg["vocab_size"], (n,), generator=g)
    labels[:3] = -1                      # a prompt region: context only
    ids, logprobs = teacher_rows(g, n, cfg["vocab_size"], k)
    ids[20:24] = -1                      # replayed raw text inside the KD batch
    logprobs[20:24] = 0
    labels[5] = ids[5, 0]
    count = int((labels >= 0).sum())
    for kind, (divergence, weight) in KINDS.items():
        model.zero_grad()
        logits = model(input_ids=inputs).logits.reshape(n, -1)
        loss, ce, kd = kd_rows(logits, labels, ids.long(), logprobs.double(), divergence, weight)
        mean = loss.sum() / count
        mean.backward()
        tensors[f"{kind}.loss"] = mean.detach().reshape(1).float()
        tensors[f"{kind}.ce_sum"] = ce.sum().detach().reshape(1).float()
        tensors[f"{kind}.kd_sum"] = kd.sum().detach().reshape(1).float()
        for name, p in model.named_parameters():
            tensors[f"{kind}.grad.{name}"] = p.grad.detach().float()
    tensors["input_ids"] = inputs.to(torch.int32)
    tensors["labels"] = labels.to(torch.int32)
    tensors["teacher_ids"] = ids
    tensors["teacher_logprobs"] = logprobs
    meta = {"config": json.dumps(cfg), "batch": str(batch), "seq_len": str(seq), "top_k": str(k),
            "kinds": json.dumps({kind: w for kind, (_, w) in KINDS.items()}), "torch": torch.__version__}
    save_file({name: t.contiguous() for name, t in tensors.items()}, path, metadata=meta)
    print(f"{path}: {n} rows, {count} target rows, losses "
          + ", ".join(f"{kind} {tensors[kind + '.loss'].item():.6f}" for kind in KINDS))


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "Tests/DraftModelTests/Fixtures"
    make_loss_fixture(f"{out}/kd-loss.safetensors")
    make_model_fixture(f"{out}/kd-model.safetensors")

#!/usr/bin/env python3
"""PyTorch's CPU training throughput on a SwiftDraft config: the anchor `swiftdraft bench` is compared against.

Same model (transformers.LlamaForCausalLM, fp32, sdpa), same step (forward, backward, clip_grad_norm_, AdamW),
same micro-batch of random tokens. Prints one JSON object: tokens_per_s, median_step_s, peak_rss_mb.
Usage: python3 scripts/reference/bench_pytorch.py configs/bench.yaml [steps] [threads]
"""
import json
import resource
import statistics
import sys
import time

import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    cfg = yaml.safe_load(open(sys.argv[1]))
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.set_num_threads(threads)
    m, opt = cfg["model"], cfg.get("optimizer", {})
    batch, seq = cfg["schedule"]["micro_batch"], cfg["data"]["seq_len"]
    config = LlamaConfig(vocab_size=m["vocab_size"], hidden_size=m["dim"], num_hidden_layers=m["layers"],
                         num_attention_heads=m["heads"], num_key_value_heads=m.get("kv_heads", m["heads"]),
                         intermediate_size=m["ffn_dim"], max_position_embeddings=m["max_seq_len"],
                         rope_theta=m.get("rope_theta", 10000.0), rms_norm_eps=m.get("norm_eps", 1e-5),
                         tie_word_embeddings=m.get("tie_embeddings", True), attn_implementation="sdpa")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).float().train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opt.get("weight_decay", 0.1)},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=opt.get("lr", 6e-4), betas=tuple(opt.get("betas", [0.9, 0.95])),
                                  eps=opt.get("eps", 1e-8))
    ids = torch.randint(0, m["vocab_size"], (batch, seq + 1))
    inputs, labels = ids[:, :-1], ids[:, 1:]
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt.get("grad_clip", 1.0))
        optimizer.step()
        if i > 0:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({"tokens_per_s": batch * seq / median, "median_step_s": median,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
                      "torch": torch.__version__, "threads": threads}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""An independent speculative-sampling reference: Leviathan et al. (2023), Algorithm 1, in numpy.

Target and draft are GGUF files run by `numpy_decoder.Model` (weights dequantized by `gguf.quants`), here with a KV
cache so that each decoding step costs one token's forward. It shares no code with SwiftDraft: the point is that two
implementations of the same rule, run on the same draft/target pair and prompts, measure the same acceptance rate
within sampling error.

The round is the one DESIGN.md specifies: the draft samples up to gamma tokens from q (softmax of logits / T), the
target scores its pending token and every proposal in one pass, proposal i is kept with probability
min(1, p(x_i) / q(x_i)), the first rejection draws from norm(max(0, p - q)), and a fully accepted round adds a bonus
token from p. Like `swiftdraft speculate`, a round proposes min(gamma, tokens still wanted - 1) tokens, so the last
round of a prompt may propose fewer.

    python speculative_reference.py --target T.gguf --draft D.gguf --ids "1 2 3" [--ids ...]
        --gamma 3 --temperature 0.6 --max-new-tokens 32 --seed 0 [--stop 2]

Prints one JSON object: proposed, accepted, per-position counts, and per prompt its [proposed, accepted] and
emitted ids.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_decoder import Model  # noqa: E402


class CachedDecoder:
    """`numpy_decoder.Model`'s layers with a per-layer key/value cache, in float32."""

    def __init__(self, path):
        m = Model(path)
        if m.arch != "llama":
            raise SystemExit(f"{path}: only llama-architecture models are supported here, not {m.arch}")
        self.m = m
        self.w = {name: t.astype(np.float32) for name, t in m.t.items()}
        self.head = self.w.get("output.weight", self.w["token_embd.weight"])
        self.reset()

    def reset(self):
        self.keys = [np.zeros((0, self.m.kv_heads, self.m.head_dim), np.float32) for _ in range(self.m.layers)]
        self.values = [k.copy() for k in self.keys]

    @property
    def length(self):
        return self.keys[0].shape[0]

    def trim(self, n):
        self.keys = [k[:n] for k in self.keys]
        self.values = [v[:n] for v in self.values]

    def forward(self, ids):
        """Logits (len(ids), vocab) of `ids` appended at the cache's end."""
        m, w, hd = self.m, self.w, self.m.head_dim
        start, n = self.length, len(ids)
        x = w["token_embd.weight"][np.asarray(ids)]
        pos = np.arange(start, start + n, dtype=np.float64)
        group = m.heads // m.kv_heads
        mask = np.triu(np.full((n, start + n), -np.inf, np.float32), start + 1)
        for layer in range(m.layers):
            p = f"blk.{layer}."
            h = m.norm(x, w[p + "attn_norm.weight"]).astype(np.float32)
            q = m.rope((h @ w[p + "attn_q.weight"].T).reshape(n, m.heads, hd), pos).astype(np.float32)
            k = m.rope((h @ w[p + "attn_k.weight"].T).reshape(n, m.kv_heads, hd), pos).astype(np.float32)
            v = (h @ w[p + "attn_v.weight"].T).reshape(n, m.kv_heads, hd)
            self.keys[layer] = np.concatenate([self.keys[layer], k])
            self.values[layer] = np.concatenate([self.values[layer], v])
            keys, values = self.keys[layer], self.values[layer]
            out = np.empty((n, m.heads, hd), np.float32)
            for head in range(m.heads):
                kv = head // group
                s = q[:, head, :] @ keys[:, kv, :].T / np.float32(np.sqrt(hd)) + mask
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                s /= s.sum(axis=-1, keepdims=True)
                out[:, head, :] = s @ values[:, kv, :]
            x = x + out.reshape(n, -1) @ w[p + "attn_output.weight"].T
            h = m.norm(x, w[p + "ffn_norm.weight"]).astype(np.float32)
            gate, up = h @ w[p + "ffn_gate.weight"].T, h @ w[p + "ffn_up.weight"].T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "ffn_down.weight"].T
        x = m.norm(x, w["output_norm.weight"]).astype(np.float32)
        return (x @ self.head.T).astype(np.float64)


def softmax(logits, temperature):
    z = logits / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


def speculate(target, draft, prompt, gamma, temperature, max_new, stops, rng):
    target.reset()
    draft.reset()
    counts = {"proposed": 0, "accepted": 0, "proposed_at": [0] * gamma, "accepted_at": [0] * gamma, "passes": 0}
    sequence, output = list(prompt), []
    if len(prompt) > 1:
        target.forward(prompt[:-1])
    while len(output) < max_new:
        budget = min(gamma, max_new - len(output) - 1)
        proposals, q = [], []
        feed = sequence[draft.length:]
        for _ in range(budget):
            dist = softmax(draft.forward(feed)[-1], temperature)
            token = int(rng.choice(len(dist), p=dist))
            proposals.append(token)
            q.append(dist)
            feed = [token]
        pending_from = target.length
        chunk = sequence[pending_from:] + proposals
        logits = target.forward(chunk)
        first = len(chunk) - len(proposals) - 1
        p = [softmax(logits[first + i], temperature) for i in range(len(proposals) + 1)]
        accepted, nxt = 0, None
        for i, x in enumerate(proposals):
            if rng.random() < min(1.0, p[i][x] / q[i][x]):
                accepted += 1
                continue
            residual = np.maximum(p[i] - q[i], 0)
            nxt = int(rng.choice(len(residual), p=residual / residual.sum()))
            break
        if nxt is None:
            nxt = int(rng.choice(len(p[-1]), p=p[-1]))
        counts["passes"] += 1
        counts["proposed"] += len(proposals)
        counts["accepted"] += accepted
        for i in range(len(proposals)):
            counts["proposed_at"][i] += 1
            counts["accepted_at"][i] += int(i < accepted)
        kept = pending_from + (len(chunk) - len(proposals)) + accepted
        target.trim(kept)
        draft.trim(min(draft.length, kept))
        for token in proposals[:accepted] + [nxt]:
            if token in stops:
                return counts, output
            output.append(token)
            sequence.append(token)
            if len(output) == max_new:
                return counts, output
    return counts, output


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft", required=True)
    ap.add_argument("--ids", action="append", required=True, help="a prompt's space-separated token ids; repeat")
    ap.add_argument("--gamma", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stop", type=int, action="append", default=[])
    a = ap.parse_args()
    if a.temperature <= 0:
        raise SystemExit("--temperature: this reference checks sampled speculation; expected > 0")
    target, draft = CachedDecoder(a.target), CachedDecoder(a.draft)
    rng = np.random.default_rng(a.seed)
    total = {"proposed": 0, "accepted": 0, "proposed_at": [0] * a.gamma, "accepted_at": [0] * a.gamma, "passes": 0}
    outputs, per_prompt = [], []
    for ids in a.ids:
        counts, output = speculate(target, draft, [int(t) for t in ids.split()], a.gamma, a.temperature,
                                   a.max_new_tokens, set(a.stop), rng)
        outputs.append(output)
        per_prompt.append([counts["proposed"], counts["accepted"]])
        for key in ("proposed", "accepted", "passes"):
            total[key] += counts[key]
        for i in range(a.gamma):
            total["proposed_at"][i] += counts["proposed_at"][i]
            total["accepted_at"][i] += counts["accepted_at"][i]
    total["outputs"] = outputs
    total["per_prompt"] = per_prompt
    json.dump(total, sys.stdout)
    print()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A float64 reference forward pass of a GGUF decoder (llama, phi3, qwen2), from the file alone: numpy and `gguf`.

Every tensor is dequantized with `gguf.quants.dequantize` (the reference for ggml's block types), and the layers
follow llama.cpp's graphs read as math: RMSNorm, rotary embedding in the file's own layout (llama's interleaved pairs
as GGUF stores them; phi3 and qwen2 rotate NEOX half-split pairs), grouped-query causal attention, SwiGLU. Llama-3
rope scaling comes from `rope_freqs.weight` (each frequency divided by its factor). Phi-3's fused `attn_qkv` splits
into q, k, v rows and its fused `ffn_up` into gate then up halves (llama.cpp's swiglu on the fused product).

    python numpy_decoder.py MODEL.gguf --ids "1 2 3" [--ids "4 5"] [--out logits.f32]

Prints JSON: architecture and the logits' shape per sequence; the logits of every position are written to --out as
little-endian float32 (sequence by sequence), or printed in the JSON when --out is not given.
"""
import argparse
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


class Model:
    def __init__(self, path):
        r = GGUFReader(path)
        self.arch = field(r, "general.architecture")
        if self.arch not in ("llama", "phi3", "qwen2"):
            raise SystemExit(f"{path}: architecture {self.arch!r} is not one of llama, phi3, qwen2")
        a = self.arch
        self.dim = int(field(r, f"{a}.embedding_length"))
        self.layers = int(field(r, f"{a}.block_count"))
        self.heads = int(field(r, f"{a}.attention.head_count"))
        self.kv_heads = int(field(r, f"{a}.attention.head_count_kv", self.heads))
        self.head_dim = int(field(r, f"{a}.attention.key_length", self.dim // self.heads))
        self.n_rot = int(field(r, f"{a}.rope.dimension_count", self.head_dim))
        self.eps = float(field(r, f"{a}.attention.layer_norm_rms_epsilon"))
        self.theta = float(field(r, f"{a}.rope.freq_base", 10000.0))
        self.t = {}
        for t in r.tensors:
            # numpy order: (ne1, ne0) = (out features, in features)
            shape = tuple(int(x) for x in reversed(t.shape.tolist()))
            self.t[t.name] = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape)
        freqs = self.theta ** (-np.arange(0, self.n_rot, 2, dtype=np.float64) / self.n_rot)
        if "rope_freqs.weight" in self.t:
            freqs = freqs / self.t["rope_freqs.weight"].reshape(-1)
        self.freqs = freqs

    def norm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        """x: (T, H, D); rotates the first n_rot dimensions of each head."""
        ang = pos[:, None] * self.freqs[None, :]            # (T, n_rot/2)
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        y = x.copy()
        if self.arch == "llama":                              # adjacent pairs, GGUF's interleaved rows
            a, b = x[..., 0:self.n_rot:2], x[..., 1:self.n_rot:2]
            y[..., 0:self.n_rot:2] = a * c - b * s
            y[..., 1:self.n_rot:2] = a * s + b * c
        else:                                                 # NEOX: halves of the rotated part
            h = self.n_rot // 2
            a, b = x[..., :h], x[..., h:self.n_rot]
            y[..., :h] = a * c - b * s
            y[..., h:self.n_rot] = a * s + b * c
        return y

    def forward(self, ids):
        T, hd = len(ids), self.head_dim
        x = self.t["token_embd.weight"][ids]
        pos = np.arange(T, dtype=np.float64)
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for l in range(self.layers):
            p = f"blk.{l}."
            h = self.norm(x, self.t[p + "attn_norm.weight"])
            if p + "attn_qkv.weight" in self.t:
                qkv = h @ self.t[p + "attn_qkv.weight"].T
                nq, nk = self.heads * hd, self.kv_heads * hd
                q, k, v = qkv[:, :nq], qkv[:, nq:nq + nk], qkv[:, nq + nk:]
            else:
                q = h @ self.t[p + "attn_q.weight"].T
                k = h @ self.t[p + "attn_k.weight"].T
                v = h @ self.t[p + "attn_v.weight"].T
            for name, m in (("q", q), ("k", k), ("v", v)):
                b = self.t.get(p + f"attn_{name}.bias")
                if b is not None:
                    m += b.reshape(-1)
            q = self.rope(q.reshape(T, self.heads, hd), pos)
            k = self.rope(k.reshape(T, self.kv_heads, hd), pos)
            v = v.reshape(T, self.kv_heads, hd)
            group = self.heads // self.kv_heads
            out = np.empty((T, self.heads, hd))
            for hh in range(self.heads):
                kv = hh // group
                s = q[:, hh, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                s /= s.sum(axis=-1, keepdims=True)
                out[:, hh, :] = s @ v[:, kv, :]
            x = x + out.reshape(T, -1) @ self.t[p + "attn_output.weight"].T
            h = self.norm(x, self.t[p + "ffn_norm.weight"])
            if p + "ffn_gate.weight" in self.t:
                gate = h @ self.t[p + "ffn_gate.weight"].T
                up = h @ self.t[p + "ffn_up.weight"].T
            else:
                gu = h @ self.t[p + "ffn_up.weight"].T
                gate, up = gu[:, :gu.shape[1] // 2], gu[:, gu.shape[1] // 2:]
            x = x + (gate / (1 + np.exp(-gate)) * up) @ self.t[p + "ffn_down.weight"].T
        x = self.norm(x, self.t["output_norm.weight"])
        head = self.t.get("output.weight", self.t["token_embd.weight"])
        return x @ head.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ids", action="append", required=True, help="space-separated token ids; repeat per sequence")
    ap.add_argument("--out")
    a = ap.parse_args()
    m = Model(a.model)
    seqs = [[int(t) for t in s.split()] for s in a.ids]
    logits = [m.forward(np.array(s)) for s in seqs]
    report = {"architecture": m.arch, "shapes": [list(l.shape) for l in logits]}
    if a.out:
        with open(a.out, "wb") as f:
            for l in logits:
                f.write(l.astype("<f4").tobytes())
    else:
        report["logits"] = [l.tolist() for l in logits]
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()

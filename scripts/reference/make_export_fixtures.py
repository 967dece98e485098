#!/usr/bin/env python3
"""transformers' view of a `swiftdraft export --format hf` draft, for Tests/SwiftDraftCLITests/ExportTransformersTests.

CI has no torch, so this runs once by hand (the reference venv, ~/.cache/swiftdraft/ref-venv, has torch, transformers,
gguf, accelerate, safetensors) against a built `swiftdraft`, and commits what transformers saw:

  1. a deterministic seed model: SmolLM2's tokenizer, dim 64, 2 layers, 4 heads (2 KV), rope_theta 1e5, eps 1e-6,
     weights from SplitMix64 uniforms scaled to give unit-sized activations (the test makes the same bits in Swift:
     integer mixing and exact float64 arithmetic only, no libm), written as a Hugging Face directory;
  2. a checkpoint: `swiftdraft train --init-from seed --max-steps 1` with lr 1e-30 (the update is far below one ulp of
     every weight, so the checkpoint holds the seed's bits on any machine);
  3. its export (`swiftdraft export --format hf --dtype f32`): SHA-256 of model.safetensors and config.json's text;
  4. `AutoModelForCausalLM.from_pretrained(export)` in fp32 on a batch of prompts: logits at a fixed spread of 1024
     vocabulary columns (all positions) and the log-sum-exp over the whole vocabulary at each position;
  5. `generate(..., assistant_model=draft)` with the SmolLM2-135M-Instruct target (its GGUF, dequantized to fp32 by
     transformers' gguf_file= loader) at greedy, and the target's plain greedy output, which must be equal.

Writes Tests/SwiftDraftCLITests/Fixtures/export/{transformers.json,logits.f32}.
Run: ~/.cache/swiftdraft/ref-venv/bin/python scripts/reference/make_export_fixtures.py [--swiftdraft .build/release/swiftdraft]
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "Tests/SwiftDraftCLITests/Fixtures/export"
CACHE = Path(os.environ.get("SWIFTDRAFT_CACHE", Path.home() / ".cache/swiftdraft"))
TOKENIZER = CACHE / "tokenizers/smollm2/tokenizer.json"
SMOLLM2 = CACHE / "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# The seed model's shape; ExportTransformersTests.seedConfig must say the same.
MODEL = dict(vocab_size=49152, dim=64, layers=2, heads=4, kv_heads=2, ffn_dim=128, max_seq_len=64,
             rope_theta=100000.0, norm_eps=1.0e-6)
SEED = 20261202
PROMPTS = ["The history of the Roman Empire begins in the city", "def fibonacci(n):\n    return",
           "It is a truth universally acknowledged, that a single man"]
POSITIONS = 8          # every prompt is cut to its first 8 tokens: one unpadded batch
COLUMN_STRIDE = 48     # logits kept at ids 0, 48, 96, ... (1024 columns)
ASSIST_PROMPT = "The history of the Roman Empire begins"
ASSIST_TOKENS = 24

GOLDEN, MIX1, MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix_uniform(seed: int, start: int, count: int) -> np.ndarray:
    """Values start..<start+count of SplitMix64(seed) as uniforms in (0, 1), exactly as DraftModel's generator."""
    with np.errstate(over="ignore"):
        i = np.arange(start + 1, start + count + 1, dtype=np.uint64)
        z = np.uint64(seed) + i * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * MIX1
        z = (z ^ (z >> np.uint64(27))) * MIX2
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def layout():
    """(name, shape) in SwiftDraft's flat-buffer order (ParameterLayout), tied head."""
    c, f = MODEL["dim"], MODEL["ffn_dim"]
    hd = c // MODEL["heads"]
    q, kv = MODEL["heads"] * hd, MODEL["kv_heads"] * hd
    out = [("model.embed_tokens.weight", [MODEL["vocab_size"], c])]
    for l in range(MODEL["layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", [c]), (p + "self_attn.q_proj.weight", [q, c]),
                (p + "self_attn.k_proj.weight", [kv, c]), (p + "self_attn.v_proj.weight", [kv, c]),
                (p + "self_attn.o_proj.weight", [c, q]), (p + "post_attention_layernorm.weight", [c]),
                (p + "mlp.gate_proj.weight", [f, c]), (p + "mlp.up_proj.weight", [f, c]),
                (p + "mlp.down_proj.weight", [c, f])]
    return out + [("model.norm.weight", [c])]


def seed_tensors():
    """One SplitMix64 stream over the flat buffer: matrices uniform in +-2/sqrt(columns) (the embedding +-1), norm
    gains in 1 +- 0.5, so attention is far from uniform and a wrong rope or eps shows in the logits."""
    tensors, offset = {}, 0
    for name, shape in layout():
        n = int(np.prod(shape))
        u = splitmix_uniform(SEED, offset, n)
        offset += n
        if len(shape) == 1:
            values = 1.0 + 0.5 * (2.0 * u - 1.0)
        else:
            scale = 1.0 if name == "model.embed_tokens.weight" else 2.0 / np.sqrt(float(shape[1]))
            values = (2.0 * u - 1.0) * scale
        tensors[name] = values.astype(np.float32).reshape(shape)
    return tensors


def write_seed(directory: Path):
    from safetensors.numpy import save_file
    directory.mkdir(parents=True)
    hd = MODEL["dim"] // MODEL["heads"]
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": MODEL["vocab_size"],
              "hidden_size": MODEL["dim"], "intermediate_size": MODEL["ffn_dim"], "num_hidden_layers": MODEL["layers"],
              "num_attention_heads": MODEL["heads"], "num_key_value_heads": MODEL["kv_heads"], "head_dim": hd,
              "max_position_embeddings": MODEL["max_seq_len"], "rms_norm_eps": MODEL["norm_eps"],
              "rope_theta": MODEL["rope_theta"], "tie_word_embeddings": True}
    (directory / "config.json").write_text(json.dumps(config))
    save_file(seed_tensors(), str(directory / "model.safetensors"))
    # tokenizer_config.json too: its EOS is part of the tokenizer's identity (fingerprint).
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(TOKENIZER.parent / name, directory / name)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(*args):
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL)


def make_export(swiftdraft: Path, work: Path) -> Path:
    seed = work / "seed"
    write_seed(seed)
    data = work / "data"
    run(swiftdraft, "tokenize", "--tokenizer", TOKENIZER, "--input", "/usr/lib/python3.11/json", "--output", data)
    model = ", ".join(f"{k}: {v}" for k, v in MODEL.items())
    config = work / "config.yaml"
    config.write_text(f"""run: {{name: seed, seed: 1}}
model: {{{model}}}
tokenizer: {TOKENIZER}
data: {{seq_len: 32, sources: {{code: {{path: {data}}}}}}}
schedule: {{global_batch_tokens: 128, micro_batch: 4, stages: [{{name: pretrain, tokens: 128, mixture: {{code: 1.0}}}}]}}
optimizer: {{lr: 1.0e-30, min_lr: 0.0}}
distributed: {{world_size: 1}}
log: {{every_steps: 1, eval_every_steps: 0, tensorboard: false}}
""")
    run_dir = work / "run"
    run(swiftdraft, "train", "--config", config, "--run-dir", run_dir, "--init-from", seed, "--max-steps", 1, "--quiet")
    export = work / "export"
    run(swiftdraft, "export", "--checkpoint", run_dir, "--format", "hf", "--dtype", "f32", "--output", export)
    return export


def main():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--swiftdraft", default=str(REPO / ".build/release/swiftdraft"))
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export = make_export(Path(args.swiftdraft), work)
        # The seed's values (float32, little-endian, in flat-buffer order): the test's Swift generator must agree.
        seed_sha = hashlib.sha256(b"".join(t.astype("<f4").tobytes() for t in seed_tensors().values())).hexdigest()
        draft = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(export)
        ids = [tok(p, add_special_tokens=False)["input_ids"][:POSITIONS] for p in PROMPTS]
        assert all(len(s) == POSITIONS for s in ids), ids
        with torch.no_grad():
            logits = draft(torch.tensor(ids)).logits.float()
        columns = torch.arange(0, MODEL["vocab_size"], COLUMN_STRIDE)
        OUT.mkdir(parents=True, exist_ok=True)
        logits[:, :, columns].contiguous().numpy().astype("<f4").tofile(OUT / "logits.f32")
        lse = torch.logsumexp(logits, dim=-1)

        target_tok = AutoTokenizer.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name)
        target = AutoModelForCausalLM.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name, dtype=torch.float32).eval()
        prompt = torch.tensor([target_tok(ASSIST_PROMPT, add_special_tokens=False)["input_ids"]])
        # Counted, so the record shows the draft really proposed (transformers does not fall back silently, but say so).
        draft_calls = []
        hook = draft.register_forward_hook(lambda *_: draft_calls.append(1))
        with torch.no_grad():
            assisted = target.generate(prompt, assistant_model=draft, do_sample=False, max_new_tokens=ASSIST_TOKENS,
                                       min_new_tokens=ASSIST_TOKENS)
            hook.remove()
            plain = target.generate(prompt, do_sample=False, max_new_tokens=ASSIST_TOKENS, min_new_tokens=ASSIST_TOKENS)
        assisted_ids = assisted[0, prompt.shape[1]:].tolist()
        plain_ids = plain[0, prompt.shape[1]:].tolist()
        assert assisted_ids == plain_ids, (assisted_ids, plain_ids)
        assert draft_calls, "the assistant model never ran"

        manifest = {
            "made_by": "scripts/reference/make_export_fixtures.py",
            "transformers": __import__("transformers").__version__, "torch": torch.__version__,
            "model": MODEL, "seed": SEED, "seed_values_sha256": seed_sha,
            "export_safetensors_sha256": sha256(export / "model.safetensors"),
            "export_config_json": (export / "config.json").read_text(),
            "prompts": PROMPTS, "ids": ids, "column_stride": COLUMN_STRIDE, "logits": "logits.f32",
            "logits_shape": [len(ids), POSITIONS, len(columns)], "logsumexp": lse.tolist(),
            "assist": {"target": SMOLLM2.name, "prompt": ASSIST_PROMPT, "prompt_ids": prompt[0].tolist(),
                       "max_new_tokens": ASSIST_TOKENS, "assisted_greedy_ids": assisted_ids,
                       "draft_forward_calls": len(draft_calls),
                       "target_greedy_ids": plain_ids},
        }
        (OUT / "transformers.json").write_text(json.dumps(manifest, indent=1) + "\n")
        print(f"wrote {OUT}: export sha {manifest['export_safetensors_sha256'][:16]}..., assisted ids {assisted_ids}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference fixtures for the model loaders (GGUF and Hugging Face directories) and the real-target checks.

Needs torch, transformers, gguf, accelerate, safetensors, sentencepiece (the reference venv,
~/.cache/swiftdraft/ref-venv) and llama.cpp's source tree (scripts/build-llama-cpp.sh keeps it under the asset cache)
for convert_hf_to_gguf.py. Writes Tests/DraftInferenceTests/Fixtures/:

  tiny/tokenizer.model              a 512-piece SentencePiece BPE (byte fallback) shared by the tiny models
  tiny/<name>/                      a Hugging Face directory with random weights: config.json, safetensors
                                    (F16 / BF16, one sharded with an index), tokenizer.json, tokenizer_config.json
  tiny/<name>.f16.gguf              the same model converted by llama.cpp's convert_hf_to_gguf.py (--outtype f16)
  tiny/<name>.logits.f32            transformers' fp32 logits of the HF directory on `sequences` (little-endian float32,
                                    (sequence, position, vocab) in order)
  tiny/manifest.json                per model: architecture, sequences, logits file and shape
  smollm2.json                      SmolLM2-135M-Instruct Q4_1 through transformers (GGUF dequantized to fp32): greedy
                                    64-token continuations of 5 prompts with their top-2 logit margins, and perplexity
                                    of bisect.py and the opening of Pride and Prejudice, llama-perplexity style

Run: ~/.cache/swiftdraft/ref-venv/bin/python scripts/reference/inference_fixtures.py [--only tiny|smollm2]
Nothing here runs at test time (CI has no torch); the tests read the committed outputs.
"""
import argparse
import glob
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Tests/DraftInferenceTests/Fixtures"
CACHE = Path(os.environ.get("SWIFTDRAFT_CACHE", Path.home() / ".cache/swiftdraft"))
LLAMA_SRC = Path(os.environ.get("LLAMA_CPP_SRC", CACHE / "llama.cpp/0.3.36/src"))
SMOLLM2 = CACHE / "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
AUSTEN = CACHE / "austen/prideprejudice.txt"

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|end|>", "<|user|>", "<|assistant|>", "<|eot_id|>"]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
VOCAB = 512


def train_tokenizer(out: Path) -> Path:
    import sentencepiece as spm
    text = Path("/usr/lib/python3.11/bisect.py").read_text() + Path("/usr/lib/python3.11/heapq.py").read_text()
    corpus = out / "corpus.txt"
    corpus.write_text(text)
    prefix = out / "tokenizer"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=VOCAB, model_type="bpe", byte_fallback=True,
        character_coverage=1.0, user_defined_symbols=SPECIALS, bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
        normalization_rule_name="identity", num_threads=1, shuffle_input_sentence=False, minloglevel=2)
    corpus.unlink()
    (out / "tokenizer.vocab").unlink()
    return out / "tokenizer.model"


def tiny_specs():
    """name -> (config class name, config kwargs, safetensors dtype, shard size or None)."""
    common = dict(vocab_size=VOCAB, hidden_size=256, intermediate_size=256, num_attention_heads=4,
                  max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                  pad_token_id=None)
    return {
        # Llama with grouped KV heads and an untied head, two layers, BF16 in two safetensors shards.
        "llama-gqa": ("LlamaConfig", dict(common, num_hidden_layers=2, num_key_value_heads=2,
                                          tie_word_embeddings=False, rope_theta=10000.0),
                      torch.bfloat16, "400KB"),
        # Llama-3's rope scaling (factors baked into rope_freqs.weight by the converter), tied embeddings, F16.
        "llama3-rope": ("LlamaConfig", dict(common, num_hidden_layers=1, num_key_value_heads=2,
                                            tie_word_embeddings=True,
                                            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                          "high_freq_factor": 4.0,
                                                          "original_max_position_embeddings": 64,
                                                          "rope_theta": 10000.0},
                                            rope_theta=10000.0),
                        torch.float16, None),
        # Phi-3: fused qkv and gate_up projections, NEOX rotary, F16.
        "phi3": ("Phi3Config", dict(common, num_hidden_layers=1, num_key_value_heads=4, tie_word_embeddings=False,
                                    rope_theta=10000.0, original_max_position_embeddings=256, resid_pdrop=0.0,
                                    embd_pdrop=0.0, attention_dropout=0.0),
                 torch.float16, None),
        # Qwen2: q/k/v biases, grouped KV heads, BF16.
        "qwen2": ("Qwen2Config", dict(common, num_hidden_layers=1, num_key_value_heads=2, tie_word_embeddings=False,
                                      rope_theta=10000.0, use_sliding_window=False),
                  torch.bfloat16, None),
    }


def randomize(model, seed):
    """Every parameter random and O(1)-scaled, so no term is silently zero (biases, norms) or negligible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in) * (1.5 if "embed" in name else 1.0))


def write_hf_tokenizer(spm_model: Path, out: Path):
    """tokenizer.json (converted by transformers from the SentencePiece model), tokenizer_config.json with the chat
    template, and tokenizer.model, which convert_hf_to_gguf reads (removed from the directory after conversion)."""
    from transformers import LlamaTokenizer
    staging = out.parent / "_tokenizer"
    staging.mkdir(exist_ok=True)
    shutil.copy(spm_model, staging / "tokenizer.model")
    tok = LlamaTokenizer.from_pretrained(str(staging), legacy=False, add_bos_token=False, add_eos_token=False)
    shutil.rmtree(staging)
    tok.chat_template = CHATML
    tok.save_pretrained(str(out))
    shutil.copy(spm_model, out / "tokenizer.model")
    # convert_hf_to_gguf's phi3 vocabulary reader requires tokenizer_class.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.setdefault("tokenizer_class", "LlamaTokenizer")
    cfg["chat_template"] = CHATML
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return tok


def convert(hf_dir: Path, out: Path):
    env = dict(os.environ, PYTHONPATH=str(LLAMA_SRC / "gguf-py"), NO_LOCAL_GGUF="")
    subprocess.run([sys.executable, str(LLAMA_SRC / "convert_hf_to_gguf.py"), str(hf_dir), "--outtype", "f16",
                    "--outfile", str(out)], check=True, env=env, stdout=subprocess.DEVNULL)


def make_tiny():
    import transformers
    torch.set_num_threads(1)
    tiny = FIXTURES / "tiny"
    tiny.mkdir(parents=True, exist_ok=True)
    spm_model = train_tokenizer(tiny)
    rng = np.random.default_rng(10)
    sequences = [rng.integers(3, VOCAB, size=24).tolist(), rng.integers(3, VOCAB, size=40).tolist()]
    manifest = {"vocab": VOCAB, "sequences": sequences, "models": {}}
    for seed, (name, (cls, kwargs, dtype, shard)) in enumerate(tiny_specs().items()):
        config = getattr(transformers, cls)(**kwargs)
        model_cls = getattr(transformers, cls.replace("Config", "ForCausalLM"))
        torch.manual_seed(seed)
        model = model_cls(config).eval()
        randomize(model, 1000 + seed)
        if config.tie_word_embeddings:
            model.tie_weights()
        hf_dir = tiny / name
        shutil.rmtree(hf_dir, ignore_errors=True)
        model.to(dtype).save_pretrained(str(hf_dir), max_shard_size=shard or "100MB")
        write_hf_tokenizer(spm_model, hf_dir)
        (hf_dir / "generation_config.json").unlink(missing_ok=True)
        # The reference is the directory as written (weights rounded to its dtype), run in fp32.
        ref = model_cls.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
        logits = []
        with torch.no_grad():
            for seq in sequences:
                logits.append(ref(torch.tensor([seq])).logits[0].numpy().astype("<f4"))
        blob = np.concatenate([l.reshape(-1) for l in logits])
        (tiny / f"{name}.logits.f32").write_bytes(blob.tobytes())
        gguf_path = tiny / f"{name}.f16.gguf"
        convert(hf_dir, gguf_path)
        (hf_dir / "tokenizer.model").unlink()
        manifest["models"][name] = {"architecture": cls.replace("Config", "").lower().replace("llama", "llama"),
                                    "hf_dir": f"tiny/{name}", "gguf": f"tiny/{name}.f16.gguf",
                                    "logits": f"tiny/{name}.logits.f32", "safetensors_dtype": str(dtype),
                                    "sharded": shard is not None}
        print(f"tiny {name}: {sum(p.numel() for p in model.parameters())} parameters, "
              f"gguf {gguf_path.stat().st_size} bytes", flush=True)
    (tiny / "manifest.json").write_text(json.dumps(manifest, indent=1))


def llama_perplexity(model, ids, n_ctx):
    """llama-perplexity's windows: consecutive chunks of n_ctx tokens, each scored on its second half (the logits of
    positions n_ctx/2 .. n_ctx-2 predicting the next token); mean NLL over every scored token."""
    nll, count = 0.0, 0
    for c in range(len(ids) // n_ctx):
        chunk = torch.tensor([ids[c * n_ctx:(c + 1) * n_ctx]])
        with torch.no_grad():
            logp = torch.log_softmax(model(chunk).logits[0].double(), dim=-1)
        first = n_ctx // 2
        for j in range(first, n_ctx - 1):
            nll -= logp[j, chunk[0, j + 1]].item()
            count += 1
    return {"n_ctx": n_ctx, "tokens_scored": count, "nll": nll / count, "ppl": math.exp(nll / count)}


def make_smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(2)
    d, f = str(SMOLLM2.parent), SMOLLM2.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    prompts = [
        {"id": "text", "prompt": "The history of the Roman Empire begins"},
        {"id": "story", "prompt": "Once upon a time, in a small village by the sea, there lived"},
        {"id": "code", "prompt": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
        {"id": "chat-france", "messages": [{"role": "user", "content": "What is the capital of France?"}]},
        {"id": "chat-code", "messages": [{"role": "user", "content": "Write a Python function that reverses a string."}]},
    ]
    out = {"model": str(SMOLLM2.name), "reference": "transformers from_pretrained(gguf_file=...), fp32, greedy",
           "generations": [], "perplexity": {}}
    for p in prompts:
        if "messages" in p:
            text = tok.apply_chat_template(p["messages"], tokenize=False, add_generation_prompt=True)
        else:
            text = p["prompt"]
        ids = tok(text, add_special_tokens=False)["input_ids"]
        seq = list(ids)
        margins = []
        with torch.no_grad():
            past = None
            inp = torch.tensor([seq])
            for _ in range(64):
                o = model(inp, past_key_values=past, use_cache=True)
                past = o.past_key_values
                logits = o.logits[0, -1].double()
                top = torch.topk(logits, 2)
                margins.append(float(top.values[0] - top.values[1]))
                nxt = int(top.indices[0])
                seq.append(nxt)
                inp = torch.tensor([[nxt]])
        gen = seq[len(ids):]
        out["generations"].append({**p, "rendered": text, "prompt_ids": ids, "output_ids": gen,
                                   "output_text": tok.decode(gen), "margins": margins,
                                   "min_margin": min(margins)})
        print(f"smollm2 {p['id']}: min margin {min(margins):.4f}: {tok.decode(gen)[:80]!r}", flush=True)
    texts = {"bisect.py": Path("/usr/lib/python3.11/bisect.py").read_text(),
             "pride-and-prejudice": AUSTEN.read_text()[:10000]}
    for name, text in texts.items():
        ids = tok(text, add_special_tokens=False)["input_ids"]
        out["perplexity"][name] = {"chars": len(text), "tokens": len(ids),
                                   "windows": [llama_perplexity(model, ids, n) for n in (256, 512)]}
        print(f"smollm2 ppl {name}: {out['perplexity'][name]}", flush=True)
    out["perplexity"]["pride-and-prejudice"]["source"] = ("the first 10,000 characters of prideprejudice.txt "
                                                          "(r-cran-janeaustenr, Debian)")
    (FIXTURES / "smollm2.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["tiny", "smollm2"])
    a = ap.parse_args()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    if a.only in (None, "tiny"):
        make_tiny()
    if a.only in (None, "smollm2"):
        make_smollm2()

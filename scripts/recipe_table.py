#!/usr/bin/env python3
"""The recipe's results table (markdown) from `speculate --json` reports: one row per stage and prompt set.

    recipe_table.py RESULTS_DIR          (reads pt.json, cp.json, align.json, align-q8_0.json when present)

Columns are DESIGN.md's: acceptance rate, tau, MBSU (c by parameters), MBSU by weight bytes, and the wall-clock
speedup of speculative over plain decoding of the same prompts in the same run (batch 1), with the measured
draft-step / target-step cost ratio and the acceptance at which that ratio breaks even.
"""
import json
import os
import sys

STAGES = [("pt", "PT"), ("cp", "PT→CP"), ("align", "PT→CP→align"), ("align-q8_0", "PT→CP→align, Q8_0 GGUF draft")]
SETS = ["text", "code", "instructions"]


def row(stage, name, r):
    return "| %s | %s | %d | %.3f | %.2f | %.2f | %.2f | %.1f | %.1f | %.2fx | %.3f |" % (
        stage, name, r["prompts"], r["acceptance_rate"], r["tau"], r["mbsu"], r["mbsu_bytes"],
        r["tokens_per_s_plain"], r["tokens_per_s_spec"], r["speedup"], r["cost_ratio_measured"])


def main():
    directory = sys.argv[1]
    lines = ["| stage | set | prompts | acceptance | tau | MBSU | MBSU (bytes) | plain t/s | spec t/s | speedup | cost ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for label, stage in STAGES:
        path = os.path.join(directory, label + ".json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
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
                        "%.3f" % breakeven if breakeven is not None else "none (the draft is too slow to pay)"))
    if len(lines) == 2:
        raise SystemExit("%s: no speculate reports (pt.json, cp.json, align.json)" % directory)
    print("\n".join(lines + [""] + notes))


if __name__ == "__main__":
    main()

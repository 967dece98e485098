#!/usr/bin/env python3
"""The recipe's figure (PNG) from one or more recipe work directories (launch/recipe.sh's `work`):

    recipe_plot.py --output FIG.png WORK_DIR [WORK_DIR ...]     e.g. recipe_plot.py --output f.png runs/quickstart

Left: training loss against training tokens per draft (WORK_DIR/run/metrics.jsonl), the stage boundaries marked and
named, validation losses per source as markers. Right: acceptance rate per prompt set and overall for each measured
stage (WORK_DIR/results/{pt,cp,align,align-q8_0}.json, `speculate --json` reports), one group of bars per set, a
colour per stage and a hatch per draft, with the issue's comparison figures after alignment as reference lines.

Prints one line per draft and stage with the acceptance figures it plotted (three decimals, as table.md has them),
so what the figure shows can be checked without looking at it. A missing input is skipped with a note on stderr; a
WORK_DIR that does not exist exits 2.
"""
import argparse
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")  # no display on the training machines
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recipe_table import SETS, STAGES, quantized_kind  # noqa: E402

STAGE_COLOURS = {"pt": "#9ecae1", "cp": "#4292c6", "align": "#08519c", "align-q8_0": "#e6550d",
                 "align-q8_0-subset": "#a63603"}
# A draft quantized at load keeps its subset head and the GGUF export widens it, so drafts compared side by side
# may hold either: they get colours of their own.
AT_LOAD_COLOUR = "#fdae6b"
HATCHES = ["", "//", "..", "xx", "\\\\", "++"]
# Acceptance after alignment that issue 14 compares against (text, code, instructions).
REFERENCES = [
    ("FastDraft, 50M Phi-3 draft (published)", {"text": 0.306, "code": 0.562, "instructions": 0.370}, "--", "black"),
    ("same recipe, PyTorch + transformers (this machine class)", {"text": 0.103, "code": 0.139, "instructions": 0.155},
     ":", "dimgray"),
]
SOURCE_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]


def note(message):
    print("recipe_plot: " + message, file=sys.stderr)


def draft_name(work):
    # The recipe's own name (the log's `recipe[NAME]` prefix) tells variants that share a basename apart.
    try:
        with open(os.path.join(work, "recipe.log"), encoding="utf-8") as f:
            match = re.match(r"recipe\[([^\]]+)\]", f.readline())
        if match:
            return match.group(1)
    except OSError:
        pass
    return os.path.basename(os.path.normpath(work))


def read_metrics(work):
    """Training points, evaluations and each stage's first step; None when the run has no metrics yet."""
    path = os.path.join(work, "run", "metrics.jsonl")
    if not os.path.exists(path):
        note("%s: no metrics (training not started), loss not plotted" % path)
        return None
    # Keyed by step: a resumed run logs again the steps after its checkpoint, and the later line is the one the
    # training that continued actually took.
    train, evals, starts = {}, {}, {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except ValueError:
                # A run killed while writing leaves its last line cut short.
                note("%s:%d: not JSON, skipped" % (path, number))
                continue
            event = record.get("event")
            if event is None and "loss" in record and "step" in record:
                train[record["step"]] = record
            elif event == "eval" and isinstance(record.get("val_loss"), dict):
                evals[record["step"]] = record["val_loss"]
            elif event == "stage_start":
                # A resume announces its stage again; the stage began at the first announcement.
                starts[record["stage"]] = min(record["step"], starts.get(record["stage"], record["step"]))
    if not train:
        note("%s: no training steps logged yet, loss not plotted" % path)
        return None
    steps = sorted(train)
    for step in steps:
        starts.setdefault(train[step].get("stage", "?"), step)
    return {"train": [train[s] for s in steps], "evals": sorted(evals.items()), "starts": starts}


def read_reports(work):
    reports = []
    for label, name in STAGES:
        path = os.path.join(work, "results", label + ".json")
        if not os.path.exists(path):
            note("%s: not measured, skipped" % path)
            continue
        try:
            with open(path, encoding="utf-8") as f:
                report = json.load(f)
        except ValueError as error:
            note("%s: not a speculate report (%s), skipped" % (path, error))
            continue
        if name is None:
            name = "align, %s" % quantized_kind(report.get("draft", ""))
        reports.append((label, name, report))
    return reports


def set_names(drafts):
    extra = set()
    for draft in drafts:
        for _, _, report in draft["reports"]:
            extra |= set(report.get("sets", {})) - set(SETS)
    return SETS + sorted(extra) + ["overall"]


def acceptance(report, name):
    figures = report["overall"] if name == "overall" else report.get("sets", {}).get(name)
    return None if figures is None else figures.get("acceptance_rate")


def stage_colour(label, stage):
    return AT_LOAD_COLOUR if stage.endswith("at load") else STAGE_COLOURS[label]


def plot_loss(ax, drafts, colours):
    by_tokens = all(all("tokens" in r for r in d["metrics"]["train"]) for d in drafts if d["metrics"])
    key = "tokens" if by_tokens else "step"
    sources = sorted({s for d in drafts if d["metrics"] for _, losses in d["metrics"]["evals"] for s in losses})
    markers = {s: SOURCE_MARKERS[i % len(SOURCE_MARKERS)] for i, s in enumerate(sources)}
    labelled = set()
    for draft, colour in zip(drafts, colours):
        metrics = draft["metrics"]
        if metrics is None:
            continue
        steps = [r["step"] for r in metrics["train"]]
        xs = [r[key] for r in metrics["train"]]
        # Boundaries and evaluations are logged by step; tokens per step can change with the stage, so a step
        # between two logged points is placed on the line between their token counts.
        per_step = xs[0] / steps[0] if steps[0] else 0

        def at(step):
            if step <= steps[0]:
                return step * per_step
            for (s0, x0), (s1, x1) in zip(zip(steps, xs), zip(steps[1:], xs[1:])):
                if step <= s1:
                    return x0 + (x1 - x0) * (step - s0) / (s1 - s0)
            return xs[-1] + (step - steps[-1]) * ((xs[-1] - xs[-2]) / (steps[-1] - steps[-2]) if len(xs) > 1 else 0)

        ax.plot(xs, [r["loss"] for r in metrics["train"]], color=colour, linewidth=1.4, label="%s, train" % draft["name"])
        for step, losses in metrics["evals"]:
            for source, loss in losses.items():
                ax.plot([at(step)], [loss], linestyle="none", marker=markers[source], markersize=4.5, color=colour,
                        markerfacecolor="white", markeredgewidth=1.1)
        for stage, step in sorted(metrics["starts"].items(), key=lambda item: item[1]):
            x = at(step)
            ax.axvline(x, color=colour, linestyle=":", linewidth=1, alpha=0.8)
            # Drafts sharing a schedule share boundaries: one name per place is enough.
            if (stage, round(x)) not in labelled:
                labelled.add((stage, round(x)))
                ax.text(x, 0.98, " " + stage, transform=ax.get_xaxis_transform(), ha="left", va="top", fontsize=8,
                        color="0.25")
    # Headroom above the curves for the stage names, which would otherwise sit on the early, high losses.
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.12 * (high - low))
    ax.set_xlabel("training tokens" if by_tokens else "training step")
    ax.set_ylabel("loss per token")
    ax.set_title("Training loss by stage; validation loss per source (markers)")
    ax.grid(alpha=0.3)
    if by_tokens:
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))
    handles = [Line2D([], [], color=c, linewidth=1.4, label="%s, train" % d["name"])
               for d, c in zip(drafts, colours) if d["metrics"]]
    handles += [Line2D([], [], color="0.4", linestyle="none", marker=markers[s], markerfacecolor="white",
                       label="val: %s" % s) for s in sources]
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(4, len(handles)),
                  fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no training metrics yet", transform=ax.transAxes, ha="center", va="center")
        ax.set_xticks([])
        ax.set_yticks([])


def plot_acceptance(ax, drafts):
    names = set_names(drafts)
    bars = [(i, d, label, stage, report) for i, d in enumerate(drafts) for label, stage, report in d["reports"]]
    width = 0.84 / max(1, len(bars))
    top = 0.0
    for n, (i, draft, label, stage, report) in enumerate(bars):
        offset = -0.42 + width * (n + 0.5)
        positions, heights = [], []
        for g, name in enumerate(names):
            value = acceptance(report, name)
            if value is not None:
                positions.append(g + offset)
                heights.append(value)
        top = max([top] + heights)
        ax.bar(positions, heights, width=width, color=stage_colour(label, stage), hatch=HATCHES[i % len(HATCHES)],
               edgecolor="white" if i == 0 else "0.15", linewidth=0.5)
        if len(bars) <= 12:
            for x, h in zip(positions, heights):
                ax.text(x, h + 0.006, "%.3f" % h, ha="center", va="bottom", fontsize=6, rotation=90)
    for title, figures, style, colour in REFERENCES:
        for g, name in enumerate(names):
            if name in figures:
                ax.hlines(figures[name], g - 0.45, g + 0.45, colors=colour, linestyles=style, linewidth=1.3)
                top = max(top, figures[name])
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.55, len(names) - 0.45)
    ax.set_ylim(0, top * 1.18 + 0.01)
    ax.set_ylabel("acceptance rate (accepted / proposed)")
    ax.set_title("Acceptance per prompt set after each stage")
    ax.grid(axis="y", alpha=0.3)
    stages, seen = [], []
    for _, _, label, stage, _ in bars:
        if stage not in seen:
            seen.append(stage)
            stages.append(Patch(facecolor=stage_colour(label, stage), label=stage))
    hatches = [Patch(facecolor="white", edgecolor="0.15", hatch=HATCHES[i % len(HATCHES)], label=d["name"])
               for i, d in enumerate(drafts)] if len(drafts) > 1 else []
    references = [Line2D([], [], color=colour, linestyle=style, label="%s:\n%s" % (title, ", ".join(
        "%s %s" % (s, ("%.3f" % figures[s]).lstrip("0")) for s in SETS))) for title, figures, style, colour in REFERENCES]
    # One legend, a column each for stages, drafts and references (matplotlib fills columns first, so the shorter
    # ones are padded with blank entries): two legends side by side would overlap once the columns grow.
    columns = [c for c in (stages, hatches, references) if c]
    rows = max(len(c) for c in columns)
    blank = Line2D([], [], linestyle="none", label=" ")
    handles = [h for c in columns for h in c + [blank] * (rows - len(c))]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(columns), fontsize=7.5,
              frameon=False, title="bars: stage%s; lines: acceptance after alignment, for comparison"
              % (", hatch: draft" if hatches else ""), title_fontsize=7.5)
    if not bars:
        ax.text(0.5, 0.5, "no stage measured yet", transform=ax.transAxes, ha="center", va="center")
    return names, bars


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="the PNG to write")
    parser.add_argument("work", nargs="+", metavar="WORK_DIR", help="a recipe work directory (e.g. runs/quickstart)")
    args = parser.parse_args()
    for work in args.work:
        if not os.path.isdir(work):
            print("recipe_plot: %s: no such recipe work directory" % work, file=sys.stderr)
            sys.exit(2)

    drafts, counts = [], {}
    for work in args.work:
        name = draft_name(work)
        counts[name] = counts.get(name, 0) + 1
        # The same directory given twice (or two with one name) still needs two legend entries.
        if counts[name] > 1:
            name = "%s (%d)" % (name, counts[name])
        drafts.append({"name": name, "metrics": read_metrics(work), "reports": read_reports(work)})

    colours = [plt.get_cmap("tab10")(i % 10) for i in range(len(drafts))]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110, layout="constrained")
    plot_loss(left, drafts, colours)
    names, bars = plot_acceptance(right, drafts)
    fig.savefig(args.output, dpi=110)

    for _, draft, _, stage, report in bars:
        figures = ["%s %.3f" % (name, acceptance(report, name)) for name in names if acceptance(report, name) is not None]
        print("%s | %s | acceptance %s" % (draft["name"], stage, " ".join(figures)))
    for draft in drafts:
        metrics = draft["metrics"]
        if metrics:
            last = metrics["train"][-1]
            starts = " ".join("%s@%d" % item for item in sorted(metrics["starts"].items(), key=lambda item: item[1]))
            print("%s | loss | %d steps, last step %d loss %.3f; stages %s" % (
                draft["name"], len(metrics["train"]), last["step"], last["loss"], starts))


if __name__ == "__main__":
    main()

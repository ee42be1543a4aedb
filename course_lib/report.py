"""The chain's report card (chapter 10): its numbers in markdown, compared with the shipped run's,
and an HTML page with figures.

``python -m course_lib.pipeline`` fills a report card stage by stage (``report_card.json``: each
stage's rows ``{measure: value}`` and its seconds). This module turns one into something to read:

- ``compare(numbers, shipped)``: every row of a run next to the same row of the shipped run
  (``course_lib/assets/report_card.json``), with a verdict: ``same``, ``within noise``,
  ``differs`` (a number outside its noise band), ``clock`` (times and speeds: they depend on the
  machine, so only their ratio is shown), ``text differs`` (a sample answer: not judged) or
  ``new`` / ``missing``;
- ``noise_band``: how far two measurements of the same number may lie apart by chance. A share
  measured on ``n`` items (``n`` read from the value's "of N", else ``DEFAULT_N``) has a binomial
  standard error; two independent runs differ by up to twice the standard error of their
  difference, ``2 sqrt(2 p (1 - p) / n)``, and by at least one point (the card rounds to whole
  percents). Other decimals (losses, scores, KLs) get ``max(0.1, 10 %)``. Whole counts move
  like Poisson counts, ``2 sqrt(2 k)``: the counts of outcomes (facts the model knew, pairs it
  wrote, tokens per answer) vary from run to run, while those fixed by the seed (documents,
  parameters) come out equal, and a change of data or recipe moves them by far more than the
  band (a corpus that must be equal to the byte is tested as such, in ``tests/test_data.py``);
  a number right after
  ``n=`` or ``step`` is where a curve peaked, which follows the curve's values and is not judged
  on its own;
- ``markdown_comparison`` and ``write_html``: the comparison as markdown, and the whole card as
  one self-contained HTML page (figures inlined as PNG, no script, nothing fetched), with the
  figures of ``figures``: each stage's time against the shipped run's and the chain's budget, the
  training curves, RL's held-out accuracy, best-of-n and RLHF's scores against the KL, each run
  drawn over the shipped one.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path

from course_lib.assets import ASSETS_DIR

CHAIN_BUDGET_MIN = 150        # issue 18: every stage of the full chain, two CPU cores
QUICK_BUDGET_MIN = 10         # the --quick chain
DEFAULT_N = 100               # the smallest evaluation set of the card, when a row names none
NUMBER = re.compile(r"(?<![\w.])[+-]?\d(?:[\d,]*\d)?(?:\.\d+)?(?:e[+-]?\d+)?%?")
CLOCK = re.compile(r"\btime\b|speed|seconds|per seed \(wall\)|tokens/s", re.I)
LOG_FILES = {"base model": "base_model.json", "assistant": "sft_model.json",
             "hallucination and tools": "tool_model.json",
             "reinforcement learning": "rl_model.json", "RLHF": "rlhf_model.json"}


# ---------------------------------------------------------------------------------------------
# Comparing two cards
# ---------------------------------------------------------------------------------------------


def numbers_in(text: str) -> list[str]:
    """The numbers of a card value as written (``"18% / 52% -> 49%"`` -> ``["18%", "52%",
    "49%"]``); thousands separators and signs kept."""
    return NUMBER.findall(str(text))


def skeleton(text: str) -> str:
    """The value with every number replaced by ``#``: two values compare number by number only
    when their skeletons are equal."""
    return NUMBER.sub("#", str(text))


def _float(token: str) -> float:
    return float(token.rstrip("%").replace(",", ""))


def noise_band(token: str, other: str, n: int) -> float:
    """How far ``token`` and ``other`` (the same number of two runs) may differ by chance:
    see the module's docstring."""
    a, b = _float(token), _float(other)
    if token.endswith("%"):
        p = min(max((a + b) / 200, 0.0), 1.0)
        return max(1.0, 100 * 2 * math.sqrt(2 * p * (1 - p) / max(1, n)))
    if "." in token or "e" in token.lower():
        return max(0.1, 0.1 * max(abs(a), abs(b)))
    return 2 * math.sqrt(2 * max(abs(a) + abs(b), 1) / 2)


def _sample_size(measure: str, value: str) -> int:
    found = re.findall(r"\bof ([\d,]+)\b", f"{measure} {value}")
    sizes = [int(f.replace(",", "")) for f in found if f.replace(",", "").isdigit()]
    return min(sizes) if sizes else DEFAULT_N


def compare_value(measure: str, mine, shipped) -> tuple[str, str]:
    """``(verdict, why)`` for one row measured in two runs (module docstring)."""
    if shipped is None:
        return "new", "not on the shipped card"
    if mine is None:
        return "missing", "on the shipped card, not on this one"
    mine, shipped = str(mine), str(shipped)
    if CLOCK.search(measure):
        a, b = numbers_in(mine), numbers_in(shipped)
        if a and b and _float(b[0]):
            return "clock", f"{_float(a[0]) / _float(b[0]):.2f}x the shipped run's"
        return "clock", "depends on the machine"
    if mine == shipped:
        return "same", ""
    if skeleton(mine) != skeleton(shipped) or " · " in measure:   # " · ": a model's sample answer
        return "text differs", "not judged: a sample, or a value of another shape"
    n = _sample_size(measure, shipped)
    out = []
    after = re.split(NUMBER, shipped)   # the text before each number
    for i, (a, b) in enumerate(zip(numbers_in(mine), numbers_in(shipped))):
        if a == b or re.search(r"(n=|step )$", after[i]):
            continue
        band = noise_band(a, b, n)
        if abs(_float(a) - _float(b)) > band + 1e-9:
            out.append(f"{a} vs {b} (noise +/-{band:.2g})")
    return ("differs", "; ".join(out)) if out else ("within noise", "")


def compare(numbers: dict, shipped: dict) -> list[dict]:
    """Every row of the card ``numbers`` beside the shipped card's, with ``compare_value``'s
    verdict: a list of ``{"stage", "measure", "run", "shipped", "verdict", "why"}`` in the card's
    order (the stages of ``numbers``, then shipped stages it lacks)."""
    rows = []
    stages = [s for s in numbers if isinstance(numbers[s], dict) and s != "chain"]
    stages += [s for s in shipped if isinstance(shipped[s], dict) and s != "chain"
               and s not in stages]
    for stage in stages:
        mine, theirs = numbers.get(stage, {}), shipped.get(stage, {})
        if stage not in numbers:
            rows.append({"stage": stage, "measure": "(the stage)", "run": None, "shipped": "ran",
                         "verdict": "missing", "why": "this run did not reach it"})
            continue
        measures = list(mine) + [m for m in theirs if m not in mine]
        for m in measures:
            name = "time" if m == "seconds" else m
            a, b = mine.get(m), theirs.get(m) if stage in shipped else None
            if m == "seconds":
                a = None if a is None else f"{a:.0f} s"
                b = None if b is None else f"{b:.0f} s"
            verdict, why = compare_value(name, a, b)
            rows.append({"stage": stage, "measure": name, "run": a, "shipped": b,
                         "verdict": verdict, "why": why})
    return rows


def summary(rows: list[dict]) -> dict:
    """How many rows got each verdict."""
    out: dict = {}
    for r in rows:
        out[r["verdict"]] = out.get(r["verdict"], 0) + 1
    return out


QUICK_NOTE = ("A quick run trains toy models on a sliver of the data: it is expected to differ "
              "from the shipped run nearly everywhere, and is compared to show the card's form.")


def markdown_comparison(rows: list[dict], quick: bool = False) -> list[str]:
    """The comparison as markdown lines: one count line, then the rows that differ beyond noise
    or are missing, then the clocks."""
    if not rows:
        return []
    counts = summary(rows)
    order = ("same", "within noise", "differs", "text differs", "clock", "new", "missing")
    lines = ["## compared with the shipped run", ""] + ([QUICK_NOTE, ""] if quick else []) + [
             "Each row beside the same row of `course_lib/assets/report_card.json`: "
             + ", ".join(f"{counts[v]} {v}" for v in order if v in counts) + ". "
             "Noise: a share on n items may move by 2 sqrt(2 p (1 - p) / n) (n from the row, "
             f"else {DEFAULT_N}); other decimals by max(0.1, 10 %); a count k by 2 sqrt(2 k).", ""]
    bad = [r for r in rows if r["verdict"] in ("differs", "missing")]
    if bad:
        lines += ["| stage | measure | this run | shipped | why |", "|---|---|---|---|---|"]
        lines += [f"| {r['stage']} | {r['measure']} | {_cell(r['run'])} | {_cell(r['shipped'])} "
                  f"| {r['why']} |" for r in bad] + [""]
    else:
        lines += ["Nothing differs beyond noise.", ""]
    clocks = [r for r in rows if r["verdict"] == "clock" and r["measure"] == "time"]
    if clocks:
        lines += ["| stage | time, this run | shipped | ratio |", "|---|---|---|---|"]
        lines += [f"| {r['stage']} | {r['run']} | {r['shipped']} | {r['why'].split(' ')[0]} |"
                  for r in clocks] + [""]
    return lines


def _cell(v) -> str:
    return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")


def load_card(folder: str | Path) -> dict:
    """A run's ``report_card.json`` (the shipped one: ``ASSETS_DIR``), with a clear error."""
    path = Path(folder) / "report_card.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `python -m course_lib.pipeline "
                                f"--out {folder}` first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a report card ({e}); remake it with `python -m "
                         f"course_lib.pipeline --out {folder} --resume`") from e


def chain_minutes(numbers: dict) -> float:
    """Minutes of every stage of a card, together."""
    return sum(v.get("seconds", 0) for k, v in numbers.items()
               if isinstance(v, dict) and k != "chain") / 60


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def _log(folder: Path, name: str) -> dict | None:
    try:
        return json.loads((Path(folder) / name).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _smooth(ys: list, k: int) -> list:
    out, acc = [], 0.0
    for i, y in enumerate(ys):
        acc += y
        if i >= k:
            acc -= ys[i - k]
        out.append(acc / min(i + 1, k))
    return out


def figures(run: str | Path, shipped: str | Path = ASSETS_DIR) -> list[tuple[str, object]]:
    """``(title, matplotlib Figure)`` for each figure the two folders' logs allow: stage times,
    loss curves, RL's held-out pass@1, best-of-n and RLHF's RL curves, this run drawn solid over
    the shipped run dashed."""
    from matplotlib.figure import Figure

    run, shipped = Path(run), Path(shipped)
    cards = {"this run": _log(run, "report_card.json") or {},
             "shipped": _log(shipped, "report_card.json") or {}}
    style = {"this run": dict(color="C0", lw=1.8), "shipped": dict(color="0.45", lw=1.4, ls="--")}
    out = []

    stages = [s for s in cards["shipped"] if isinstance(cards["shipped"][s], dict)]
    stages += [s for s in cards["this run"] if isinstance(cards["this run"][s], dict)
               and s not in stages]
    stages = [s for s in stages if s != "chain"]
    if stages:
        fig = Figure(figsize=(9, 0.45 * len(stages) + 1.6))
        ax = fig.subplots()
        y = range(len(stages))
        for j, (who, card) in enumerate(cards.items()):
            mins = [card.get(s, {}).get("seconds", 0) / 60 for s in stages]
            ax.barh([i + 0.2 - 0.4 * j for i in y], mins, height=0.38, label=who,
                    color=style[who]["color"])
        ax.set_yticks(list(y), stages)
        ax.invert_yaxis()
        ax.set_xlabel("minutes")
        totals = ", ".join(f"{who} {chain_minutes(card):.0f} min" for who, card in cards.items()
                           if card)
        quick = cards["this run"].get("chain", {}).get("quick")
        budget = f"a quick run's budget {QUICK_BUDGET_MIN}" if quick else f"budget {CHAIN_BUDGET_MIN}"
        ax.set_title(f"Each stage's time (all stages: {totals}; {budget} min)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        out.append(("time per stage", fig))

    curves = [("base model", "base_model.json", "pretraining loss (train)"),
              ("assistant", "sft_model.json", "SFT loss on the assistant's tokens (train)")]
    for stage, name, title in curves:
        logs = {w: _log(f, name) for w, f in (("this run", run), ("shipped", shipped))}
        if not any(logs.values()):
            continue
        fig = Figure(figsize=(9, 3.4))
        ax = fig.subplots()
        for who, log in logs.items():
            if log and log.get("history"):
                h = log["history"]
                k = max(1, len(h) // 100)
                ax.plot([r["step"] for r in h], _smooth([r["loss"] for r in h], k), label=who,
                        **style[who])
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        out.append((title, fig))

    logs = {w: _log(f, "rl_model.json") for w, f in (("this run", run), ("shipped", shipped))}
    if any(logs.values()):
        fig = Figure(figsize=(9, 3.4))
        ax = fig.subplots()
        for who, log in logs.items():
            for i, r in enumerate((log or {}).get("runs", [])):
                ev = [(step, m["pass@1"]) for step, _, m in r.get("evals", []) if "pass@1" in m]
                if ev:
                    ax.plot(*zip(*ev), marker="o", ms=3, label=f"{who}, seed {r.get('seed', i)}",
                            alpha=1 if i == 0 else 0.5, **style[who])
        ax.set_xlabel("GRPO step")
        ax.set_ylabel("held-out pass@1")
        ax.set_title("RL on 4-digit sums: held-out accuracy during training")
        ax.legend(fontsize=8)
        fig.tight_layout()
        out.append(("RL held-out pass@1", fig))

    logs = {w: _log(f, "rlhf_model.json") for w, f in (("this run", run), ("shipped", shipped))}
    if any(logs.values()):
        fig = Figure(figsize=(10, 3.6))
        left, right = fig.subplots(1, 2)
        for who, log in logs.items():
            for rm, curve in ((log or {}).get("best_of_n") or {}).items():
                pts = curve.get("curve", [])
                left.plot([p["n"] for p in pts], [p["true"] for p in pts], marker="o", ms=3,
                          label=f"{who}, {rm} RM", alpha=1 if rm == "on-policy" else 0.55,
                          **style[who])
            for name, pts in ((log or {}).get("rl") or {}).items():
                right.plot([p[2]["kl"] for p in pts], [p[2]["true"] for p in pts], marker="o",
                           ms=3, label=f"{who}, {name}", alpha=1 if name == "RL" else 0.55,
                           **style[who])
        left.set_xscale("log", base=2)
        left.set_xlabel("n (best of n, on the reward model)")
        left.set_ylabel("true score (hidden labeller)")
        left.set_title("best-of-n")
        right.set_xscale("symlog", linthresh=1)
        right.set_xlabel("KL from the assistant")
        right.set_title("RL against the reward model")
        left.legend(fontsize=7)
        right.legend(fontsize=7)
        fig.tight_layout()
        out.append(("RLHF: best-of-n and RL against the true score", fig))
    return out


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------------------------
# The HTML page
# ---------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;width:100%;font-size:14px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
th{background:#f3f3f3}.differs,.missing{background:#fde2e1}.within{background:#eef7ee}
.same{background:#fff}.clock,.text{background:#f6f6f6;color:#555}img{max-width:100%}
code{background:#f3f3f3;padding:0 3px}"""


def write_html(run: str | Path, shipped: str | Path = ASSETS_DIR, path: str | Path | None = None
               ) -> Path:
    """``report_card.html`` in ``run``: the run's card beside the shipped one, the verdicts, the
    figures; one file, readable offline."""
    run = Path(run)
    numbers = load_card(run)
    theirs = _log(Path(shipped), "report_card.json") or {}
    rows = compare(numbers, theirs)
    chain = numbers.get("chain", {})
    e = html.escape
    mins = chain_minutes(numbers)
    budget = QUICK_BUDGET_MIN if chain.get("quick") else CHAIN_BUDGET_MIN
    counts = summary(rows)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Report card: {e(str(run))}"
             f"</title><style>{_CSS}</style></head><body>",
             "<h1>Report card of the course pipeline</h1>",
             f"<p>Run <code>{e(str(run))}</code>: {'quick' if chain.get('quick') else 'full'} run, "
             f"recipe {e(str(chain.get('recipe')))}, world seed {e(str(chain.get('seed')))}; "
             f"{len(chain.get('finished', []))} stages finished in {mins:.1f} min "
             f"(budget {budget} min: {'met' if mins <= budget else '<b>missed</b>'}). "
             f"Compared with the shipped run (<code>{e(str(shipped))}</code>): "
             + ", ".join(f"{n} {e(v)}" for v, n in counts.items()) + ".</p>",
             "<p>Noise: a share measured on n items may move by 2&radic;(2p(1&minus;p)/n) "
             f"between runs (n from the row, else {DEFAULT_N}); other decimals by max(0.1, 10 %); "
             "a count k by 2&radic;(2k); times are the machine's and only compared as a ratio.</p>"]
    if chain.get("quick"):
        parts.append(f"<p><b>{e(QUICK_NOTE)}</b></p>")
    for title, fig in figures(run, shipped):
        parts.append(f"<h3>{e(title)}</h3><img alt='{e(title)}' "
                     f"src='data:image/png;base64,{_png(fig)}'>")
    stage = None
    for r in rows:
        if r["stage"] != stage:
            if stage is not None:
                parts.append("</table>")
            stage = r["stage"]
            parts.append(f"<h2>{e(stage)}</h2><table><tr><th>measure</th><th>this run</th>"
                         "<th>shipped</th><th>verdict</th></tr>")
        cls = r["verdict"].split(" ")[0]
        parts.append(f"<tr class='{cls}'><td>{e(r['measure'])}</td><td>{e(_cell(r['run']))}</td>"
                     f"<td>{e(_cell(r['shipped']))}</td><td>{e(r['verdict'])}"
                     + (f": {e(r['why'])}" if r["why"] else "") + "</td></tr>")
    if stage is not None:
        parts.append("</table>")
    if numbers.get("targets"):
        parts.append("<h2>what the second half of the course needs</h2><table><tr><th>measure"
                     "</th><th>value</th><th>target</th><th>met</th></tr>")
        parts += [f"<tr class='{'same' if ok == 'yes' else 'differs'}'><td>{e(m)}</td>"
                  f"<td>{e(str(v))}</td><td>{e(str(t))}</td><td>{e(ok.strip('*'))}</td></tr>"
                  for m, v, t, ok in numbers["targets"]]
        parts.append("</table>")
    parts.append("</body></html>")
    out = Path(path) if path else run / "report_card.html"
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(out)
    return out


# ---------------------------------------------------------------------------------------------
# The last stage's rows, as tables
# ---------------------------------------------------------------------------------------------

SIDE_BY_SIDE_STAGE = "the models side by side"
_SCORE_ROW = re.compile(r"^(\w+) \((base|chat|tools)\): (.+)$")


def side_by_side_tables(numbers: dict) -> tuple[dict, dict]:
    """The last stage's rows of a card as two tables: ``{model: {kind: value}}`` (each model's
    score on each kind of question) and ``{question: {model: answer}}`` (the first question of
    each kind, every model's answer)."""
    scores, answers = {}, {}
    for measure, value in numbers.get(SIDE_BY_SIDE_STAGE, {}).items():
        m = _SCORE_ROW.match(measure)
        if m:
            value = re.sub(r" \(of \d+ each\)$", "", str(value))
            scores[m.group(1)] = dict(zip(m.group(3).split(" / "), value.split(" / ")))
        elif " · " in measure:
            model, question = measure.split(" · ", 1)
            answers.setdefault(question, {})[model] = value
    return scores, answers

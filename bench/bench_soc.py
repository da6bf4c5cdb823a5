"""What reaches a person on a realistic benign corpus: incidents vs alerts, baselines, and `tune`'s effect.

    python bench/bench_soc.py --corpus benign.ndjson [--judge-days 1]
    python bench/bench_soc.py --days 9 --nodes 12          # generate with bench.corpus first

The corpus (``python -m bench.corpus benign``) is split by time: the last ``--judge-days`` are judged,
everything before is history. The shipped sample's attack story (35 alerts of one service account) is
moved into the judged period. Printed, all as ratios in the same run:

* alerts and incidents (low+, medium+) on the judged period: alerts per incident;
* behaviour-baseline alerts (scan --history) per 10k judged requests, by kind;
* ``tune``: exceptions proposed from the alerts of the history's last ``--tune-days``, then the judged period rescanned with them:
  alerts before/after (the benign share) and the attack story's alerts before/after (recall).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kaudit_elk.detect.scan import ScanStats, sample_path, scan  # noqa: E402
from kaudit_elk.rules.alerts import severity_rank  # noqa: E402
from kaudit_elk.rules.baselines import BaselineOptions, judged_rule_ids  # noqa: E402
from kaudit_elk.rules.exceptions import propose, render  # noqa: E402
from kaudit_elk.rules.incidents import build_incidents  # noqa: E402
from kaudit_elk.rules.loader import default_pack_dir, load_rules  # noqa: E402

import yaml  # noqa: E402

ATTACKER = "system:serviceaccount:ci:deployer"
KEYS = ("requestReceivedTimestamp", "stageTimestamp")


def _ts(line: str) -> str:
    i = line.find('"stageTimestamp"')
    return line[i + 18:i + 18 + 19] if i >= 0 else ""


def split(corpus: Path, judge_days: float, out: Path, tune_days: float) -> tuple[str, str, int, str]:
    """history / judged files (the judged one with the attack story moved into its middle), and the last
    ``tune_days`` of history for ``tune``."""
    last = ""
    with corpus.open() as fh:
        for line in fh:
            t = _ts(line)
            last = max(last, t)
    end = datetime.fromisoformat(last).replace(tzinfo=timezone.utc)
    cut = (end - timedelta(days=judge_days)).strftime("%Y-%m-%dT%H:%M:%S")
    tune_cut = (end - timedelta(days=judge_days + tune_days)).strftime("%Y-%m-%dT%H:%M:%S")
    hist, judged, recent = out / "history.ndjson", out / "judged.ndjson", out / "recent.ndjson"
    n = 0
    with corpus.open() as fh, hist.open("w") as h, judged.open("w") as j, recent.open("w") as r:
        for line in fh:
            t = _ts(line)
            if t < cut:
                h.write(line)
                if t >= tune_cut:
                    r.write(line)
            else:
                j.write(line)
                n += 1
        story = [json.loads(x) for x in sample_path().read_text().splitlines() if x.strip()]
        first = min(datetime.fromisoformat(e[k].replace("Z", "+00:00")) for e in story for k in KEYS if e.get(k))
        delta = end - timedelta(days=judge_days / 2) - first
        for e in story:
            for k in KEYS:
                if e.get(k):
                    e[k] = (datetime.fromisoformat(e[k].replace("Z", "+00:00")) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            j.write(json.dumps(e) + "\n")
    return str(hist), str(judged), n, str(recent)


def _medium(alerts: list[dict]) -> list[dict]:
    return [a for a in alerts if severity_rank(a["kaudit"]["alert"]["severity"]) >= 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--days", type=float, default=9)
    ap.add_argument("--nodes", type=int, default=12)
    ap.add_argument("--judge-days", type=float, default=1)
    ap.add_argument("--tune-days", type=float, default=3, help="the last days of history tune reads")
    args = ap.parse_args()
    pack = load_rules([default_pack_dir()])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = args.corpus
        if corpus is None:
            from bench.corpus import benign_events

            corpus = work / "benign.ndjson"
            with corpus.open("w") as fh:
                for e in benign_events(days=args.days, nodes=args.nodes):
                    fh.write(json.dumps(e) + "\n")
        hist, judged, benign_n, recent = split(corpus, args.judge_days, work, args.tune_days)
        stats = ScanStats()
        alerts = list(scan([judged], pack, history=[hist], baselines=BaselineOptions(), stats=stats))
        requests = stats.events
        attack = {a["kaudit"]["alert"]["id"] for a in alerts if (a.get("user") or {}).get("name") == ATTACKER}
        benign = [a for a in alerts if a["kaudit"]["alert"]["id"] not in attack]
        incidents = build_incidents(alerts)
        med_inc = [i for i in incidents if i["kaudit"]["incident"]["severity_rank"] >= 2]
        print(f"judged period: {requests:,} events ({benign_n:,} benign) after {args.judge_days:g} day(s); {stats.baseline_note}")
        print(f"alerts low+ {len(alerts)}, medium+ {len(_medium(alerts))}; incidents low+ {len(incidents)}, "
              f"medium+ {len(med_inc)}; alerts per incident {len(alerts) / max(len(incidents), 1):.1f}x")
        story = [i for i in incidents if i["kaudit"]["incident"]["actor"]["identity"] == ATTACKER]
        print(f"attack story: {len(attack)} alerts in {len(story)} incident(s)"
              + (f", severity {story[0]['kaudit']['incident']['severity']}, risk {story[0]['kaudit']['incident']['risk_score']}"
                 if story else ""))
        base = [a for a in benign if a["rule"]["id"] in judged_rule_ids()]
        kinds = Counter(a["kaudit"]["alert"]["group"]["baseline"] for a in base)
        print(f"baseline alerts on benign: {len(base)} ({len(_medium(base))} medium+) = "
              f"{10000 * len(_medium(base)) / max(benign_n, 1):.2f} medium+ per 10k benign requests; by kind {dict(kinds)}")
        print(f"medium+ benign alerts per 10k benign requests (pack + baselines): "
              f"{10000 * len(_medium(benign)) / max(benign_n, 1):.2f}")
        history_alerts = list(scan([recent], pack, min_severity="low"))
        proposals = propose(history_alerts, pack)
        tuning = yaml.safe_load(render(proposals, total_alerts=len(history_alerts), span=None))
        tuned = load_rules([default_pack_dir()], tuning=tuning)
        after = list(scan([judged], tuned, history=[hist], baselines=BaselineOptions()))
        attack_after = {a["kaudit"]["alert"]["id"] for a in after if (a.get("user") or {}).get("name") == ATTACKER}
        benign_after = [a for a in after if a["kaudit"]["alert"]["id"] not in attack_after]
        high = sum(p.high for p in proposals)
        print(f"tune ({args.tune_days:g} days of history): {len(history_alerts)} history alerts -> {len(proposals)} proposals ({high} high/critical, "
              f"commented out); benign alerts on the judged period {len(benign)} -> {len(benign_after)} "
              f"(medium+ {len(_medium(benign))} -> {len(_medium(benign_after))}), ratio "
              f"{len(benign_after) / max(len(benign), 1):.2f}x; attack alerts {len(attack)} -> {len(attack_after)} "
              f"(recall {len(attack_after & attack) / max(len(attack), 1):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the random suite's oracle keep its false-alarm budget? Measured out of sample.

    .venv/bin/python tests/benchmarks/oracle_budget.py [--seeds 0 1 2] [--shops 20] [--hours 78]
    .venv/bin/python tests/benchmarks/oracle_budget.py --only 0/7 2/15 [--hours 78]

For each shop, the oracle's tests (each incident's metrics on every series that contains its
segment) get their thresholds as the suite sets them, from the shop's normal first day; then their
CUSUMs run over the same shop's traffic with every incident switched off, for the hours after that
day (--hours in all). Alarms are counted at three thresholds: the model's alone, held to the
normal day's peak, and the suite's (held to the tail of that day's excursions as well), against
the budget (one alarm per shop-day over all series). Progress on stderr, the table on stdout;
docs/detectors.md has the figures.
"""

from __future__ import annotations

import argparse
import sys
import time

from blipwatch.tools.shopsuite.suite import countable, oracle_budget, shop_spec

KINDS = ("event_volume", "mean", "funnel", "rate", "count")
THRESHOLDS = (("model", "the model's alone"), ("peak", "at least the normal day's peak"),
              ("held", "and the tail of its excursions (the suite's)"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shops", type=int, default=20)
    parser.add_argument("--hours", type=float, default=78.0,
                        help="hours of each shop's traffic without incidents (default 78: ~2.2 fresh days)")
    parser.add_argument("--only", nargs="+", type=shop_spec, metavar="SEED/INDEX", help="only these shops")
    args = parser.parse_args()
    if args.hours <= 31:
        parser.error(f"--hours must be over 31 (the suite's first day and more), not {args.hours:g}")
    plan = list(args.only) if args.only else [(s, i) for s in args.seeds for i in range(args.shops)]
    catalogue = countable(log=None)
    rows, started = [], time.perf_counter()
    for number, (seed, index) in enumerate(plan, 1):
        mine = oracle_budget(seed, index, args.hours, catalogue)
        rows += mine
        print(f"[{number}/{len(plan)}] shop {seed}/{index}: {len(mine)} tests, budget "
              f"{sum(r['budget'] for r in mine):.2f}, alarms " +
              ", ".join(f"{name} {sum(r[f'alarms_{name}'] for r in mine)}" for name, _ in THRESHOLDS) +
              f" ({time.perf_counter() - started:.0f}s in all)", file=sys.stderr, flush=True)
    kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)]
    budget = {k: sum(r["budget"] for r in rows if r["kind"] == k) for k in kinds}
    days = sum(r["days"] for r in rows) / max(1, len(rows))
    print(f"{len(plan)} shops, {len(rows)} oracle tests over {days:.2f} fresh days of each shop without incidents, "
          f"a budget of {sum(budget.values()):.1f} alarms in all\n")
    print("| oracle threshold | alarms | " + " | ".join(f"{k} (budget {budget[k]:.2g})" for k in kinds) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in kinds) + " |")
    for name, title in THRESHOLDS:
        print(f"| {title} | {sum(r[f'alarms_{name}'] for r in rows)} | " +
              " | ".join(str(sum(r[f"alarms_{name}"] for r in rows if r["kind"] == k)) for k in kinds) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

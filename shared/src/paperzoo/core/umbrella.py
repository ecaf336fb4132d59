"""The umbrella command ``paperzoo``: list the installed methods and run their demos.

Methods are found through the entry-point group ``paperzoo.methods`` (name = slug, value = the
method CLI's ``main``). Listing reads only distribution metadata, so it imports no method and no
Lightning.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

GROUP = "paperzoo.methods"
SHOWN_METRICS = 3


@dataclass(frozen=True)
class InstalledMethod:
    slug: str
    distribution: str
    version: str
    summary: str
    entry_point: EntryPoint


def installed_methods() -> list[InstalledMethod]:
    """Every installed method package, sorted by slug."""
    found = []
    for ep in entry_points(group=GROUP):
        dist = ep.dist
        name = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        summary = (dist.metadata.get("Summary") or "") if dist is not None else ""
        found.append(InstalledMethod(ep.name, name, version, summary, ep))
    return sorted(found, key=lambda m: m.slug)


def _list(_: argparse.Namespace) -> int:
    methods = installed_methods()
    if not methods:
        print("no paperzoo method is installed; install one with: pip install paperzoo-<slug>")
        return 0
    width = max(len(m.slug) for m in methods)
    for m in methods:
        print(f"{m.slug:<{width}}  {m.version:<8}  {m.summary}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from paperzoo.core.results import METRICS_FILE, markdown_table, read_metrics

    methods = installed_methods()
    if not methods:
        print("no paperzoo method is installed, so there is no demo to run; "
              "install one with: pip install paperzoo-<slug>")
        return 0
    by_slug = {m.slug: m for m in methods}
    unknown = [s for s in args.slugs if s not in by_slug]
    if unknown:
        print(f"paperzoo demo: error: not installed: {', '.join(unknown)} "
              f"(installed: {', '.join(by_slug)})", file=sys.stderr)
        return 2
    chosen = [by_slug[s] for s in args.slugs] if args.slugs else methods
    root = Path(args.out or f"runs/paperzoo-demo-{datetime.now():%Y%m%d-%H%M%S}")
    rows, failures = [], 0
    for method in chosen:
        out = root / method.slug
        print(f"== {method.slug} {method.version}: demo -> {out}", flush=True)
        started, started_wall = time.perf_counter(), time.time()
        try:
            status = method.entry_point.load()(["demo", "--out", str(out), "--device", args.device])
        except SystemExit as exit_:  # a CLI may exit instead of returning
            status = exit_.code if isinstance(exit_.code, int) else 1
        except Exception as error:  # one broken method must not hide the others' results
            print(f"{method.slug}: demo raised {type(error).__name__}: {error}", file=sys.stderr)
            status = 1
        seconds = time.perf_counter() - started
        row = {"method": method.slug, "version": method.version,
               "status": "ok" if status == 0 else f"failed ({status})", "seconds": round(seconds, 1)}
        try:
            # only this run's metrics: a demo refused for an --out that holds older results
            # must not show them beside its failure
            if (out / METRICS_FILE).stat().st_mtime < started_wall - 1:
                raise FileNotFoundError(out / METRICS_FILE)
            metrics = read_metrics(out)
            row["metrics"] = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in list(metrics.items())[:SHOWN_METRICS])
        except (FileNotFoundError, ValueError):
            row["metrics"] = ""
        failures += status != 0
        rows.append(row)
    print()
    print(markdown_table(rows), end="")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paperzoo", description="Research methods as installable packages.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="installed methods, versions and summaries").set_defaults(run=_list)
    demo = sub.add_parser("demo", help="run each installed method's demo and print one table")
    demo.add_argument("slugs", nargs="*", help="methods to run (default: all installed)")
    demo.add_argument("--out", default=None, help="folder for the demos' outputs (default: a new runs/ folder)")
    demo.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

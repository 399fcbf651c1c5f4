"""`make bench`: every benchmark in order, then the report.

    python -m bench.run --data-dir DIR [--quick] [--only serving,batches] [--results-dir DIR] [--soak-s S]

Each part runs as its own process (`python -m bench.<part>`, also runnable alone) so one part's
memory or failure does not skew the next; a failed part is reported and the others still run.
Ctrl-C or SIGTERM stops the running part, which stops every server it started.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from bench.common import PROJECT_ROOT, BenchError, parser, progress, results_dir
from bench.loadgen import require_wrk

PARTS = ("pyfunc_latency", "serving", "throughput", "prediction_store", "cache", "replicas", "proxy_floor",
         "soak", "faults",
         "profile_serving", "batches", "training", "scoring", "quality", "drift_demo")


def part_command(part: str, args) -> list[str]:
    command = [sys.executable, "-m", f"bench.{part}", "--data-dir", str(args.data_dir)]
    if part == "quality":  # bench/quality.py has its own flags: it writes one markdown table
        return [*command, "--out", str(results_dir(args) / "quality.md")]
    command += ["--results-dir", str(results_dir(args))]
    if args.quick:
        command.append("--quick")
    if args.synthetic:
        command += ["--synthetic", str(args.synthetic)]
    if part == "soak" and args.soak_s:
        command += ["--soak-s", str(args.soak_s)]
    return command


def run_part(command: list[str]) -> int:
    """Run one part in the foreground (it gets Ctrl-C with us); SIGTERM is passed on to it."""
    proc = subprocess.Popen(command, cwd=PROJECT_ROOT)

    def forward(signum: int, frame: FrameType | None) -> None:
        proc.send_signal(signal.SIGTERM)
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        try:
            proc.wait(timeout=60)  # the part stops its servers on the same signal
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(PARTS)}")
    cli.add_argument("--soak-s", type=float, default=None,
                     help="seconds of the soak part's measured load (default 300; --quick 30)")
    args = cli.parse_args()
    chosen = [p.strip() for p in args.only.split(",") if p.strip()] or list(PARTS)
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        cli.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    wrk_parts = {"serving", "throughput", "prediction_store", "cache", "replicas", "soak",
                 "profile_serving", "batches"}
    if wrk_parts & set(chosen):
        try:
            require_wrk()
        except BenchError as error:
            sys.exit(f"bench: {error}")
    if "quality" in chosen and (args.quick or args.synthetic):
        progress("skipping quality (it trains every model on the real data; not part of a smoke run)")
        chosen.remove("quality")

    failed: list[str] = []
    started = time.monotonic()
    try:
        for index, part in enumerate(chosen, 1):
            progress(f"part {index}/{len(chosen)}: {part}")
            part_started = time.monotonic()
            code = run_part(part_command(part, args))
            took = time.monotonic() - part_started
            if code != 0:
                failed.append(part)
                progress(f"part {part} FAILED (exit code {code}) after {took:.0f} s; going on")
            else:
                progress(f"part {part} done in {took:.0f} s")
    except KeyboardInterrupt:
        progress("interrupted: every server the running part started has been stopped")
        sys.exit(130)

    from bench.report import build_report

    report = build_report(Path(results_dir(args)))
    progress(f"report: {report} ({time.monotonic() - started:.0f} s in all)")
    if failed:
        sys.exit(f"bench: failed part(s): {', '.join(failed)}")


if __name__ == "__main__":
    main()

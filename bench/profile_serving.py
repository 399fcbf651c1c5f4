"""Where serving time goes: py-spy profiles of the proxy and of the model server under wrk load.

Starts the champion's stack like bench.serving (no anchor), then for each process loads it with one
row per request at concurrency 8 while `py-spy record --nonblocking` samples it. The collapsed stacks
are reduced to shares of samples: by package of the innermost frame ("self": where CPU burns) and
by function including callees ("total"). Written to bench/results/serving_profile.json and .md.

    python -m bench.profile_serving [--data-dir DIR] [--quick] [--duration S]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import PROJECT_ROOT, BenchError, parser, progress, results_dir, start_stamp, write_result
from bench.loadgen import require_wrk, run_wrk
from bench.processes import run_part
from bench.serving import serving_setup

RESULT_NAME = "serving_profile"
CONCURRENCY = 8
SAMPLE_RATE_HZ = 200
TOP = 80  # functions kept per profile
_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")
_STDLIB = sysconfig.get_paths()["stdlib"]
# Frames every sample passes through (thread bootstrap, event-loop runner, CLI entry): no information.
_PLUMBING_FILES = ("threading.py", "concurrent/futures/thread.py", "asyncio/runners.py",
                   "asyncio/base_events.py", "click/core.py", "uvicorn/main.py", "uvicorn/server.py",
                   "uvicorn/_compat.py", "runpy.py")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise BenchError("py-spy is not installed: pip install py-spy (it is in the project's test extra)")
    return found


def record(pid: int, seconds: float, output: Path, subprocesses: bool) -> subprocess.Popen[bytes]:
    """py-spy on `pid` (and its children when `subprocesses`: a model server's uvicorn runs in a
    child of `mlflow models serve`; the proxy's children are model servers, profiled on their own)."""
    command = [py_spy(), "record", "--pid", str(pid), "--nonblocking", "--full-filenames",
               "--duration", str(max(1, round(seconds))), "--rate", str(SAMPLE_RATE_HZ),
               "--format", "raw", "-o", str(output)]
    if subprocesses:
        command.append("--subprocesses")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def frame_package(path: str) -> str:
    """What a frame belongs to: a site-packages distribution, a stdlib module, or a project module."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.startswith(_STDLIB):
        return "stdlib:" + path[len(_STDLIB):].lstrip("/").split("/", 1)[0].removesuffix(".py")
    for marker in ("/serving/", "/valuation/", "/steps/"):
        if marker in path and "site-packages/" not in path:
            module = marker.strip("/") + "." + path.split(marker, 1)[1].removesuffix(".py").replace("/", ".")
            return module
    return path.rsplit("/", 1)[-1] or "?"


def summarize_collapsed(text: str, top: int = TOP) -> dict[str, Any]:
    """Shares of samples by package of the innermost frame and by function including callees."""
    self_by_package: Counter[str] = Counter()
    total_by_function: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        parsed = [_FRAME.match(f) for f in frames]
        names = [f"{m['func']} ({_short(m['path'])})" if m else f
                 for m, f in zip(parsed, frames, strict=True)]
        seen: set[str] = set()
        leaf = parsed[-1]
        package = frame_package(leaf["path"]) if leaf else "?"
        self_by_package[package] += count
        for match, name in zip(parsed, names, strict=True):
            if match and (match["func"] == "<module>" or match["path"].endswith(_PLUMBING_FILES)):
                continue
            seen.add(name)
        for name in seen:
            total_by_function[name] += count
    if not samples:
        return {"samples": 0}
    return {
        "samples": samples,
        "self_by_package": [(k, v / samples) for k, v in self_by_package.most_common(top)],
        "total_by_function": [(k, v / samples) for k, v in total_by_function.most_common(top)],
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "/artifacts/code/", f"{PROJECT_ROOT}/", _STDLIB + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def profile_target(target: Any, name: str, pid: int, seconds: float, out_dir: Path,
                   connections: int = CONCURRENCY) -> dict[str, Any]:
    """py-spy on `pid` while wrk loads `target` (a bench.serving.Target) at `connections`."""
    raw = out_dir / f"{RESULT_NAME}_{name}.collapsed"
    spy = record(pid, seconds + 1, raw, subprocesses=name == "model_server")
    load = run_wrk(target.url, target.bodies, connections, seconds, api_key=target.api_key)
    spy_output, _ = spy.communicate(timeout=seconds + 60)
    if not raw.is_file():
        said = spy_output.decode(errors="replace")[-500:]
        raise BenchError(f"py-spy wrote no profile for the {name}: {said}")
    summary = summarize_collapsed(raw.read_text())
    raw.unlink()  # the summary is what the report uses; raw stacks are large
    progress(f"profiled the {name} (pid {pid}) under {load.requests_per_s:.0f} req/s: "
             f"{summary['samples']} samples")
    return {"requests_per_s": load.requests_per_s, "p50_ms": load.p50_ms, "errors": load.errors, **summary}


def run(args: Any) -> dict[str, Any]:
    require_wrk()
    py_spy()
    stamp = start_stamp()
    seconds = args.duration or (3 if args.quick else 20)
    out_dir = results_dir(args)
    with serving_setup(args, with_anchor=False) as setup:
        profiles = {
            "proxy": profile_target(setup.targets["proxy"], "proxy", setup.stack.proxy_pid, seconds,
                                    out_dir),
            "model_server": profile_target(setup.targets["direct"], "model_server",
                                           setup.stack.model_server_pid, seconds, out_dir),
        }
    data = {**stamp, "data": setup.data, "concurrency": CONCURRENCY, "duration_s": seconds,
            "rate_hz": SAMPLE_RATE_HZ, "profiles": profiles}
    path = write_result(out_dir, RESULT_NAME, data, args.quick)
    (out_dir / f"{RESULT_NAME}.md").write_text(markdown(data))
    progress(f"wrote {path}")
    return data


def markdown(data: dict[str, Any]) -> str:
    """`data`: concurrency, duration_s, rate_hz and {name: profile_target(...)} as profiles."""
    lines = [f"Profiles at concurrency {data['concurrency']}, {data['duration_s']:g} s each, py-spy at "
             f"{data['rate_hz']} Hz (non-blocking). Shares are of the samples of threads that were "
             "running (py-spy leaves idle threads out); plumbing frames (threads, event loop runner, "
             "CLI) are left out of the second table.", ""]
    for name, profile in data["profiles"].items():
        if not profile.get("samples"):
            continue
        lines += [f"#### {name.replace('_', ' ')}: {profile['requests_per_s']:.0f} req/s, "
                  f"{profile['samples']} samples", "",
                  "| innermost frame's package | share |", "|---|---|"]
        lines += [f"| {k} | {v:.1%} |" for k, v in profile["self_by_package"][:12]]
        project = [(k, v) for k, v in profile["total_by_function"] if _is_project_frame(k)]
        lines += ["", "| project function (with callees) | share |", "|---|---|"]
        lines += [f"| `{k}` | {v:.1%} |" for k, v in project[:15]]
        lines += ["", "| any function (with callees) | share |", "|---|---|"]
        lines += [f"| `{k}` | {v:.1%} |" for k, v in profile["total_by_function"][:40]]
        lines.append("")
    return "\n".join(lines)


def _is_project_frame(name: str) -> bool:
    return any(marker in name for marker in ("serving/", "valuation/", "steps/"))


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--duration", type=float, default=None, help="seconds of load per profile (default 20)")
    run_part(run, cli)


if __name__ == "__main__":
    main()

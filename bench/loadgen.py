"""Load generation with wrk: request bodies made from distinct test rows, replayed by bench/replay.lua.

wrk is a C load generator (`apt-get install wrk`); one wrk thread drives all connections so it takes
as little of the machine's CPU as possible, and its own CPU time is measured and reported so the
report shows it was not the bottleneck.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    DataPaths,
    data_paths,
    distinct_rows,
    feature_records,
    load_tables,
)
from valuation.model_runtime.schema import FEATURES

LUA_SCRIPT = Path(__file__).resolve().parent / "replay.lua"
CYCLE_MARKER = "@C@"  # replay.lua appends digits here on the 2nd and later passes over the bodies
RESULT_PREFIX = "BENCH_JSON "
PROXY_FORMAT = "proxy"  # {"model_name": ..., "features": [row, ...]}
SPLIT_FORMAT = "dataframe_split"  # a DataFrame for `mlflow models serve` (the anchor's sklearn model)
INPUTS_FORMAT = "inputs"  # {"inputs": [row, ...]}: the project's type-hinted pyfunc (its model server)


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed; install it with `apt-get install wrk` "
                         "(or `brew install wrk`) and run the benchmark again")
    return path


def request_body(rows: Sequence[Mapping[str, Any]], body_format: str, model_name: str | None = None) -> dict:
    """The JSON document one request carries for these rows."""
    if body_format == PROXY_FORMAT:
        return {"model_name": model_name, "features": [dict(row) for row in rows]}
    if body_format == SPLIT_FORMAT:
        return {"dataframe_split": {"columns": list(FEATURES),
                                    "data": [[row[f] for f in FEATURES] for row in rows]}}
    if body_format == INPUTS_FORMAT:
        return {"inputs": [{f: row[f] for f in FEATURES} for row in rows]}
    raise ValueError(f"unknown body format {body_format!r}; expected "
                     f"{PROXY_FORMAT}, {SPLIT_FORMAT} or {INPUTS_FORMAT}")


def marked_bodies(records: Sequence[Mapping[str, Any]], body_format: str,
                  model_name: str | None = None) -> list[str]:
    """One single-line JSON body per row, each with the cycle marker right after its longitude.

    Rows must be distinct: a repeated body would let a cache answer, so duplicates are an error.
    """
    placeholder = "__BENCH_LONGITUDE__"
    bodies: list[str] = []
    for record in records:
        longitude = repr(float(record["longitude"]))
        if "e" in longitude or "inf" in longitude or "nan" in longitude:
            raise ValueError(f"longitude {longitude} cannot carry the cycle marker")
        row = {**record, "longitude": placeholder}
        text = json.dumps(request_body([row], body_format, model_name), separators=(",", ":"))
        bodies.append(text.replace(f'"{placeholder}"', longitude + CYCLE_MARKER))
    if len(set(bodies)) != len(bodies):
        raise ValueError(f"{len(bodies) - len(set(bodies))} repeated bodies: deduplicate the rows first")
    return bodies


def proxy_bodies(args: Any, workdir: Path) -> tuple[list[str], DataPaths]:
    """One single-row proxy body per distinct test row of the part's data (--data-dir or
    --synthetic, written under `workdir`), and where that data is."""
    from valuation.config import load_config

    paths = data_paths(args, workdir)
    _, test = load_tables(paths)
    records = feature_records(distinct_rows(test))
    return marked_bodies(records, PROXY_FORMAT, load_config([]).registry.model_name), paths


def unmark(body: str, cycle: int = 0) -> str:
    """The body replay.lua sends on pass `cycle` (0 = the first pass)."""
    return body.replace(CYCLE_MARKER, f"000000{cycle}" if cycle else "")


def write_bodies(bodies: Sequence[str], path: Path) -> Path:
    path.write_text("\n".join(bodies) + "\n")
    return path


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors_status: int  # responses >= 400
    errors_socket: int  # connect + read + write + timeout
    bodies: int
    max_cycle: int  # how many times a thread started over its share of the bodies
    wrk_cpu_s: float  # the load generator's own CPU time

    @property
    def errors(self) -> int:
        return self.errors_status + self.errors_socket

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "errors": self.errors}


def run_wrk(url: str, bodies_path: Path, connections: int, duration_s: float, *, threads: int = 1,
            api_key: str | None = None, timeout_s: float = 30.0) -> WrkResult:
    """Drive `url` with `connections` keep-alive connections for `duration_s` seconds."""
    wrk = require_wrk()
    threads = max(1, min(threads, connections))
    env = {**os.environ, "BENCH_BODIES": str(bodies_path), "BENCH_THREADS": str(threads),
           "BENCH_API_KEY": api_key or ""}
    command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration_s))}s",
               "--timeout", f"{round(timeout_s)}s", "-s", str(LUA_SCRIPT), url]
    before = _children_cpu_s()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=duration_s + timeout_s + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration_s + timeout_s + 30:.0f} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise BenchError(f"wrk failed with code {proc.returncode}: {stderr.decode(errors='replace')[-2000:]}")
    # Only wrk is reaped while it runs, so the change in the children's CPU time is wrk's own.
    cpu = _children_cpu_s() - before
    return parse_wrk_output(stdout.decode(errors="replace"), stderr.decode(errors="replace"), cpu)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_wrk_output(stdout: str, stderr: str, wrk_cpu_s: float = 0.0) -> WrkResult:
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise BenchError(f"wrk printed no result line; stdout:\n{stdout[-2000:]}\nstderr:\n{stderr[-2000:]}")
    data = json.loads(lines[-1][len(RESULT_PREFIX):])
    latency, errors = data["latency_us"], data["errors"]
    duration_s = data["duration_us"] / 1e6
    return WrkResult(
        requests=data["requests"],
        duration_s=duration_s,
        requests_per_s=data["requests"] / duration_s if duration_s else 0.0,
        p50_ms=latency["p50"] / 1000, p90_ms=latency["p90"] / 1000, p95_ms=latency["p95"] / 1000,
        p99_ms=latency["p99"] / 1000, max_ms=latency["max"] / 1000, mean_ms=latency["mean"] / 1000,
        errors_status=errors["status"],
        errors_socket=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        bodies=data["bodies"], max_cycle=data["max_cycle"], wrk_cpu_s=wrk_cpu_s,
    )

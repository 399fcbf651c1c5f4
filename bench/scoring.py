"""Batch scoring: `valuation score` on synthetic portfolios, local engine at two sizes (its memory
must stay flat), the Spark engine on `local[2]`, against the upper bound of in-process
`pyfunc.predict` over the whole frame held in memory; and the client's test.csv as a portfolio.

Every run is its own process, measured from outside (wall time, peak RSS of the process tree,
Spark's JVM included). The model is the project's default, trained by the real pipeline into a
throwaway store. Training and writing the portfolios run in child processes too: Linux hands a
process's peak RSS on to the children it starts, so a large parent would be every run's floor.

    python -m bench.scoring [--data-dir DIR] [--quick] [--synthetic ROWS]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import data_paths, parser, progress, results_dir, start_stamp, write_result
from bench.processes import sigterm_as_interrupt
from bench.project_model import tracking_store, train_project_model
from bench.resources import measure_command

RESULT_NAME = "scoring"
RESULT_PREFIX = "BENCH_JSON "
MODEL_URI = "models:/property_friends_best_model@champion"
CHUNK_ROWS = 1_000_000  # synthetic rows generated and written at a time
FULL_SIZES = {"local": (1_000_000, 10_000_000), "spark": (1_000_000,), "pyfunc": (1_000_000,)}
QUICK_SIZES = {"local": (100_000, 1_000_000), "spark": (100_000,), "pyfunc": (100_000,)}
RUN_TIMEOUT_S = 3 * 3600


def write_portfolio(path: Path, rows: int) -> None:
    """`rows` synthetic listings with an id column, as parquet, written a chunk at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from valuation.synthetic import generate_frame

    writer = None
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        frame = generate_frame(min(CHUNK_ROWS, rows - start), seed=100 + index)
        frame.insert(0, "listing_id", range(start, start + len(frame)))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def score_command(input: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "serving.cli", "score", str(input), str(output), "--no-progress",
            *extra]


def measure(command: list[str], logs: Path, label: str, env: dict[str, str]) -> dict[str, Any]:
    log = logs / f"{label}.log"
    usage = measure_command(command, env=env, log_path=log, timeout_s=RUN_TIMEOUT_S)
    text = log.read_text(errors="replace")
    if usage.returncode != 0:
        return {"ok": False, "error": text.strip().splitlines()[-1] if text.strip() else "?"}
    return {"ok": True, "wall_s": usage.wall_s, "peak_tree_rss_mb": usage.peak_tree_rss_mb,
            "max_rss_mb": usage.max_rss_mb, "summary": _summary_line(text), **_inner(text)}


def _summary_line(text: str) -> str | None:
    lines = [line for line in text.splitlines() if " rows: " in line and " scored, " in line]
    return lines[-1] if lines else None


def _inner(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith(RESULT_PREFIX)]
    return json.loads(lines[-1][len(RESULT_PREFIX):]) if lines else {}


def pyfunc_baseline(input: Path) -> None:
    """In this process: the whole frame in memory, then the pyfunc's own predict over it in the
    largest slices its rules take (the upper bound: no reading, checking or writing per batch)."""
    import mlflow
    import pandas as pd

    from valuation.model_runtime.schema import FEATURES

    model = mlflow.pyfunc.load_model(MODEL_URI)
    frame = pd.read_parquet(input, columns=list(FEATURES))
    max_rows = int(model.metadata.metadata["validation_rules"]["max_rows"])
    started = time.perf_counter()
    for start in range(0, len(frame), max_rows):
        model.predict(frame.iloc[start:start + max_rows])
    seconds = time.perf_counter() - started
    print(RESULT_PREFIX + json.dumps({"predict_s": seconds, "rows": len(frame)}), flush=True)


def rows_per_s(rows: int, result: dict[str, Any], seconds_key: str = "wall_s") -> float | None:
    seconds = result.get(seconds_key)
    return rows / seconds if result.get("ok") and seconds else None


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--pyfunc-baseline", type=Path, default=None, help=argparse_hidden())
    cli.add_argument("--write-portfolio", type=Path, default=None, help=argparse_hidden())
    cli.add_argument("--rows", type=int, default=0, help=argparse_hidden())
    cli.add_argument("--train", nargs=2, type=Path, default=None, help=argparse_hidden())
    args = cli.parse_args()
    if args.pyfunc_baseline:
        pyfunc_baseline(args.pyfunc_baseline)
        return
    if args.write_portfolio:
        write_portfolio(args.write_portfolio, args.rows)
        return
    if args.train:
        from bench.common import DataPaths

        train_project_model(DataPaths(args.train[0], args.train[1], synthetic=args.quick),
                            extra=("model.params.n_estimators=100",) if args.quick else ())
        return
    with sigterm_as_interrupt():
        run(args)


def run(args: Any) -> None:
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    stamp = start_stamp()
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as work:
        workdir = Path(work)
        logs = workdir / "logs"
        logs.mkdir()
        paths = data_paths(args, workdir)
        with tracking_store(workdir) as uri:
            env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
            child([sys.executable, "-m", "bench.scoring", "--train", str(paths.train), str(paths.test),
                   *(["--quick"] if args.quick else [])], env)
            portfolios = {}
            for rows in sorted({n for ns in sizes.values() for n in ns}):
                progress(f"writing a synthetic portfolio of {rows:,} rows")
                portfolios[rows] = workdir / f"portfolio-{rows}.parquet"
                child([sys.executable, "-m", "bench.scoring", "--write-portfolio",
                       str(portfolios[rows]), "--rows", str(rows)], env)
            runs = []
            for engine, extra in (("local", ()), ("spark", ("--engine", "spark", "--master", "local[2]"))):
                for rows in sizes[engine]:
                    progress(f"valuation score, {engine} engine, {rows:,} rows")
                    result = measure(score_command(portfolios[rows], workdir / f"{engine}-{rows}.parquet",
                                                   *extra), logs, f"{engine}-{rows}", env)
                    runs.append({"engine": engine, "rows": rows, **result,
                                 "rows_per_s": rows_per_s(rows, result)})
                    for scored in workdir.glob(f"{engine}-{rows}*"):
                        scored.unlink()
            for rows in sizes["pyfunc"]:
                progress(f"in-process pyfunc.predict over {rows:,} rows")
                result = measure([sys.executable, "-m", "bench.scoring", "--pyfunc-baseline",
                                  str(portfolios[rows])], logs, f"pyfunc-{rows}", env)
                runs.append({"engine": "pyfunc.predict (in memory)", "rows": rows, **result,
                             "rows_per_s": rows_per_s(rows, result, "predict_s")})
            portfolio = None
            if not paths.synthetic:
                progress("valuation score on the client's test.csv as a portfolio")
                result = measure(score_command(paths.test, workdir / "test-scored.parquet"), logs,
                                 "test-csv", env)
                portfolio = {"input": "test.csv (client data)", **result}
    write_result(results_dir(args), RESULT_NAME, {**stamp, "data": paths.describe(), "runs": runs,
                                                  "portfolio": portfolio}, args.quick)


def child(command: list[str], env: dict[str, str]) -> None:
    subprocess.run(command, env=env, check=True, timeout=RUN_TIMEOUT_S)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()

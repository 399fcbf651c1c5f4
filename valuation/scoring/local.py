"""The local engine: the input streamed batch by batch through the model's rules and its pyfunc,
each batch written before the next is read, so memory stays flat whatever the input's size."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from valuation.model_runtime.schema import FEATURES
from valuation.scoring.inputs import BatchReader
from valuation.scoring.model import ScoringModel
from valuation.scoring.output import ScoredOutput, output_schema
from valuation.scoring.rows import check_rows
from valuation.scoring.summary import ScoringSummary


def score_local(reader: BatchReader, model: ScoringModel, output: Path, rejected: Path,
                progress: bool = True, interval: float | None = None) -> ScoringSummary:
    """Score every row of `reader` into `output` (parquet) and `rejected` (CSV side file); with
    `interval` (a level checked by the job), each price's interval at that level too."""
    try:
        return _score(reader, model, output, rejected, progress, interval)
    finally:
        reader.close()


def _score(reader: BatchReader, model: ScoringModel, output: Path, rejected: Path,
           progress: bool, interval: float | None) -> ScoringSummary:
    started = time.perf_counter()
    rows = scored = 0
    bar = tqdm(total=reader.total_rows, unit="rows", unit_scale=True, disable=not progress,
               desc=f"scoring {reader.source.name}", dynamic_ncols=True)
    schema = output_schema(reader.schema, interval)
    with bar, ScoredOutput(output, rejected, schema, model.uri, model.name, model.version,
                           interval) as out:
        for batch in reader:
            frame = batch.select(list(FEATURES)).to_pandas()
            checked = check_rows(frame, model.rules, first_row=rows + 1)
            prices, lower, upper = (np.full(len(frame), np.nan) for _ in range(3))
            accepted_rows = np.flatnonzero(checked.accepted)
            # The pyfunc takes at most the rules' max_rows at a time, as /predict does.
            for start in range(0, len(accepted_rows), model.rules.max_rows):
                part = accepted_rows[start:start + model.rules.max_rows]
                if interval is None:
                    prices[part] = model.predict(frame.iloc[part])
                else:
                    priced = model.predict_interval(frame.iloc[part], interval)
                    prices[part], lower[part], upper[part] = priced.price, priced.lower, priced.upper
            out.write(batch, prices, checked.accepted, checked.rejections,
                      None if interval is None else (lower, upper))
            rows += len(frame)
            scored += len(accepted_rows)
            bar.update(len(frame))
        out.commit()
    return ScoringSummary(rows, scored, rows - scored, time.perf_counter() - started, output,
                          rejected, model.name, model.version, "local")

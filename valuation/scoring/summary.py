"""What a scoring job reports when it is done."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ScoringSummary:
    rows: int
    scored: int
    rejected: int  # rows; the side file has one line per problem, so possibly more lines
    seconds: float
    output: Path
    rejected_file: Path
    model_name: str
    model_version: str
    engine: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def __str__(self) -> str:
        return (f"{self.rows} rows: {self.scored} scored, {self.rejected} rejected "
                f"({self.rejected_file}) in {self.seconds:.1f}s ({self.rows_per_second:,.0f} rows/s, "
                f"{self.engine} engine) with {self.model_name} version {self.model_version} "
                f"-> {self.output}")

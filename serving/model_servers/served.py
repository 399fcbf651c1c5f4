"""What the proxy gets from the supervisor: a version that answers predictions, or why not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from valuation.model_runtime.validation import ValidationRules


@dataclass(frozen=True)
class ServedModel:
    """A model version that answers predictions at `base_url` (`POST {base_url}/invocations`)."""

    name: str
    version: str
    base_url: str
    rules: ValidationRules
    metadata: dict[str, Any]


class ModelLoadError(RuntimeError):
    """A model version cannot be served (metadata, startup or smoke prediction failed)."""

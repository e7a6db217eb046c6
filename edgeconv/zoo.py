"""Library side of ``edgeconv zoo``: the zoo as rows (no model is built; counts are the registry's verified ones)."""
from __future__ import annotations

from edgeconv.errors import UsageError


def zoo_rows(pattern: str | None = None) -> list[dict]:
    """One dict per zoo model (``name``, ``family``, ``params``, ``input_shape``, ...), sorted by name."""
    from edgeconv import models

    names = models.list_models(pattern)
    if pattern and not names:
        raise UsageError(f"no zoo model matches '{pattern}'")
    return [models.model_info(n).to_dict() for n in names]

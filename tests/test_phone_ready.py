"""edgeconv.pipeline.phone_ready: --target defaults per device class."""
from __future__ import annotations

import pytest

from edgeconv.errors import UsageError
from edgeconv.pipeline.phone_ready import TARGETS, apply_target


def test_targets():
    assert apply_target(None, ["fp16"], "float", True) == (["fp16"], "float", True)
    assert apply_target("cpu", [], "int", True) == (["int8"], "int", True)
    assert apply_target("cpu", ["int8"], "float", True) == (["int8"], "float", True)
    assert apply_target("gpu", ["onnx"], "int", True) == (["onnx", "fp16"], "int", False)
    assert apply_target("npu", [], "int", True) == (["int8"], "int", False)
    assert apply_target("cpu", [], "int", False)[2] is False  # --no-rewrite wins
    with pytest.raises(UsageError, match="needs int I/O"):
        apply_target("npu", [], "float", True)
    with pytest.raises(UsageError, match="unknown target"):
        apply_target("tpu", [], "int", True)
    assert set(TARGETS) == {"cpu", "gpu", "npu"}

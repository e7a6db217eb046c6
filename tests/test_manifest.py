"""manifest.json: typed records, a schema version, old manifests still read, newer ones refused clearly."""
from __future__ import annotations

import json

import pytest

from edgeconv.errors import EdgeconvError
from edgeconv.pipeline.manifest import SCHEMA, ArtifactRecord, Manifest, WeightsRecord

SCHEMA1 = {
    "edgeconv_version": "0.1.0",
    "model": {"name": "m", "input_shape": [32, 32, 3], "weights": "random (seeded), BatchNorm statistics estimated"},
    "reference": {"file": "m.keras"}, "preprocessing": {"name": "unit"}, "calibration": None, "options": {},
    "artifacts": [{"file": "m_int8.tflite", "format": "tflite", "precision": "int8", "key": "int8", "sha256": "0" * 64,
                   "bytes": 10, "inputs": [], "outputs": [], "layout": "nhwc",
                   "extra": {"io_type": "int", "ops": {"CONV_2D": 3}, "tensor_types": {"int8": 5},
                             "fallback": {"kept_float": ["b2_expand_bn"], "passed": True}}}],
    "tools": {}, "command": "edgeconv export m --int8",
}


def test_schema_1_manifest_reads_into_typed_fields():
    m = Manifest.from_dict(SCHEMA1)
    a = m.artifacts[0]
    assert a.io_type == "int" and a.ops == {"CONV_2D": 3} and a.tensor_types == {"int8": 5}
    assert a.kept_float == ["b2_expand_bn"] and a.fallback["passed"] is True
    assert m.weights == WeightsRecord("random", batchnorm_estimated=True) and m.weights.is_random
    assert m.input_shape == (32, 32, 3)
    d = m.to_dict()
    assert d["schema"] == SCHEMA and "extra" not in d["artifacts"][0]  # rewritten as schema 2
    assert Manifest.from_dict(json.loads(json.dumps(d))).to_dict() == d


@pytest.mark.parametrize("weights,kind", [("from the model file", "model_file"), ("w.weights.h5", "file"),
                                          ({"kind": "imagenet", "path": "x.h5"}, "imagenet")])
def test_weights_kinds(weights, kind):
    w = WeightsRecord.from_value(weights)
    assert w.kind == kind and not w.is_random


def test_newer_schema_and_garbage_are_one_line_errors(tmp_path):
    with pytest.raises(EdgeconvError, match="newer than this edgeconv"):
        Manifest.from_dict({**SCHEMA1, "schema": "edgeconv.manifest/99"})
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(EdgeconvError, match="not a valid edgeconv manifest"):
        Manifest.load(tmp_path)
    with pytest.raises(EdgeconvError, match="no manifest.json"):
        Manifest.load(tmp_path / "nowhere")


def test_optional_fields_are_left_out_not_null():
    a = ArtifactRecord("f.onnx", "onnx", "fp32", "onnx", "0" * 64, 1, [], [], opset=17)
    d = a.to_dict()
    assert d["opset"] == 17 and "fallback" not in d and "io_type" not in d and d["kept_float"] == []

"""The Keras reference of an export is computed once (edgeconv.verify.validate.KerasReference): validation, the
``--fallback auto`` rounds and the re-validation after them share its inputs and outputs; the compiled reference
and the reference-noise check give what Keras' eager one-image-at-a-time calls give."""
import numpy as np
import pytest

from edgeconv.options import ValidationOptions
from edgeconv.runtime.runners import KerasRunner


def test_compiled_reference_and_noise_match_eager_calls(trained_tiny, digits):
    import keras

    import edgeconv.verify.validate as v

    model = keras.saving.load_model(trained_tiny[0], compile=False)
    (_, _), (xte, _) = digits
    x = xte[:24].astype(np.float32)
    eager = KerasRunner(model).run(x)[0]
    compiled = KerasRunner(model, compiled=True).run(x)[0]
    np.testing.assert_allclose(compiled, eager, rtol=0, atol=1e-6)
    one_by_one = KerasRunner(model, batch_size=1, compiled=True).run(x[:5])[0]
    np.testing.assert_allclose(one_by_one, eager[:5], rtol=0, atol=1e-6)
    fast = v.reference_noise(model, x, [compiled])
    slow = v.reference_noise(model, x, [eager], compiled=False)  # the eager, one image at a time path
    assert 0 <= fast < 1e-5 and 0 <= slow < 1e-5  # float32 rounding of a trained shallow net: ~1e-7
    assert fast == pytest.approx(slow, abs=1e-6)


def test_one_keras_reference_for_validation_fallback_and_revalidation(trained_tiny, digits_calibration_npy, tmp_path,
                                                                      monkeypatch):
    """An int8 that misses a (deliberately unreachable) SQNR target goes through --fallback auto; the held-out
    inputs go through Keras once for the reference and once for the noise check, never again for the fallback
    rounds or the re-validation, and the .keras file is not reloaded."""
    import edgeconv.verify.fallback as fb
    import edgeconv.verify.validate as v
    from edgeconv.pipeline.export import export
    from edgeconv.tflite.convert import convert_tflite

    cal, held = digits_calibration_npy
    runs, reloads, seen = [], [], {}
    real_run, real_load, real_reference_for = KerasRunner.run, v._load_reference, v.reference_for
    monkeypatch.setattr(KerasRunner, "run", lambda self, x: runs.append(len(x)) or real_run(self, x))
    monkeypatch.setattr(v, "_load_reference", lambda *a, **k: reloads.append(1) or real_load(*a, **k))
    refs = []
    monkeypatch.setattr(v, "reference_for", lambda *a, **k: refs.append(real_reference_for(*a, **k)) or refs[-1])

    def fake_fallback(saved_model, calibration_x, validation_x, reference_outputs, tolerance, **kw):
        seen.update(x=validation_x, outputs=reference_outputs)
        data = convert_tflite(saved_model, "int8", calibration_x, kw["io_type"])
        row = {"round": 0, "action": "int8", "kept_float": [], "nodes": [], "sqnr_db": 1.0, "top1": 1.0,
               "passed": False, "reasons": ["stub"], "bytes": len(data), "latency_ms": 1.0}
        return fb.FallbackResult(data, [], False, history=[row])

    monkeypatch.setattr(fb, "auto_fallback", fake_fallback)
    res = export(str(trained_tiny[0]), precisions=["int8"], out_dir=tmp_path, calibration=cal, calib_samples=50,
                 fallback="auto", validation=ValidationOptions(data=str(held), samples=40, min_sqnr=300.0),
                 quiet=True)
    assert res.fallback is not None and not res.validation.passed  # the fallback ran, then the re-validation
    assert res.validation.artifact("tiny_mnv3_int8.tflite").fallback["history"][0]["reasons"] == ["stub"]
    (ref,) = refs
    assert seen["x"] is ref.x and seen["outputs"] is ref.outputs
    assert runs.count(40) == 2, runs  # the reference, the nudged noise pass; nothing else on the 40 inputs
    assert reloads == []

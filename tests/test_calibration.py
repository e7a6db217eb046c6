"""calibration/: the embedded photo set, image folders and .npy/.npz arrays -> Samples."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgeconv.calibration import EMBEDDED_SOURCE, CalibrationError, load_samples
from edgeconv.calibration.embedded import CROPS, PHOTOS, photo_of
from edgeconv.calibration.imaging import cover_box, crop_box

SMALL = (16, 16)


def embedded(split="calibration", num=1000, size=SMALL, **kw):
    return load_samples(None, size=size, num=num, split=split, **kw)


def message(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------------------------------------------
# the embedded photo set
# --------------------------------------------------------------------------------------------------------------

def test_embedded_default_set_shapes_values_and_source():
    s = load_samples(size=(32, 32))
    assert s.data.shape == (200, 32, 32, 3) and s.data.dtype == np.float32
    assert s.kind == "pixels" and s.labels is None and s.skipped == []
    assert s.source == EMBEDDED_SOURCE == "embedded photo set (scikit-image + scikit-learn sample photos)"
    assert 0.0 == s.data.min() and s.data.max() == 255.0
    assert np.array_equal(s.data, np.round(s.data))  # 8-bit pixel values
    assert 60 < s.data.mean() < 180 and s.data.std() > 30  # real photographs, not noise or flat gray
    assert len(set(s.ids)) == 200


def test_embedded_splits_are_disjoint_by_photo_and_big_enough():
    cal, val, every = embedded("calibration"), embedded("validation"), embedded("all")
    assert (len(cal), len(val), len(every)) == (480, 240, 720)
    assert len(every) == len(PHOTOS) * len(CROPS) * 2
    cal_photos, val_photos = {photo_of(i) for i in cal.ids}, {photo_of(i) for i in val.ids}
    assert len(cal_photos) == 12 and len(val_photos) == 6
    assert not cal_photos & val_photos and not set(cal.ids) & set(val.ids)
    assert set(cal.ids) | set(val.ids) == set(every.ids)
    assert {"chelsea.png", "china.jpg", "camera.png"} <= cal_photos
    assert {"coffee.png", "flower.jpg"} <= val_photos
    # 720 distinct images: no two samples are the same picture
    flat = every.data.reshape(len(every), -1)
    assert len(np.unique(flat, axis=0)) == 720


def test_embedded_is_deterministic_and_seeded():
    a, b = embedded(num=50, size=(24, 20)), embedded(num=50, size=(24, 20))
    assert a.ids == b.ids and np.array_equal(a.data, b.data)
    assert a.data.shape == (50, 24, 20, 3)
    c = embedded(num=50, size=(24, 20), seed=1)
    assert c.ids != a.ids and len(set(c.ids) ^ set(a.ids)) > 20
    # a smaller num is a prefix of a bigger one with the same seed
    d = embedded(num=120, size=(24, 20))
    assert d.ids[:50] == a.ids and np.array_equal(d.data[:50], a.data)


def test_embedded_flip_and_gray_photos():
    s = embedded("all")
    index = {i: k for k, i in enumerate(s.ids)}
    plain, flipped = s.data[index["chelsea.png#crop7"]], s.data[index["chelsea.png#crop7-flip"]]
    assert np.array_equal(flipped, plain[:, ::-1]) and not np.array_equal(flipped, plain)
    cam = s.data[index["camera.png#crop0"]]
    assert np.array_equal(cam[..., 0], cam[..., 1]) and np.array_equal(cam[..., 0], cam[..., 2])
    cat = s.data[index["chelsea.png#crop0"]]
    assert np.abs(cat[..., 0] - cat[..., 2]).mean() > 5  # color photos keep their color
    gray = embedded("all", channels=1)
    assert gray.data.shape == (720, 16, 16, 1) and gray.ids == s.ids


def test_embedded_exclude_ids():
    first = embedded(num=30)
    rest = embedded(num=1000, exclude_ids=first.ids)
    assert len(rest) == 480 - 30 and not set(rest.ids) & set(first.ids)
    assert embedded(num=5, exclude_ids=first.ids[0]).ids == first.ids[1:6]  # a single id string works too
    with pytest.raises(CalibrationError) as e:
        embedded("validation", exclude_ids=embedded("validation").ids)
    assert "no validation samples left in the embedded photo set" in message(e)


def test_embedded_200_at_224_in_a_fresh_process():
    """The embedded set loads in a fresh process (no state from other tests). How long it takes is a benchmark
    figure (benchmarks/export_time.py, "calibration data" step), not a timed unit test on a shared machine."""
    code = ("from edgeconv.calibration import load_samples; "
            "s = load_samples(size=(224, 224), num=200); print(s.data.shape, s.data.dtype)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["(200,", "224,", "224,", "3)", "float32"]


def test_crop_geometry():
    assert cover_box(400, 300, (224, 224)) == (50.0, 0.0, 350.0, 300.0)
    assert cover_box(300, 400, (100, 200)) == (0.0, 125.0, 300.0, 275.0)
    assert crop_box(400, 300, (224, 224)) == cover_box(400, 300, (224, 224))
    assert crop_box(400, 300, (224, 224), 0.5, (0.0, 0.0)) == (0.0, 0.0, 150.0, 150.0)
    assert crop_box(400, 300, (224, 224), 0.5, (1.0, 1.0)) == (250.0, 150.0, 400.0, 300.0)


# --------------------------------------------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------------------------------------------

@pytest.fixture
def image_folder(tmp_path):
    """Six readable images in nested folders (RGB png, jpeg, gray, RGBA, palette, 16-bit), one corrupt, one text."""
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    half = np.zeros((20, 40, 3), np.uint8)
    half[:, :20] = (255, 0, 0)
    half[:, 20:] = (0, 0, 255)
    Image.fromarray(half).save(root / "a_halves.png")
    Image.fromarray(np.full((30, 30, 3), (10, 200, 30), np.uint8)).save(root / "b_green.JPG", quality=95)
    Image.fromarray(np.full((12, 12), 100, np.uint8)).save(root / "sub" / "c_gray.png")
    Image.fromarray(np.full((12, 12, 4), (50, 60, 70, 0), np.uint8), "RGBA").save(root / "sub" / "d_rgba.png")
    Image.fromarray(np.full((12, 12, 3), (204, 102, 0), np.uint8)).convert("P").save(root / "sub" / "e_palette.bmp")
    Image.fromarray(np.full((12, 12), 65535, np.uint16)).save(root / "sub" / "deeper" / "f_16bit.png")
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_images_converted_resized_and_corrupt_file_skipped(image_folder):
    s = load_samples(image_folder, size=(10, 10), num=100, split="all")
    assert s.kind == "pixels" and s.source == str(image_folder)
    assert sorted(s.ids) == ["a_halves.png", "b_green.JPG", "sub/c_gray.png", "sub/d_rgba.png",
                             "sub/deeper/f_16bit.png", "sub/e_palette.bmp"]
    assert s.data.shape == (6, 10, 10, 3) and s.data.dtype == np.float32
    assert [f for f, _ in s.skipped] == ["sub/broken.jpg"] and s.skipped[0][1]
    px = dict(zip(s.ids, s.data))
    # cover crop of a 40x20 image to 10x10 keeps the middle 20x20: left half red, right half blue
    assert tuple(px["a_halves.png"][5, 0]) == (255, 0, 0) and tuple(px["a_halves.png"][5, 9]) == (0, 0, 255)
    assert np.abs(px["b_green.JPG"] - np.array([10, 200, 30])).max() <= 3
    assert np.all(px["sub/c_gray.png"] == 100)  # gray -> RGB by repeating
    assert np.all(px["sub/d_rgba.png"] == np.array([50, 60, 70]))  # alpha dropped
    assert np.all(px["sub/e_palette.bmp"] == np.array([204, 102, 0]))  # a web-palette color
    assert np.all(px["sub/deeper/f_16bit.png"] == 255)  # 16-bit scaled, not clipped
    gray = load_samples(image_folder, size=(10, 10), channels=1, split="all")
    assert gray.data.shape == (6, 10, 10, 1)
    assert np.all(dict(zip(gray.ids, gray.data))["sub/c_gray.png"] == 100)


def test_folder_is_deterministic_and_splits_with_exclusion(image_folder):
    a = load_samples(image_folder, size=(8, 8), num=4, seed=3)
    assert a.ids == load_samples(image_folder, size=(8, 8), num=4, seed=3).ids
    assert np.array_equal(a.data, load_samples(image_folder, size=(8, 8), num=4, seed=3).data)
    assert len(a) == 4
    val = load_samples(image_folder, size=(8, 8), num=100, split="validation", seed=3, exclude_ids=a.ids)
    assert len(val) == 2 and not set(val.ids) & set(a.ids)
    orders = {tuple(load_samples(image_folder, size=(8, 8), num=6, seed=k).ids) for k in range(4)}
    assert len(orders) > 1
    with pytest.raises(CalibrationError) as e:
        load_samples(image_folder, size=(8, 8), split="validation", exclude_ids=a.ids + val.ids)
    assert f"no validation samples left in {image_folder}: all 6 are excluded" in message(e)


def test_empty_and_unreadable_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError) as e:
        load_samples(empty, size=(8, 8))
    assert message(e).startswith(f"folder {empty} is empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("hello")
    with pytest.raises(CalibrationError) as e:
        load_samples(tmp_path / "docs", size=(8, 8))
    assert "no readable image in" in message(e) and ".jpg, .jpeg, .png, .bmp, .webp" in message(e)
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(3):
        (junk / f"img{i}.png").write_bytes(b"nope")
    with pytest.raises(CalibrationError) as e:
        load_samples(junk, size=(8, 8))
    assert f"no readable image in {junk}: 3 image files tried, none could be decoded (first: img" in message(e)


# --------------------------------------------------------------------------------------------------------------
# .npy / .npz arrays
# --------------------------------------------------------------------------------------------------------------

def test_npy_uint8_pixels_exact_and_resized(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (7, 12, 12, 3), dtype=np.uint8)
    np.save(tmp_path / "px.npy", x)
    s = load_samples(tmp_path / "px.npy", size=(12, 12), num=100, split="all")
    assert s.kind == "pixels" and len(s) == 7 and s.labels is None
    idx = [int(i.split("[")[1][:-1]) for i in s.ids]
    assert sorted(idx) == list(range(7)) and s.ids[0] == f"px.npy[{idx[0]}]"
    assert np.array_equal(s.data, x[idx].astype(np.float32))
    r = load_samples(tmp_path / "px.npy", size=(6, 8), num=3)
    assert r.data.shape == (3, 6, 8, 3) and r.kind == "pixels"
    gray = np.full((4, 10, 10), 77, np.uint8)
    np.save(tmp_path / "gray.npy", gray)
    g = load_samples(tmp_path / "gray.npy", size=(5, 5), channels=1)
    assert g.data.shape == (4, 5, 5, 1) and np.all(g.data == 77)


def test_npy_float_model_inputs_used_as_given(tmp_path):
    x = np.random.default_rng(1).normal(size=(5, 8, 8, 3)).astype(np.float32)
    np.save(tmp_path / "f.npy", x)
    s = load_samples(tmp_path / "f.npy", size=(8, 8), split="all")
    assert s.kind == "model_input"
    assert np.array_equal(s.data, x[[int(i.split("[")[1][:-1]) for i in s.ids]])
    with pytest.raises(CalibrationError) as e:
        load_samples(tmp_path / "f.npy", size=(16, 16))
    assert "float (already preprocessed) inputs of 8x8 but the model wants 16x16" in message(e)


@pytest.mark.parametrize("name,array,needle", [
    ("flat.npy", np.zeros((10, 32), np.uint8), "has shape (10, 32), expected (N, H, W, 3)"),
    ("nhw.npy", np.zeros((10, 8, 8), np.uint8), "has shape (10, 8, 8), expected (N, H, W, 3)"),
    ("four.npy", np.zeros((10, 8, 8, 4), np.uint8), "has 4 channels (shape (10, 8, 8, 4)), the model wants 3"),
    ("nan.npy", np.where(np.arange(2 * 8 * 8 * 3).reshape(2, 8, 8, 3) == 200, np.nan, 0).astype(np.float32),
     "contains NaN or inf values (1 of 2 samples, first: sample 1)"),
    ("inf.npy", np.full((2, 8, 8, 3), np.inf, np.float64), "contains NaN or inf values (2 of 2 samples"),
    ("empty.npy", np.zeros((0, 8, 8, 3), np.uint8), "is empty (shape (0, 8, 8, 3))"),
    ("big.npy", np.full((2, 8, 8, 3), 300, np.int16), "holds int16 values 300..300: integer arrays are pixels"),
    ("bool.npy", np.zeros((2, 8, 8, 3), bool), "holds bool values"),
])
def test_bad_arrays(tmp_path, name, array, needle):
    np.save(tmp_path / name, array)
    with pytest.raises(CalibrationError) as e:
        load_samples(tmp_path / name, size=(8, 8))
    assert str(tmp_path / name) in message(e) and needle in message(e), message(e)


def test_corrupt_and_pickled_arrays(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 garbage")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name in ("bad.npy", "bad.npz", "obj.npy"):
        with pytest.raises(CalibrationError) as e:
            load_samples(tmp_path / name, size=(8, 8))
        assert message(e).startswith(f"cannot read {tmp_path / name}: ")


def test_npz_with_labels_and_key_rules(tmp_path):
    x = np.arange(6, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    y = np.array([10, 11, 12, 13, 14, 15])
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    s = load_samples(tmp_path / "xy.npz", size=(4, 4), num=4, seed=2)
    assert len(s) == 4 and s.labels is not None
    assert np.array_equal(s.labels, s.data[:, 0, 0, 0].astype(int) + 10)  # labels follow their samples
    np.savez(tmp_path / "named.npz", images=x, labels=y)
    assert np.array_equal(load_samples(tmp_path / "named.npz", size=(4, 4), num=6, seed=2).labels[:4], s.labels)
    np.savez(tmp_path / "single.npz", anything=x)
    assert load_samples(tmp_path / "single.npz", size=(4, 4)).labels is None
    np.savez(tmp_path / "ambiguous.npz", a=x, b=x)
    with pytest.raises(CalibrationError) as e:
        load_samples(tmp_path / "ambiguous.npz", size=(4, 4))
    assert "holds the arrays a, b: store the samples as 'x'" in message(e)
    np.savez(tmp_path / "short.npz", x=x, y=y[:3])
    with pytest.raises(CalibrationError) as e:
        load_samples(tmp_path / "short.npz", size=(4, 4))
    assert "has 6 samples but labels of shape (3,)" in message(e)


# --------------------------------------------------------------------------------------------------------------
# paths and arguments
# --------------------------------------------------------------------------------------------------------------

def test_missing_unsupported_paths_and_bad_arguments(tmp_path):
    with pytest.raises(CalibrationError) as e:
        load_samples(tmp_path / "nope.npy", size=(8, 8), split="validation")
    assert message(e) == f"validation data not found: {tmp_path / 'nope.npy'}"
    (tmp_path / "one.png").write_bytes(b"x")
    with pytest.raises(CalibrationError, match="is not a folder of images, a .npy or an .npz"):
        load_samples(tmp_path / "one.png", size=(8, 8))
    for kwargs, needle in [({"size": (0, 8)}, "size must be (height, width)"), ({"split": "train"}, "split must be"),
                           ({"num": 0}, "positive integer"), ({"seed": -1}, "seed must be"),
                           ({"channels": 4}, "pass a float .npy/.npz of preprocessed (N, H, W, 4) inputs")]:
        with pytest.raises(CalibrationError) as e:
            load_samples(None, **{"size": (8, 8), **kwargs})
        assert needle in message(e) and e.value.exit_code == 2

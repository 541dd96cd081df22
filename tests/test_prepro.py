"""prepro.py: the original's crop and resize, every input mode, bad inputs, crash safety, resume,
deterministic bytes, and that data.py reads what it writes. Images are made here, CelebA-shaped."""
import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import config
import data
import prepro
from conftest import error_line, load, run_command

BOX = (35, 55, 143, 163)  # the original's centre 108x108 box of a 178x218 image
LANCZOS = Image.Resampling.LANCZOS


def photo(seed, width=178, height=218):
    """An RGB image with detail at every scale, so that a wrong box or filter changes pixels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([x * 255 / width, y * 255 / height, (x + y) * 255 / (width + height)], -1)
    pixels = np.clip(smooth + rng.normal(0, 40, (height, width, 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def make_inputs(directory, count):
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.jpg" for i in range(1, count + 1)]
    for i, name in enumerate(names, 1):
        photo(i).save(directory / name, quality=90)
    return names


def build(source, out, **settings):
    return prepro.build(str(source), str(out), out=lambda *_: None, **settings)


def records(out):
    """Per shard of the manifest: [(filename, uint8 image)], in file order."""
    manifest = json.loads((out / "manifest.json").read_text())
    shards = []
    for shard in manifest["shards"]:
        found = []
        for record in tf.data.TFRecordDataset(str(out / shard["file"])):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            image = tf.io.decode_image(feature["image"].bytes_list.value[0]).numpy()
            found.append((feature["filename"].bytes_list.value[0].decode(), image))
        shards.append(found)
    return shards


def snapshot(out):
    """{name: (inode, mtime)} of every file: equal snapshots mean nothing was rewritten."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir()}


def test_crop_box_is_the_originals():
    assert prepro.crop_box(178, 218, 108) == BOX
    assert prepro.crop_box(108, 108, 108) == (0, 0, 108, 108)
    assert prepro.crop_box(218, 178, 108) == (55, 35, 163, 143)
    # Odd margins: Python 3's round, half to even, as the original's round() under Python 3.
    assert prepro.crop_box(179, 219, 108)[:2] == (36, 56)
    assert prepro.crop_box(181, 221, 108)[:2] == (36, 56)


def test_prepare_is_the_centre_crop_resized_with_lanczos(tmp_path):
    path = tmp_path / "000001.jpg"
    photo(1).save(path, quality=90)
    with Image.open(path) as image:
        expected = np.asarray(image.crop(BOX).resize((64, 64), LANCZOS))
        bicubic = np.asarray(image.crop(BOX).resize((64, 64), Image.Resampling.BICUBIC))
    got = prepro.prepare(str(path), 108, 64)
    assert got.dtype == np.uint8 and got.shape == (64, 64, 3)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, bicubic)  # the test image tells filters apart
    with open(path, "rb") as f:  # a file object works too
        np.testing.assert_array_equal(prepro.prepare(f, 108, 64), expected)


@pytest.mark.parametrize("mode, suffix", [("L", "jpg"), ("RGBA", "png"), ("P", "png"),
                                          ("CMYK", "jpg"), ("RGB", "webp")])
def test_every_mode_becomes_rgb(tmp_path, mode, suffix):
    path = tmp_path / f"image.{suffix}"
    photo(2).convert(mode).save(path, lossless=True)  # lossless: webp only
    with Image.open(path) as image:
        assert image.mode == mode
        expected = np.asarray(image.convert("RGB").crop(BOX).resize((64, 64), LANCZOS))
    got = prepro.prepare(str(path), 108, 64)
    assert got.shape == (64, 64, 3)
    np.testing.assert_array_equal(got, expected)
    if mode == "L":
        assert np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 1], got[..., 2])


def test_transparent_pixels_become_white(tmp_path):
    pixels = np.zeros((218, 178, 4), np.uint8)  # left: transparent black; right: opaque grey
    pixels[:, 89:] = (100, 100, 100, 255)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    palette = Image.frombytes("P", (178, 218), (pixels[..., 3] > 0).astype(np.uint8).tobytes())
    palette.putpalette([0, 0, 0, 100, 100, 100])
    palette.save(tmp_path / "p.png", transparency=0)  # colour 0, black, is transparent
    for name in ["a.png", "p.png"]:
        got = prepro.prepare(str(tmp_path / name), 108, 64)
        assert (got[:, :25] == 255).all() and (got[:, -15:] == 100).all(), name


def test_exif_rotation_is_applied(tmp_path):
    upright = photo(3)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: stored rotated, display turned 90 degrees clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.png", exif=exif)
    upright.save(tmp_path / "upright.png")
    np.testing.assert_array_equal(prepro.prepare(str(tmp_path / "sideways.png"), 108, 64),
                                  prepro.prepare(str(tmp_path / "upright.png"), 108, 64))


def test_bad_inputs_are_skipped_counted_and_listed(tmp_path):
    source, out = tmp_path / "img", tmp_path / "out"
    good = make_inputs(source, 4)
    jpeg = (source / good[0]).read_bytes()
    (source / "000002a.jpg").write_bytes(jpeg[:len(jpeg) // 2])  # truncated download
    (source / "000002b.jpg").write_bytes(jpeg[:300] + bytes(range(256)) * 4)  # garbage after header
    (source / "000003a.jpg").write_text("<html>404 Not Found</html>\n")
    (source / "000003b.jpg").write_bytes(b"")
    photo(9, 100, 120).save(source / "000003c.jpg")  # smaller than the 108x108 box
    (source / "000004a.gif").write_bytes(b"GIF89a")
    expected = {"000002a.jpg": "corrupt image", "000002b.jpg": "corrupt image",
                "000003a.jpg": "not an image", "000003b.jpg": "empty file",
                "000003c.jpg": "smaller than crop", "000004a.gif": "unsupported extension"}

    manifest = build(source, out, shards=3, workers=2)  # bad files in the worker processes too

    assert manifest["count"] == 4
    assert manifest["skipped"] == dict(collections.Counter(expected.values()))
    listed = [line.split("\t") for line in (out / "skipped.txt").read_text().splitlines()]
    assert {name: reason for name, reason, _ in listed} == expected
    assert all(detail for _, _, detail in listed)
    shards = records(out)
    assert [n for shard in shards for n, _ in shard] == good  # each good image once, sorted
    assert [len(shard) for shard in shards] == [s["count"] for s in manifest["shards"]]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    for name, image in (r for shard in shards for r in shard):  # PNG: exactly what prepare() gives
        np.testing.assert_array_equal(image, prepro.prepare(str(source / name), 108, 64))
    assert {k: manifest[k] for k in ["size", "crop", "channels", "encoding"]} == \
        {"size": 64, "crop": 108, "channels": 3, "encoding": "png"}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "empty", "no images"])
def test_missing_or_empty_input_is_a_one_line_error_that_writes_nothing(tmp_path, case):
    source, out = tmp_path / "img_align_celeba", tmp_path / "out"
    if case != "missing":
        source.mkdir()
    if case == "no images":
        (source / "readme.txt").write_text("CelebA goes here\n")
    result = run_command("prepro.py", f"--input_dir={source}", f"--output_dir={out}")
    assert "run ./download.sh" in error_line(result, "prepro.py") and result.stdout == ""
    assert not out.exists()


@pytest.mark.slow
def test_same_input_gives_the_same_bytes_whatever_the_workers(tmp_path):
    source = tmp_path / "img"
    make_inputs(source, 9)
    one = build(source, tmp_path / "one", shards=3, workers=1)
    result = run_command("prepro.py", f"--input_dir={source}", f"--output_dir={tmp_path / 'two'}",
                         "--shards=3", "--workers=2")
    assert result.returncode == 0 and result.stderr == "", result.stderr  # TensorFlow kept quiet
    assert "9/9 images (100%)" in result.stdout and "img/s" in result.stdout
    assert "Done: 9 images of 64x64 in 3 shards" in result.stdout and "skipped 0." in result.stdout
    assert [s["count"] for s in one["shards"]] == [3, 3, 3]
    for name in [s["file"] for s in one["shards"]] + ["manifest.json", "skipped.txt"]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()

    # Running again finds every shard complete and touches no file.
    before = snapshot(tmp_path / "one")
    said = []
    again = prepro.build(str(source), str(tmp_path / "one"), shards=3, workers=1, out=said.append)
    assert again == one
    assert "all already complete" in said[0] and snapshot(tmp_path / "one") == before


def test_rerun_rewrites_only_missing_or_damaged_shards(tmp_path):
    source, out = tmp_path / "img", tmp_path / "out"
    make_inputs(source, 8)
    build(source, out, shards=4, workers=1)
    files = sorted(p.name for p in out.glob("*.tfrecord"))
    original = {name: (out / name).read_bytes() for name in files}
    before = snapshot(out)
    (out / files[1]).unlink()
    with open(out / files[2], "r+b") as f:
        f.truncate(100)  # e.g. an interrupted copy
    (out / (files[3] + ".tmp")).write_bytes(b"half a shard")  # left by a crash

    build(source, out, shards=4, workers=1)

    assert {name: (out / name).read_bytes() for name in files} == original
    after = snapshot(out)
    assert after[files[0]] == before[files[0]] and after[files[3]] == before[files[3]]
    assert after[files[2]] != before[files[2]]
    assert not list(out.glob("*.tmp"))


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    source, out = tmp_path / "img", tmp_path / "out"
    make_inputs(source, 8)
    build(source, out, shards=4, size=32)  # a complete set of another size is being replaced
    real = prepro.process

    def interrupted(name, **settings):
        if name == "000006.jpg":
            raise KeyboardInterrupt
        return real(name, **settings)

    monkeypatch.setattr(prepro, "process", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(source, out, shards=4, size=16, workers=1)
    # No manifest, so data.py refuses the folder; shards 0 and 1 are done, shard 2 is a .tmp, and
    # the size-32 shard 3 is gone rather than passing for a finished size-16 one.
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in out.glob("*.tfrecord*")) == [
        "celeba-00000-of-00004.tfrecord", "celeba-00001-of-00004.tfrecord",
        "celeba-00002-of-00004.tfrecord.tmp"]
    with pytest.raises(config.ConfigError, match="manifest.json not found"):
        load("celeba", batch_size=2, image_size=16, data_dir=str(out))

    monkeypatch.undo()
    before = snapshot(out)
    build(source, out, shards=4, size=16, workers=1)
    build(source, tmp_path / "clean", shards=4, size=16, workers=1)
    after = snapshot(out)
    for name in sorted(p.name for p in (tmp_path / "clean").glob("*.tfrecord")) + ["manifest.json"]:
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
    assert all(after[f] == before[f] for f in ["celeba-00000-of-00004.tfrecord",
                                               "celeba-00001-of-00004.tfrecord"])
    assert not list(out.glob("*.tmp"))


def test_manifest_is_withdrawn_while_a_rerun_writes(tmp_path, monkeypatch):
    source, out = tmp_path / "img", tmp_path / "out"
    make_inputs(source, 8)
    build(source, out, shards=4)
    (out / "celeba-00001-of-00004.tfrecord").unlink()

    def interrupted(name, **settings):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepro, "process", interrupted)  # in this process: workers=1
    with pytest.raises(KeyboardInterrupt):
        build(source, out, shards=4, workers=1)
    assert not (out / "manifest.json").exists()  # it would list a shard that is not there


@pytest.mark.parametrize("encoding", ["png", "jpeg"])
def test_data_load_reads_the_output(tmp_path, encoding):
    source, out = tmp_path / "img", tmp_path / "out"
    names = make_inputs(source, 6)
    build(source, out, shards=2, size=32, encoding=encoding)
    loaded = load("celeba", batch_size=6, image_size=32, data_dir=str(out))
    batch = next(iter(loaded.stream())).numpy()
    assert loaded.count == 6 and batch.shape == (6, 32, 32, 3)
    assert batch.min() >= -1.0 and batch.max() <= 1.0
    got = np.rint((batch + 1) * 127.5)
    expected = np.array([prepro.prepare(str(source / n), 108, 32) for n in names], np.float64)
    # error[i, j]: mean difference between batch image i and source image j
    error = np.abs(got[:, None] - expected[None]).mean(axis=(2, 3, 4))
    assert sorted(error.argmin(axis=1)) == list(range(6))  # each image once
    # JPEG: lossy, and these noisy images are its worst case (q95 is within ~3 on photos)
    assert error.min(axis=1).max() == 0 if encoding == "png" else error.min(axis=1).max() < 10


def test_partition_selects_its_files(tmp_path):
    source, out = tmp_path / "img_align_celeba", tmp_path / "out"
    names = make_inputs(source, 7)
    with pytest.raises(config.ConfigError, match="needs CelebA's list_eval_partition.txt"):
        build(source, out, partition="train")
    assert not out.exists()
    (tmp_path / "list_eval_partition.txt").write_text(  # next to the image folder, as CelebA has it
        "".join(f"{name} {i % 3}\n" for i, name in enumerate(names)))
    for partition, offset in [("train", 0), ("valid", 1), ("test", 2)]:
        chosen = names[offset::3]
        manifest = build(source, tmp_path / partition, partition=partition)
        assert manifest["count"] == len(chosen) and manifest["settings"]["partition"] == partition
        assert [n for shard in records(tmp_path / partition) for n, _ in shard] == chosen


def test_one_writer_at_a_time(tmp_path):
    source, out = tmp_path / "img", tmp_path / "out"
    make_inputs(source, 2)
    out.mkdir()
    held = prepro.lock(str(out))  # as a prepro.py running in another terminal holds it
    try:
        with pytest.raises(config.ConfigError, match="another prepro.py is writing"):
            build(source, out)
        assert os.listdir(out) == []
    finally:
        os.close(held)
    assert build(source, out)["count"] == 2


CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie "
    "Young").split()


def write_attributes(path, names, seed=0):
    """list_attr_celeba.txt as CelebA has it (count, names with a trailing space, then -1/1 values
    aligned with two spaces before a 1) for names; returns {name: [0/1, ...]}."""
    rng = np.random.default_rng(seed)
    values = {name: rng.integers(0, 2, len(CELEBA_ATTRIBUTES)).tolist() for name in names}
    lines = [str(len(names)), " ".join(CELEBA_ATTRIBUTES) + " "]
    lines += [f"{name} " + " ".join(f"{2 * v - 1:2d}" for v in row) for name, row in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return values


def stored_attributes(out):
    """{filename: [0/1, ...]} of every record, or {filename: None} where there are none."""
    found = {}
    for shard in json.loads((out / "manifest.json").read_text())["shards"]:
        for record in tf.data.TFRecordDataset(str(out / shard["file"])):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            name = feature["filename"].bytes_list.value[0].decode()
            found[name] = list(feature["attributes"].int64_list.value) \
                if "attributes" in feature else None
    return found


def test_attributes_beside_the_images_are_stored_with_each_and_read_by_name(tmp_path):
    source, out = tmp_path / "img_align_celeba", tmp_path / "out"
    names = make_inputs(source, 6)
    build(source, out, shards=2, workers=1)
    assert "attributes" not in json.loads((out / "manifest.json").read_text())
    with pytest.raises(config.ConfigError, match="hold no attributes: .* prepro.py again"):
        load("celeba", batch_size=2, data_dir=str(out), conditional=True)

    # Beside the image folder, as CelebA has it; it may list images that are not there.
    values = write_attributes(tmp_path / "list_attr_celeba.txt", names + ["999999.jpg"])
    said = []
    manifest = prepro.build(str(source), str(out), shards=2, workers=1, out=said.append)
    assert "each with its 40 attributes, 0 already complete" in said[0]  # all rewritten
    assert manifest["attributes"] == CELEBA_ATTRIBUTES
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert stored_attributes(out) == {name: values[name] for name in names}
    before = snapshot(out)
    build(source, out, shards=2, workers=1)
    assert snapshot(out) == before  # a rerun with the same attributes rewrites nothing

    chosen = ["Smiling", "Male", "Eyeglasses"]
    loaded = load("celeba", batch_size=6, data_dir=str(out), conditional=True,
                       attributes=chosen)
    assert loaded.labels == data.Labels("attributes", tuple(chosen))
    images, labels = next(iter(loaded.stream()))
    pixels = {prepro.prepare(str(source / n), 108, 64).tobytes(): n for n in names}
    shown = [pixels[np.rint((image + 1) * 127.5).astype(np.uint8).tobytes()] for image in images]
    assert sorted(shown) == names  # PNG: each image exactly, once
    columns = [CELEBA_ATTRIBUTES.index(c) for c in chosen]
    np.testing.assert_array_equal(labels, [[values[n][c] for c in columns] for n in shown])
    with pytest.raises(config.ConfigError, match="unknown attribute 'Smile': choose from "
                                                 "5_o_Clock_Shadow,Arched_Eyebrows,"):
        load("celeba", batch_size=2, data_dir=str(out), conditional=True, attributes="Smile")

    # In the image folder itself it is read the same, and is not an input to skip.
    (tmp_path / "list_attr_celeba.txt").rename(source / "list_attr_celeba.txt")
    build(source, tmp_path / "inside", shards=2, workers=1)
    assert (tmp_path / "inside" / "skipped.txt").read_text() == ""
    for shard in manifest["shards"]:
        file = shard["file"]
        assert (tmp_path / "inside" / file).read_bytes() == (out / file).read_bytes()


@pytest.mark.parametrize("damage, message", [
    (lambda text: text.replace("000002.jpg", "000009.jpg"),
     r"has no line for 1 of the images \(e.g. 000002.jpg\): add them, or move the file away"),
    (lambda text: text.replace(" 1 ", " 0 ", 1), r"line 3 is not a name and 40 values of -1 or 1"),
    (lambda text: "4" + text[1:], "lists 3 images, but its first line says 4: download it again"),
    (lambda text: text.split("\n", 1)[1], "does not begin with an image count and the attribute"),
])
def test_a_bad_attribute_file_is_a_one_line_error_that_writes_nothing(tmp_path, damage, message):
    source, out = tmp_path / "img", tmp_path / "out"
    names = make_inputs(source, 3)
    write_attributes(source / "list_attr_celeba.txt", names, seed=1)
    path = source / "list_attr_celeba.txt"
    path.write_text(damage(path.read_text()))
    with pytest.raises(config.ConfigError, match=message):
        build(source, out, workers=1)
    assert not out.exists()

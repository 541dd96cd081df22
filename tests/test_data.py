import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import config
import data
from conftest import write_shards


def test_mnist_is_5000_real_digits_bundled():
    digits, labels = data.mnist_digits()
    assert digits.shape == (5000, 28, 28, 1) and digits.dtype == np.uint8
    assert digits.max() == 255 and np.mean(digits == 0) > 0.7  # white strokes on black
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)


def test_mnist_batches_are_in_tanh_range():
    images = data.load("mnist", batch_size=100)
    batch = next(iter(images.stream()))
    assert images.count == 5000 and (images.image_size, images.channels) == (28, 1)
    assert batch.shape == (100, 28, 28, 1) and batch.dtype == tf.float32
    assert float(tf.reduce_min(batch)) == -1.0 and float(tf.reduce_max(batch)) == 1.0


def test_mnist_can_be_resized():
    images = data.load("mnist", batch_size=4, image_size=32)
    assert next(iter(images.stream())).shape == (4, 32, 32, 1)


def test_epochs_are_reshuffled():
    images = data.load("fake", batch_size=500, image_size=8)  # 1000 images: 2 batches an epoch
    batches = [b.numpy() for b in images.stream().take(4)]
    first_epoch = np.concatenate(batches[:2])
    second_epoch = np.concatenate(batches[2:])
    assert not np.array_equal(first_epoch, second_epoch)
    key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))  # same images, other order
    assert key(first_epoch) == key(second_epoch)


def test_celeba_reads_prepared_tfrecords(tmp_path):
    write_shards(tmp_path, size=16)
    images = data.load("celeba", batch_size=10, image_size=16, data_dir=str(tmp_path))
    batch = next(iter(images.stream())).numpy()
    assert images.count == 10 and batch.shape == (10, 16, 16, 3)
    pixel_values = sorted(np.rint((batch[:, 0, 0, 0] + 1) * 127.5).astype(int))
    assert pixel_values == [10 * i for i in range(10)]  # every record once per epoch


def test_celeba_of_another_size_is_refused(tmp_path):
    write_shards(tmp_path, size=16)
    with pytest.raises(config.ConfigError, match="holds 16x16 images, not 64x64"):
        data.load("celeba", batch_size=2, data_dir=str(tmp_path))


def test_truncated_shard_is_named(tmp_path):
    write_shards(tmp_path, size=16)
    shard = tmp_path / "celeba-00001-of-00002.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(config.ConfigError, match="shard .*celeba-00001-of-00002.tfrecord has"):
        data.load("celeba", batch_size=2, image_size=16, data_dir=str(tmp_path))


def test_missing_celeba_says_which_commands_make_it(tmp_path):
    with pytest.raises(config.ConfigError, match=r"download\.sh, then python prepro\.py"):
        data.load("celeba", batch_size=2, data_dir=str(tmp_path / "nothing"))


def test_batch_larger_than_dataset_is_refused():
    with pytest.raises(config.ConfigError, match="larger than the dataset"):
        data.load("fake", batch_size=5000)


def test_center_crop_takes_the_originals_box_from_a_178x218_image():
    # White exactly inside the original's box (left 35, top 55, right 143, bottom 163).
    image = np.zeros((218, 178, 3), np.uint8)
    image[55:163, 35:143] = 255
    cropped = data.center_crop(tf.constant(image), crop=108, image_size=108)  # no resize
    assert cropped.shape == (108, 108, 3) and np.all(cropped.numpy() == 255)


def test_center_crop_resizes_with_lanczos_like_pil():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (218, 178, 3), np.uint8)
    ours = data.center_crop(tf.constant(image), crop=108, image_size=64).numpy().astype(int)
    pil = np.asarray(Image.fromarray(image).crop((35, 55, 143, 163))
                     .resize((64, 64), Image.Resampling.LANCZOS)).astype(int)
    assert np.mean(np.abs(ours - pil)) < 4  # two Lanczos implementations on noise: close, not equal


def test_folder_of_mixed_images_is_searched_recursively(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(["one.jpg", "a/two.PNG", "a/b/three.webp", "a/b/four.jpeg"]):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), np.uint8)).save(tmp_path / name)
    Image.fromarray(rng.integers(0, 256, (40, 30), np.uint8)).save(tmp_path / "gray.png")
    (tmp_path / "notes.txt").write_text("not an image")
    images = data.load("folder", batch_size=5, image_size=16, data_dir=str(tmp_path), crop=108)
    batch = next(iter(images.stream()))
    assert images.count == 5 and batch.shape == (5, 16, 16, 3)
    assert -1.0 <= float(tf.reduce_min(batch)) and float(tf.reduce_max(batch)) <= 1.0


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(config.ConfigError, match="no .jpg, .jpeg, .png, .webp images found"):
        data.load("folder", batch_size=2, data_dir=str(tmp_path))


def test_tfds_sources_take_their_shape_from_the_dataset():
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=8):
        mnist = data.load("tfds:mnist", batch_size=4)
        assert (mnist.image_size, mnist.channels) == (28, 1)
        assert next(iter(mnist.stream())).shape == (4, 28, 28, 1)
        faces = data.load("tfds:celeb_a", batch_size=4, crop=108)
        assert (faces.image_size, faces.channels) == (64, 3)  # 218x178 is not square: 64
        assert next(iter(faces.stream())).shape == (4, 64, 64, 3)


def test_unprepared_tfds_dataset_says_how_to_prepare_it(tmp_path):
    with pytest.raises(config.ConfigError, match="tfds build mnist"):
        data.load("tfds:mnist", batch_size=4, data_dir=str(tmp_path))


def images_of(loaded, start, n):
    """The first n images of loaded.stream(start), as float32 pixels."""
    found, total = [], 0
    for batch in loaded.stream(start):
        found.append(batch.numpy())
        total += len(found[-1])
        if total >= n:
            return np.concatenate(found)[:n]


def loaded_source(name, tmp_path):
    """A small dataset of each source, batches of 3."""
    if name == "celeba":
        write_shards(tmp_path, size=8, shards=3, per_shard=4)
        return data.load("celeba", batch_size=3, image_size=8, data_dir=str(tmp_path))
    if name == "folder":
        rng = np.random.default_rng(0)
        for i in range(7):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), np.uint8)).save(tmp_path / f"{i}.png")
        return data.load("folder", batch_size=3, image_size=8, data_dir=str(tmp_path))
    if name == "mnist":
        return data.load("mnist", batch_size=500, image_size=8)
    return data.load(name, batch_size=3, image_size=8)


@pytest.mark.parametrize("name", ["fake", "mnist", "celeba", "folder", "tfds:mnist"])
def test_the_stream_starts_at_any_image_as_if_it_had_run_from_the_first(tmp_path, name):
    """What makes a resume exact: stream(start) is the stream from the first image, less its
    first start images. Checked inside the first epoch, across its end and in a later one."""
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=10):
        loaded = loaded_source(name, tmp_path)
        count = loaded.count
        whole = images_of(loaded, 0, 2 * count + 10)
        for start in (1, count - 2, count + 4, 2 * count + 1):
            np.testing.assert_array_equal(images_of(loaded, start, 9), whole[start:start + 9])
    first, second = whole[:count], whole[count:2 * count]
    assert not np.array_equal(first, second)  # each epoch in its own order
    key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))
    assert key(first) == key(second)  # of the same images


def test_the_fingerprint_changes_with_the_images_and_with_nothing_else(tmp_path):
    """What the real images' statistics are cached under: another file, or a rewritten one, is
    other data; loading again, with another batch size or seed, is the same."""
    folder, shards = tmp_path / "folder", tmp_path / "shards"
    folder.mkdir(), shards.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), i, np.uint8)).save(folder / f"{i}.png")
    write_shards(shards, size=8)
    loads = {"folder": lambda **kw: data.load("folder", data_dir=str(folder), **kw),
             "celeba": lambda **kw: data.load("celeba", data_dir=str(shards), image_size=8, **kw),
             "mnist": lambda **kw: data.load("mnist", **kw)}
    before = {name: load(batch_size=2).fingerprint for name, load in loads.items()}
    assert len(set(before.values())) == 3
    for name, load in loads.items():
        assert load(batch_size=3, seed=5).fingerprint == before[name]
    Image.fromarray(np.full((20, 20, 3), 9, np.uint8)).save(folder / "1.png")
    assert loads["folder"](batch_size=2).fingerprint != before["folder"]
    manifest = json.loads((shards / config.MANIFEST).read_text())
    (shards / config.MANIFEST).write_text(json.dumps({**manifest, "crop": 100}))
    assert loads["celeba"](batch_size=2).fingerprint != before["celeba"]

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import config
import data
from conftest import load, shard_attributes, write_shards


def test_mnist_is_5000_real_digits_bundled():
    digits, labels = data.mnist_digits()
    assert digits.shape == (5000, 28, 28, 1) and digits.dtype == np.uint8
    assert digits.max() == 255 and np.mean(digits == 0) > 0.7  # white strokes on black
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)


def test_mnist_batches_are_in_tanh_range():
    images = load("mnist", batch_size=100)
    batch = next(iter(images.stream()))
    assert images.count == 5000 and (images.image_size, images.channels) == (28, 1)
    assert batch.shape == (100, 28, 28, 1) and batch.dtype == tf.float32
    assert float(tf.reduce_min(batch)) == -1.0 and float(tf.reduce_max(batch)) == 1.0


def test_mnist_can_be_resized():
    images = load("mnist", batch_size=4, image_size=32)
    assert next(iter(images.stream())).shape == (4, 32, 32, 1)


def test_mnist_splits_part_the_digits_as_the_shipped_classifier_was_trained():
    from metrics import classifier

    def digits(images):  # each image's uint8 bytes
        return {np.round((i + 1) * 127.5).astype(np.uint8).tobytes() for i in images}

    train, test = load("mnist", 100, split="train"), load("mnist", 100, split="test")
    assert (train.count, test.count) == (4000, 1000)
    assert len(data.take(test, 1500)) == 1000  # an epoch at most, not the next one's start
    seen, unseen = digits(data.take(train)), digits(data.take(test))
    assert not seen & unseen and seen | unseen == digits(data.take(load("mnist", 100)))
    (train_images, train_labels), (held_out, _) = classifier.digits()
    assert digits(held_out) == unseen and digits(train_images) == seen
    assert np.bincount(data.take(load("mnist", 100, split="train", conditional=True))[1]
                       ).tolist() == np.bincount(train_labels).tolist()


@pytest.mark.parametrize("dataset, split, message", [
    ("mnist", "validation", "mnist has the splits train, test, not 'validation'"),
    ("fake", "train", "fake has no splits: mnist, tfds:NAME have"),
])
def test_a_split_a_dataset_does_not_have_is_refused(dataset, split, message):
    with pytest.raises(config.ConfigError, match=message):
        load(dataset, 10, split=split)


def test_epochs_are_reshuffled():
    images = load("fake", batch_size=500, image_size=8)  # 1000 images: 2 batches an epoch
    batches = [b.numpy() for b in images.stream().take(4)]
    first_epoch = np.concatenate(batches[:2])
    second_epoch = np.concatenate(batches[2:])
    assert not np.array_equal(first_epoch, second_epoch)
    key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))  # same images, other order
    assert key(first_epoch) == key(second_epoch)


def test_celeba_reads_prepared_tfrecords(tmp_path):
    write_shards(tmp_path, size=16)
    images = load("celeba", batch_size=10, image_size=16, data_dir=str(tmp_path))
    batch = next(iter(images.stream())).numpy()
    assert images.count == 10 and batch.shape == (10, 16, 16, 3)
    pixel_values = sorted(np.rint((batch[:, 0, 0, 0] + 1) * 127.5).astype(int))
    assert pixel_values == [10 * i for i in range(10)]  # every record once per epoch


def test_celeba_of_another_size_is_refused(tmp_path):
    write_shards(tmp_path, size=16)
    with pytest.raises(config.ConfigError, match="holds 16x16 images, not 64x64"):
        load("celeba", batch_size=2, data_dir=str(tmp_path))


def test_truncated_shard_is_named(tmp_path):
    write_shards(tmp_path, size=16)
    shard = tmp_path / "celeba-00001-of-00002.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(config.ConfigError, match="shard .*celeba-00001-of-00002.tfrecord has"):
        load("celeba", batch_size=2, image_size=16, data_dir=str(tmp_path))


def test_missing_celeba_says_which_commands_make_it(tmp_path):
    with pytest.raises(config.ConfigError, match=r"download\.sh, then python prepro\.py"):
        load("celeba", batch_size=2, data_dir=str(tmp_path / "nothing"))


def test_batch_larger_than_dataset_is_refused():
    with pytest.raises(config.ConfigError, match="larger than the dataset"):
        load("fake", batch_size=5000)


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
    images = load("folder", batch_size=5, image_size=16, data_dir=str(tmp_path), crop=108)
    batch = next(iter(images.stream()))
    assert images.count == 5 and batch.shape == (5, 16, 16, 3)
    assert -1.0 <= float(tf.reduce_min(batch)) and float(tf.reduce_max(batch)) <= 1.0


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(config.ConfigError, match="no .jpg, .jpeg, .png, .webp images found"):
        load("folder", batch_size=2, data_dir=str(tmp_path))


def test_tfds_sources_take_their_shape_from_the_dataset():
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=8):
        mnist = load("tfds:mnist", batch_size=4)
        assert (mnist.image_size, mnist.channels) == (28, 1)
        assert next(iter(mnist.stream())).shape == (4, 28, 28, 1)
        faces = load("tfds:celeb_a", batch_size=4, crop=108)
        assert (faces.image_size, faces.channels) == (64, 3)  # 218x178 is not square: 64
        assert next(iter(faces.stream())).shape == (4, 64, 64, 3)


def test_unprepared_tfds_dataset_says_how_to_prepare_it(tmp_path):
    with pytest.raises(config.ConfigError, match="tfds build mnist"):
        load("tfds:mnist", batch_size=4, data_dir=str(tmp_path))


def examples_of(loaded, start, n):
    """The first n elements of loaded.stream(start) as NumPy arrays: images, or (images,
    labels) when it is conditional."""
    found, total = [], 0
    for batch in loaded.stream(start):
        found.append(tf.nest.map_structure(lambda t: t.numpy(), batch))
        total += len(tf.nest.flatten(found[-1])[0])
        if total >= n:
            return tf.nest.map_structure(lambda *parts: np.concatenate(parts)[:n], *found)


def images_of(loaded, start, n):
    """The first n images of loaded.stream(start), as float32 pixels."""
    return examples_of(loaded, start, n)


ATTRIBUTES = ["Bald", "Smiling", "Male", "Young"]


def loaded_source(name, tmp_path, **options):
    """A small dataset of each source, batches of 3, labelled (a folder in class subfolders,
    shards with attributes) so that each can also be loaded conditional."""
    if name == "celeba":
        if not (tmp_path / config.MANIFEST).exists():
            write_shards(tmp_path, size=8, shards=3, per_shard=4, attributes=ATTRIBUTES)
        return load("celeba", batch_size=3, image_size=8, data_dir=str(tmp_path), **options)
    if name == "folder":
        if not any(tmp_path.iterdir()):
            rng = np.random.default_rng(0)
            for i in range(7):
                (tmp_path / "abc"[i % 3]).mkdir(exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (12, 10, 3), np.uint8)).save(
                    tmp_path / "abc"[i % 3] / f"{i}.png")
        return load("folder", batch_size=3, image_size=8, data_dir=str(tmp_path), **options)
    if name == "mnist":
        return load("mnist", batch_size=500, image_size=8, **options)
    return load(name, batch_size=3, image_size=8, **options)


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


@pytest.mark.parametrize("name", ["mnist", "celeba", "folder", "tfds:mnist"])
def test_the_labelled_stream_is_the_stream_with_labels_and_starts_at_any_image(tmp_path, name):
    """Conditional, the stream is the same images in the same order, and stream(start) with
    its labels is still the stream from the first image less its first start examples."""
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=10):
        count = loaded_source(name, tmp_path).count
        plain = images_of(loaded_source(name, tmp_path), 0, 2 * count + 10)
        labelled = loaded_source(name, tmp_path, conditional=True)
        images, labels = examples_of(labelled, 0, 2 * count + 10)
        np.testing.assert_array_equal(images, plain)
        assert len(np.unique(labels, axis=0)) > 1
        # Each image has one label in every epoch: were the labels in another order than their
        # images, an image would meet another label in the next epoch.
        pairs = {(image.tobytes(), label.tobytes()) for image, label in zip(images, labels)}
        assert len(pairs) == len({image.tobytes() for image in images})
        for start in (1, count - 2, count + 4, 2 * count + 1):
            tail_images, tail_labels = examples_of(labelled, start, 9)
            np.testing.assert_array_equal(tail_images, images[start:start + 9])
            np.testing.assert_array_equal(tail_labels, labels[start:start + 9])


def pixel_key(image):
    """An image of the stream, back to the uint8 pixels it was read from, as bytes."""
    return np.rint((image + 1) * 127.5).astype(np.uint8).tobytes()


def test_mnist_labels_are_the_digits_shown():
    digits, labels = data.mnist_digits()
    label_of = {image.tobytes(): label for image, label in zip(digits, labels)}
    assert len(label_of) == len(digits)  # each image tells its label
    loaded = load("mnist", batch_size=1000, conditional=True)
    assert loaded.labels == data.Labels("classes", tuple("0123456789"))
    images, got = examples_of(loaded, 0, 5000)
    assert got.dtype == np.int32 and got.shape == (5000,)
    assert [label_of[pixel_key(image)] for image in images] == list(got)
    assert sorted(label_of[pixel_key(image)] for image in images) == sorted(labels)  # an epoch


def test_folder_classes_are_its_subfolders_and_every_image_keeps_its_own(tmp_path):
    """Each image's grey level is 20 x its class + its number in the class; a class's images
    may lie deeper, a subfolder without images is no class, and an unreadable file is skipped
    with its label."""
    layout = {"cat": ["1.png", "2.jpg", "kittens/3.png"], "dog": ["1.png", "old/pup/2.webp"],
              "emu": ["1.png"]}
    for c, (folder, names) in enumerate(sorted(layout.items())):
        for i, name in enumerate(names):
            (tmp_path / folder / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((10, 10, 3), 20 * c + i, np.uint8)).save(
                tmp_path / folder / name, quality=100, lossless=True)
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png")
    loaded = load("folder", batch_size=2, image_size=10, data_dir=str(tmp_path),
                       conditional=True)
    assert loaded.labels == data.Labels("classes", ("cat", "dog", "emu"))
    images, labels = examples_of(loaded, 0, 6)  # the 6 readable images of the first epoch
    assert labels.dtype == np.int32
    grey = np.rint((images[:, 0, 0, 0] + 1) * 127.5).astype(int)
    assert sorted(zip(labels, grey)) == [(0, 0), (0, 1), (0, 2), (1, 20), (1, 21), (2, 40)]
    assert list(labels) == list(grey // 20)


def test_folder_without_class_subfolders_is_refused_for_labels(tmp_path):
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(config.ConfigError, match=r"from its subfolders, .*CLASS_NAME/\*\.png, "
                                                 r"but 1 images lie in .* \(e\.g\. a\.png\)"):
        load("folder", batch_size=1, data_dir=str(tmp_path), conditional=True)
    (tmp_path / "cat").mkdir()  # beside class subfolders, an image still has no class
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "cat" / "b.png")
    with pytest.raises(config.ConfigError, match="but 1 images lie in"):
        load("folder", batch_size=1, data_dir=str(tmp_path), conditional=True)
    assert load("folder", batch_size=1, data_dir=str(tmp_path)).count == 2  # no labels: fine


def test_tfds_labels_are_each_examples_class_label():
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=12):
        label_of = {example["image"].numpy().tobytes(): int(example["label"]) for example in
                    tfds.builder("mnist").as_dataset(split="train", shuffle_files=False)}
        assert len(label_of) == 12 and len(set(label_of.values())) > 1
        loaded = load("tfds:mnist", batch_size=4, conditional=True)
        assert loaded.labels == data.Labels("classes", tuple("0123456789"))
        images, labels = examples_of(loaded, 0, 12)
    assert labels.dtype == np.int32
    assert [label_of[pixel_key(image)] for image in images] == list(labels)
    assert sorted(map(pixel_key, images)) == sorted(label_of)  # each example once


def test_tfds_without_a_class_label_names_its_features():
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(config.ConfigError, match=r"tfds:celeb_a has no ClassLabel feature "
                                                     r"'label' \(its features: image, landmarks, "
                                                     r"attributes, identity\): it has none "
                                                     r"to condition on: choose a dataset"):
            load("tfds:celeb_a", batch_size=2, conditional=True)
        with pytest.raises(config.ConfigError, match="label_key: .*'image' .*choose one of label"):
            load("tfds:mnist", batch_size=2, conditional=True, label_key="image")


def test_celeba_attributes_are_chosen_by_name_in_the_order_asked(tmp_path):
    write_shards(tmp_path, size=8, shards=2, per_shard=5, attributes=ATTRIBUTES)
    load_chosen = lambda **kw: load("celeba", batch_size=5, image_size=8,
                                    data_dir=str(tmp_path), conditional=True, **kw)
    for chosen in [ATTRIBUTES, ["Young", "Bald"], "Male,Smiling"]:
        loaded = load_chosen(attributes=None if chosen is ATTRIBUTES else chosen)
        names = chosen.split(",") if isinstance(chosen, str) else chosen
        assert loaded.labels == data.Labels("attributes", tuple(names))
        images, labels = examples_of(loaded, 0, 10)
        assert labels.dtype == np.float32 and labels.shape == (10, len(names))
        numbers = np.rint((images[:, 0, 0, 0] + 1) * 127.5).astype(int) // 10
        columns = [ATTRIBUTES.index(n) for n in names]
        expected = [[shard_attributes(n, ATTRIBUTES)[c] for c in columns] for n in numbers]
        np.testing.assert_array_equal(labels, expected)
    with pytest.raises(config.ConfigError, match="attributes: unknown attribute 'Smile': "
                                                 "choose from Bald,Smiling,Male,Young"):
        load_chosen(attributes=["Smile"])
    with pytest.raises(config.ConfigError, match="attributes: Male is named twice"):
        load_chosen(attributes=["Male", "Bald", "Male"])


def test_celeba_records_without_attributes_are_refused_for_labels(tmp_path):
    write_shards(tmp_path, size=8)
    with pytest.raises(config.ConfigError, match="hold no attributes: put CelebA's "
                                                 "list_attr_celeba.txt beside the images and run "
                                                 "python prepro.py again"):
        load("celeba", batch_size=2, image_size=8, data_dir=str(tmp_path), conditional=True)


def test_labels_where_there_are_none_to_choose_are_refused():
    with pytest.raises(config.ConfigError, match="dataset: fake has no labels to condition on: "
                                                 "choose one of celeba, mnist, folder, tfds:NAME"):
        load("fake", batch_size=2, conditional=True)
    with pytest.raises(config.ConfigError, match="attributes: it chooses the labels of celeba: "
                                                 "mnist has no use for it"):
        load("mnist", batch_size=2, conditional=True, attributes=["Smiling"])
    with pytest.raises(config.ConfigError, match="label_key: it chooses the labels of tfds:NAME"):
        load("mnist", batch_size=2, conditional=True, label_key="label")
    plain = load("fake", batch_size=2)
    assert plain.labels is None and next(iter(plain.stream())).shape == (2, 64, 64, 3)


def test_the_fingerprint_changes_with_the_images_and_with_nothing_else(tmp_path):
    """What the real images' statistics are cached under: another file, or a rewritten one, is
    other data; loading again, with another batch size or seed, is the same."""
    folder, shards = tmp_path / "folder", tmp_path / "shards"
    folder.mkdir(), shards.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), i, np.uint8)).save(folder / f"{i}.png")
    write_shards(shards, size=8)
    loads = {"folder": lambda **kw: load("folder", data_dir=str(folder), **kw),
             "celeba": lambda **kw: load("celeba", data_dir=str(shards), image_size=8, **kw),
             "mnist": lambda **kw: load("mnist", **kw)}
    before = {name: loader(batch_size=2).fingerprint for name, loader in loads.items()}
    assert len(set(before.values())) == 3
    for name, loader in loads.items():
        assert loader(batch_size=3, seed=5).fingerprint == before[name]
    Image.fromarray(np.full((20, 20, 3), 9, np.uint8)).save(folder / "1.png")
    assert loads["folder"](batch_size=2).fingerprint != before["folder"]
    manifest = json.loads((shards / config.MANIFEST).read_text())
    (shards / config.MANIFEST).write_text(json.dumps({**manifest, "crop": 100}))
    assert loads["celeba"](batch_size=2).fingerprint != before["celeba"]


def test_max_images_trains_on_the_same_subset_whatever_the_seed_and_holds_the_rest_out():
    subsets = [load("mnist", 100, max_images=300, seed=seed, conditional=True) for seed in (0, 7)]
    (a, a_labels), (b, b_labels) = (data.take(d) for d in subsets)
    assert len(a) == 300 and subsets[0].count == 300
    assert not np.array_equal(a, b)  # read in each seed's order
    order = lambda x: np.lexsort(x.reshape(len(x), -1).T)
    np.testing.assert_array_equal(a[order(a)], b[order(b)])  # the same images
    np.testing.assert_array_equal(a_labels[order(a)], b_labels[order(b)])  # with their labels
    held, held_labels = subsets[0].held_out
    assert held.shape == (data.HELD_OUT, 28, 28, 1) and len(held_labels) == data.HELD_OUT
    everything, labels = data.take(load("mnist", 100, conditional=True))
    rows = {image.tobytes(): label for image, label in zip(everything, labels)}
    assert all(rows[image.tobytes()] == label for image, label in zip(held, held_labels))
    assert not {image.tobytes() for image in held} & {image.tobytes() for image in a}


def test_max_images_of_all_the_images_holds_none_out(tmp_path):
    write_shards(tmp_path, size=16, shards=2, per_shard=5)
    images = load("celeba", 2, data_dir=str(tmp_path), image_size=16, max_images=10)
    assert images.count == 10 and images.held_out is None
    whole = data.take(load("celeba", 2, data_dir=str(tmp_path), image_size=16))
    part = data.take(images)
    order = lambda x: np.lexsort(x.reshape(len(x), -1).T)
    np.testing.assert_array_equal(whole[order(whole)], part[order(part)])

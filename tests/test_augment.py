"""DiffAugment's policies do what they say, image by image; p chooses which images; the
randomness is the seed's alone and splits across replicas as one device's; ADA's p moves as
ADA's."""
import numpy as np
import pytest
import tensorflow as tf

import augment

SEED = tf.constant([3, 4], tf.int64)


def images(n=64, size=16, channels=3):
    """Images with no zero pixel, so that whatever is 0 after was made so."""
    rng = np.random.default_rng(0)
    values = rng.uniform(0.1, 1.0, (n, size, size, channels)) * rng.choice([-1, 1], (n, 1, 1, 1))
    return tf.constant(values, tf.float32)


def test_translation_shifts_each_image_whole_within_an_eighth_and_pads_with_zero():
    x = images()
    y = augment.augment(x, ("translation",), SEED).numpy()
    most, shifts = 2, set()  # 16 / 8
    for before, after in zip(x.numpy(), y):
        found = [(dy, dx) for dy in range(-most, most + 1) for dx in range(-most, most + 1)
                 if np.array_equal(after, shift(before, dy, dx))]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 10  # the images are shifted each their own way


def shift(image, dy, dx):
    size = image.shape[0]
    padded = np.pad(image, ((size, size), (size, size), (0, 0)))
    return padded[size - dy:2 * size - dy, size - dx:2 * size - dx]


def test_cutout_zeroes_one_square_of_half_the_side_and_nothing_else():
    x = images()
    y = augment.augment(x, ("cutout",), SEED).numpy()
    for before, after in zip(x.numpy(), y):
        cut = after != before
        assert np.all(after[cut] == 0)
        rows, cols = np.nonzero(cut.any(axis=2))
        assert cut.all(axis=2)[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        # a square of side 8, or what of it lies inside the image (at least a quarter of it)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 4 <= height <= 8 and 4 <= width <= 8
        assert (height == 8 or rows.min() == 0 or rows.max() == 15)
        assert (width == 8 or cols.min() == 0 or cols.max() == 15)


def test_color_is_one_affine_map_of_each_grey_image():
    """On one channel saturation does nothing, and brightness then contrast are y = a x + b
    with a in [0.5, 1.5]: each image its own a."""
    x = images(channels=1)
    y = augment.augment(x, ("color",), SEED).numpy()
    slopes = []
    for before, after in zip(x.numpy().reshape(len(y), -1), y.reshape(len(y), -1)):
        (a, b), residual, *_ = np.linalg.lstsq(np.stack([before, np.ones_like(before)], 1),
                                               after, rcond=None)
        assert residual[0] < 1e-8 and 0.5 <= a <= 1.5
        slopes.append(a)
    assert np.std(slopes) > 0.1


def test_p_chooses_which_images_are_augmented():
    x = images(n=400)
    policy = ("translation", "cutout")
    np.testing.assert_array_equal(augment.augment(x, policy, SEED, p=0.0), x)
    np.testing.assert_array_equal(augment.augment(x, policy, SEED, p=1.0),
                                  augment.augment(x, policy, SEED))
    changed = np.any(augment.augment(x, ("cutout",), SEED, p=0.3).numpy() != x.numpy(),
                     axis=(1, 2, 3))
    assert 0.22 < changed.mean() < 0.38


def test_the_seed_alone_decides_and_replicas_take_their_rows_of_one_draw():
    x = images(n=8)
    every = augment.POLICIES
    a, b = (augment.augment(x, every, SEED, p=0.5) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, augment.augment(x, every, SEED + 1, p=0.5))
    parts = [augment.augment(x[i:i + 4], every, SEED, p=0.5, first=i, total=8) for i in (0, 4)]
    np.testing.assert_array_equal(a, tf.concat(parts, 0))
    compiled = tf.function(lambda x: augment.augment(x, every, SEED, p=0.5))
    np.testing.assert_array_equal(a, compiled(x))


def test_gradients_pass_through_to_the_pixels_kept():
    """Differentiable: d(sum)/dx is 1 where a pixel is kept and 0 where it was cut or padded."""
    x = images(n=8)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = augment.augment(x, ("cutout",), SEED)
        total = tf.reduce_sum(y)
    gradient = tape.gradient(total, x).numpy()
    np.testing.assert_array_equal(gradient, (y.numpy() == x.numpy()).astype(np.float32))


def test_unknown_policy_is_refused_and_the_order_is_fixed():
    assert augment.check_policy(["cutout", "translation"]) == ("translation", "cutout")
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        augment.check_policy(["flip"])


@pytest.mark.parametrize("r_t, kimg, expected", [(0.9, 500, 0.3 + 0.002), (0.1, 500, 0.3 - 0.002),
                                                 (0.9, 100, 0.3 + 0.01)])
def test_ada_moves_p_by_the_images_seen_towards_the_target(r_t, kimg, expected):
    p = augment.adjust(tf.constant(0.3), tf.constant(r_t), 0.6, 1000.0, kimg)
    np.testing.assert_allclose(float(p), expected, rtol=1e-6)
    assert float(augment.adjust(tf.constant(0.0), tf.constant(0.1), 0.6, 1000.0)) == 0.0
    assert float(augment.adjust(tf.constant(1.0), tf.constant(0.9), 0.6, 1000.0)) == 1.0

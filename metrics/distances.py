"""FID and KID, in float64 NumPy, from the features of real and generated images.

FID (Heusel et al. 2017) fits a Gaussian to each side's features and measures the Fréchet
distance between the two. KID (Bińkowski et al. 2018) is the squared maximum mean discrepancy of
a polynomial kernel: unbiased, so it needs no Gaussian and fewer images. Statistics gathers what
both need, and the features that precision and recall (precision_recall.py) compare, from a
stream of feature batches, in memory that stops growing at KEPT features.
"""
import numpy as np

KID_SUBSETS = 100  # Bińkowski et al.: mean and std of MMD^2 over 100 subsets of 1,000 images
KID_SUBSET_SIZE = 1000
KID_KEPT = 10_000  # the features per side that KID draws its subsets from: the first ones kept
# Features kept per side, in float32: the networks give float32, so KID sees the same values as
# when they were float64, in half the memory. Precision and recall compare them all (50,000 a
# side, as stylegan2-ada's pr50k3); FID needs only running sums. 50,000 Inception features (2048
# each) take 410 MB a side.
KEPT = 50_000
PSD_TOLERANCE = 1e-6  # eigenvalues below -this x the largest are no rounding error


def psd_eigh(matrix, name):
    """Eigenvalues and eigenvectors of a covariance matrix, the eigenvalues of its null space
    set to zero.

    Where the matrix is singular (fewer images than features, or a feature that never varies),
    rounding leaves eigenvalues of about +-eps x the largest instead of zeros; their square
    roots would add up to a visible error, so everything below np.linalg.matrix_rank's
    tolerance is made zero. A clearly negative eigenvalue means the matrix is no covariance and
    the distance would be wrong: stop instead (pytorch-fid checks the imaginary part of scipy's
    sqrtm for the same reason).
    """
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    largest = np.abs(eigenvalues).max()
    if eigenvalues[0] < -PSD_TOLERANCE * largest:
        raise ValueError(f"{name} has the eigenvalue {eigenvalues[0]:.3g}: not a covariance matrix")
    null = eigenvalues < largest * len(matrix) * np.finfo(np.float64).eps
    return np.where(null, 0.0, eigenvalues), eigenvectors


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)), in float64.

    tr(sqrt(S1 S2)) is computed as tr(sqrt(R S2 R)) with R = sqrt(S1): the same eigenvalues
    (R S2 R is similar to S1 S2), but R S2 R is symmetric and positive semi-definite, so they
    are real and come out stably even when S1 or S2 is singular.
    """
    mu1, sigma1, mu2, sigma2 = (np.asarray(a, np.float64) for a in (mu1, sigma1, mu2, sigma2))
    for name, value in [("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)]:
        if not np.isfinite(value).all():
            raise ValueError(f"{name} is not finite (inf or nan)")
    eigenvalues, eigenvectors = psd_eigh(sigma1, "sigma1")
    root1 = (eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T
    eigenvalues, _ = psd_eigh(root1 @ sigma2 @ root1, "sqrt(sigma1) sigma2 sqrt(sigma1)")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(eigenvalues).sum())


def polynomial_kernel(x, y):
    """k(x, y) = (x.y / d + 1)^3, KID's kernel."""
    k = x @ y.T / x.shape[1] + 1.0
    return k * k * k  # numpy's ** 3 goes through pow(), and took most of KID's time


def mmd2(x, y):
    """Unbiased MMD^2 between the samples x and y: the k(x_i, x_i) terms are left out of the
    within-sample means, whose expectation they would bias."""
    m, n = len(x), len(y)
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    return ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
            + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
            - 2 * polynomial_kernel(x, y).mean())


def kid(real, generated, subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=0):
    """KID: mean and standard deviation of mmd2 over random subsets of each side (at most as
    large as the smaller side)."""
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    size = min(subset_size, len(real), len(generated))
    rng = np.random.default_rng(seed)
    values = [mmd2(real[rng.choice(len(real), size, replace=False)],
                   generated[rng.choice(len(generated), size, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


class Statistics:
    """FID's mean and covariance from running float64 sums, so memory stays flat in the number
    of images; and the first KEPT features, for KID and for precision and recall.

    The sums are taken around the first batch's mean: the covariance is then a difference of
    numbers of the size of the spread, not of the (larger) mean, and loses no precision.
    """

    def __init__(self, kept=KEPT):
        self.count, self.shift, self.sum, self.outer = 0, None, 0.0, 0.0
        self.kept, self.room = [], kept

    def add(self, features):
        features = np.asarray(features, np.float64)
        if self.shift is None:
            self.shift = features.mean(axis=0)
        centred = features - self.shift
        self.count += len(features)
        self.sum = self.sum + centred.sum(axis=0)
        self.outer = self.outer + centred.T @ centred
        # The first ones are as random a draw as any: real images come shuffled, z at random.
        self.kept.append(features[:self.room].astype(np.float32))
        self.room -= len(self.kept[-1])

    def mu_sigma(self):
        mean = self.sum / self.count
        sigma = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return self.shift + mean, sigma

    def kept_features(self):
        self.kept = [np.concatenate(self.kept)]  # in place of the pieces: held once, not twice
        return self.kept[0]

    def state(self):
        """The arrays the statistics are made of, to save them; from_state makes them again,
        to the bit (the sums are saved, not the covariance made from them)."""
        return dict(count=np.int64(self.count), shift=self.shift, sum=self.sum,
                    outer=self.outer, kept=self.kept_features())

    @classmethod
    def from_state(cls, state):
        statistics = cls(kept=0)  # complete: nothing more is added
        statistics.count = int(state["count"])
        statistics.shift, statistics.sum, statistics.outer = (
            state["shift"], state["sum"], state["outer"])
        statistics.kept = [state["kept"]]
        return statistics

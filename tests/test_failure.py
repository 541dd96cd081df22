"""training/failure.py: when a run is said to have failed, and when not."""
from training import failure

HEALTHY = {"D(G(z))": 0.3, "d_loss": 1.1}
WON = {"D(G(z))": 0.0, "d_loss": 0.0}


def test_the_discriminator_has_won_only_when_it_lasts():
    watch = failure.Watch()
    said = [watch.losses(step, WON if step >= 100 else HEALTHY) for step in range(10, 400, 10)]
    steps = [step for step, message in zip(range(10, 400, 10), said) if message]
    assert steps == [100 + failure.WON_STEPS]  # named once, when it has lasted
    assert "since step 100" in said[steps[0] // 10 - 1]


def test_a_stretch_of_winning_that_ends_is_no_failure():
    watch = failure.Watch()
    for step in range(10, 1000, 10):
        won = (step // 10) % (failure.WON_STEPS // 10) != 0  # broken before it lasts
        assert watch.losses(step, WON if won else HEALTHY) is None
    # A winning D whose loss is not near zero (it is still learning) is not a failure either.
    assert all(watch.losses(step, {"D(G(z))": 0.0, "d_loss": 0.5}) is None
               for step in range(1000, 2000, 10))


def score(step, precision, recall):
    return {"step": step, "precision": precision, "recall": recall}


def test_mode_collapse_is_recall_lost_while_precision_holds():
    watch = failure.Watch()
    results = {250: score(250, 0.45, 0.40), 500: score(500, 0.50, 0.62),
               750: score(750, 0.49, 0.70)}
    assert watch.scores(results) is None  # learning
    results[1000] = score(1000, 0.20, 0.30)  # both fall: worse images, not fewer kinds
    assert watch.scores(results) is None
    results[1250] = score(1250, 0.55, 0.30)  # fewer kinds, each as good
    said = watch.scores(results)
    assert said.startswith("mode collapse: recall 0.30 at step 1250, against 0.70 at step 750")
    assert watch.scores(results) is None  # named once

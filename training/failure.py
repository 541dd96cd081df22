"""A run that has failed, told from one that trains: the two failures GAN users meet most.

The discriminator has won: D(G(z)) near 0 and D's loss near 0, step after step. D then tells
every fake image apart with certainty, the gradient the generator gets through it vanishes, and
the run trains no further however long it goes on (soumith/ganhacks #36). Seen only when it
lasts: a healthy run can have a few such steps.

Mode collapse: recall (the share of real images the samples come near) far below its best while
precision holds. The generator then draws fewer kinds of image, each still good.

The thresholds come from measured runs, healthy and made to fail (RESULTS.md, "Runs that
fail"). The watch reads only what the loop reads anyway: the numbers of each log line, and each
score.
"""
import dataclasses

WON_FAKE = 0.01  # D(G(z)) below this
WON_LOSS = 0.05  # and d_loss below this
WON_STEPS = 200  # at every log line for this many steps
COLLAPSE_RECALL = 0.5  # recall below this share of its best
HOLD_PRECISION = 0.8  # while precision stays above this share of its value at that best

ADVICE = {
    "won": "Try a lower --lr, --label_smoothing 0.1, or more G updates per D update "
           "(--g_steps 3)",
    "collapse": "Try a lower --lr, or go back to the best checkpoint (--checkpoint best)",
}


@dataclasses.dataclass
class Watch:
    """What a run has shown so far, and the failures it has named (each once)."""
    won_since: int = None  # the first step of the current stretch of D winning
    named: set = dataclasses.field(default_factory=set)

    def losses(self, step, values):
        """After a log line: the failure it completes, in words, or None."""
        if values["D(G(z))"] < WON_FAKE and values["d_loss"] < WON_LOSS:
            self.won_since = step if self.won_since is None else self.won_since
        else:
            self.won_since = None
        if self.won_since is None or step - self.won_since < WON_STEPS:
            return None
        return self.name("won", (
            f"the discriminator has won: D(G(z)) {values['D(G(z))']:.3f} and d_loss "
            f"{values['d_loss']:.3f} at every log line since step {self.won_since}, so the "
            "generator gets almost no gradient and learns nothing more"))

    def scores(self, results):
        """After a score: the failure the run's scores so far show ({step: result}), or None."""
        best = max(results.values(), key=lambda r: r["recall"])
        latest = results[max(results)]
        if not (latest["recall"] < COLLAPSE_RECALL * best["recall"]
                and latest["precision"] >= HOLD_PRECISION * best["precision"]):
            return None
        return self.name("collapse", (
            f"mode collapse: recall {latest['recall']:.2f} at step {latest['step']}, against "
            f"{best['recall']:.2f} at step {best['step']}, while precision holds "
            f"({latest['precision']:.2f}, against {best['precision']:.2f}): the generator draws "
            "fewer kinds of image"))

    def name(self, kind, what):
        if kind in self.named:
            return None
        self.named.add(kind)
        return f"{what}. {ADVICE[kind]}"

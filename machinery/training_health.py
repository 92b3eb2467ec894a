"""A training-health line: a run that says, once and in plain words, when its discriminator is
learning the training images by heart, or has won.

Both are read from what the step already logs, over the last WINDOW steps:
  memorising  D is sure of nearly every real image: the mean sign of its logits on them
              (d_real_sign, ADA's r_t) stays above MEMORISING_SIGN. On a few hundred pictures it
              climbs there within a few thousand steps, and the generator then collapses or
              oscillates; on thousands it stays near 0.2-0.4. Said only without augmentation,
              the remedy it names.
  won         D's loss sits near its floor (with one-sided label smoothing s the real images'
              labels are 1 - s, so its cross-entropy cannot go below the binary entropy of
              1 - s: 0.325 nats at s = 0.1) while G's loss keeps rising: G gets no useful
              gradient.
A resume picks the steps up from metrics.csv (`resume`), so a run trained in chunks shorter than
WINDOW is watched as one run would be; each process says a line at most once.
"""
import collections
import math

WINDOW = 200             # steps a condition must hold over
MEMORISING_SIGN = 0.9    # the bound on d_real_sign
NEAR_FLOOR = 0.1         # nats above D's floor that count as "near"
AUGMENT_HINT = "--augment translation,cutout,color"


def loss_floor(smooth):
    """The least D's loss can be: the binary entropy of the real label 1 - smooth (nats)."""
    label = 1.0 - smooth
    return -sum(q * math.log(q) for q in (label, 1.0 - label) if q > 0)


class TrainingHealth:
    """Watches each step's d_loss, g_loss and d_real_sign; `observe` returns a line to print the
    first time a condition holds, else None."""

    def __init__(self, smooth, augmenting):
        self.floor, self.augmenting = loss_floor(smooth), augmenting
        self.recent = collections.deque(maxlen=2 * WINDOW)  # (d_loss, g_loss, d_real_sign)
        self.said = set()

    def resume(self, rows):
        """Fills the window from metrics.csv's rows (metrics.read_metrics dicts, oldest first, up
        to the resumed step). A row of losses holds d_real_sign's mean over the steps since the
        row before it, so it stands for each of those steps: exact for d_real_sign's window mean,
        one sampled step for the losses. Evaluation rows (no losses) are passed over; a row
        without d_real_sign (a layout older than the line) or after a gap longer than WINDOW
        ends what came before it."""
        previous = 0
        for row in rows:
            if "d_loss" not in row or "g_loss" not in row:
                continue
            span, previous = row["step"] - previous, row["step"]
            if "d_real_sign" not in row:
                self.recent.clear()
                continue
            if not 0 < span <= WINDOW:
                self.recent.clear()
                span = 1
            self.recent.extend([(row["d_loss"], row["g_loss"], row["d_real_sign"])] * span)

    def observe(self, d_loss, g_loss, d_real_sign):
        self.recent.append((d_loss, g_loss, d_real_sign))
        if len(self.recent) < WINDOW:
            return None
        last = list(self.recent)[-WINDOW:]
        if "memorising" not in self.said and not self.augmenting and \
                _mean(last, 2) > MEMORISING_SIGN:
            self.said.add("memorising")
            return (f"health: the discriminator is telling the training images apart from "
                    f"everything else (d_real_sign, the mean sign of its logits on them, has "
                    f"stayed above {MEMORISING_SIGN} for {WINDOW} steps): it is learning them by "
                    f"heart, and the generator will stop improving. With a few thousand images "
                    f"or fewer, try {AUGMENT_HINT}")
        if "won" not in self.said and len(self.recent) == 2 * WINDOW and \
                _mean(last, 0) < self.floor + NEAR_FLOOR and \
                _mean(last, 1) > _mean(list(self.recent)[:WINDOW], 1):
            self.said.add("won")
            hint = "" if self.augmenting else f"; with few images, try {AUGMENT_HINT}"
            return (f"health: the discriminator has won: its loss has stayed near its floor "
                    f"({self.floor:.3f}) for {WINDOW} steps while the generator's keeps rising, "
                    f"so the generator gets no useful gradient{hint}")
        return None


def _mean(rows, column):
    return sum(row[column] for row in rows) / len(rows)

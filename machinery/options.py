"""What the entry points share on the command line: the help layout, the settings line, counts,
and the bounds every numeric flag is checked against when it is parsed.

Plain Python, no TensorFlow: every entry point builds its parser from this and the
hyperparameters, and parses its flags before it imports TensorFlow, so `--help` and a mistyped
flag answer at once instead of after seconds of importing.
"""
import argparse
import math

from machinery import hyperparameters


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default once: not for switches or unset values, nor where the help says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False  # (0 == False, yet shown)
        if unset or action.default == argparse.SUPPRESS or "default" in text:
            return text
        return super()._get_help_string(action)


def new_parser(description):
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def plural(count, noun, plural_noun=None):
    """'1 epoch', '2 epochs', '1,000 images'."""
    word = noun if count == 1 else (plural_noun or noun + "s")
    return f"{count:,} {word}"


def _shown(value):
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def settings_lines(parser, args, extra=None):
    """The resolved settings, one line per group of flags (`  model: --z-dim 100 --lr 0.0002
    ...`), as flags a user could type again; switches that are off are left out. `extra` (a
    {title: text} dict) adds lines of what was derived, such as the data's size."""
    lines = []
    for group in parser._action_groups:
        words = []
        for action in group._group_actions:
            if not action.option_strings or action.dest == "help":
                continue
            value = getattr(args, action.dest, None)
            flag = action.option_strings[-1]
            if isinstance(action, argparse._StoreTrueAction):
                if value:
                    words.append(flag)
            elif value is not None:
                words.append(f"{flag} {_shown(value)}")
        if words:
            lines.append(f"  {group.title.split(' (')[0]}: {' '.join(words)}")
    for title, text in (extra or {}).items():
        lines.append(f"  {title}: {text}")
    return lines


# --- Bounds, checked when the flags are parsed ------------------------------------------------
class Bounded:
    """An argparse `type`: a number within bounds, else argparse's one-line error with the reason.

    Nothing out of bounds reaches NumPy, scikit-learn or TensorFlow's C++, which answer a
    negative seed with a traceback and a negative thread count with an abort.
    """

    def __init__(self, kind, low, high, why, low_open=False, high_open=False):
        self.kind, self.low, self.high, self.why = kind, low, high, why
        self.low_open, self.high_open = low_open, high_open
        self.__name__ = kind.__name__  # argparse names the type in "invalid int value"

    def range(self):
        """'0..4,294,967,295' for integers, '[0, 1)' for floats."""
        if self.kind is int:
            return f"{self.low:,}..{self.high:,}"
        return "([{low:g}, {high:g}])".format(low=self.low, high=self.high).replace(
            "([", "(" if self.low_open else "[").replace("])", ")" if self.high_open else "]")

    def __call__(self, text):
        try:
            value = self.kind(text)
        except ValueError:
            what = "an integer" if self.kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        below = value <= self.low if self.low_open else value < self.low
        above = value >= self.high if self.high_open else value > self.high
        if below or above or (self.kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be in {self.range()}, not {text} ({self.why})")
        return value


def bounded_int(low, high, why):
    """An argparse type for an integer in low..high; `why` says what the bounds protect."""
    return Bounded(int, low, high, why)


def bounded_float(low, high, why, low_open=False, high_open=False):
    """An argparse type for a finite float in [low, high] (or open at either end)."""
    return Bounded(float, low, high, why, low_open, high_open)


SEED = bounded_int(0, 2 ** 32 - 1, "NumPy refuses negative seeds; 32 bits is what every "
                                   "random generator here takes")
THREADS = bounded_int(0, 1024, "0 is TensorFlow's choice; its C++ aborts on a negative count, "
                               "and no machine needs more than 1,024")
STEPS = bounded_int(1, 2 ** 62, "the step counter is an int64 in the graph and the checkpoints")
EPOCHS = bounded_int(1, 10 ** 6, "a million epochs of SVHN take years: a larger number is a typo")
BATCH_SIZE = bounded_int(1, 32768, "the generator's 16x16x128 layer holds 32,768 values an "
                                   "image; past 2^30 in one tensor TensorFlow's CPU kernels risk "
                                   "int32 index overflow, and memory runs out first")
DECAY = bounded_float(0.0, 1.0, "0 is off; a decay of 1 never moves the average",
                      high_open=True)


class ImageSize(Bounded):
    """An argparse type: an image side the networks can be built at (hyperparameters' rule):
    within MIN_IMAGE_SIZE..MAX_IMAGE_SIZE, and a power of two."""

    def __init__(self):
        super().__init__(int, hyperparameters.MIN_IMAGE_SIZE, hyperparameters.MAX_IMAGE_SIZE,
                         "a power of two; below 16 the networks are no longer the DCGAN "
                         "architecture, 128 is the largest size measured and tested")

    def __call__(self, text):
        value = super().__call__(text)
        problem = hyperparameters.image_size_problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value


IMAGE_SIZE = ImageSize()


def augment_policies(text):
    """An argparse type: a comma list of augmentation policies (hyperparameters')."""
    try:
        return list(hyperparameters.augment_policies(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class AugmentProbability(Bounded):
    """An argparse type: a probability in [0, 1], or the word hyperparameters.AUGMENT_ADAPTIVE."""

    def __init__(self):
        super().__init__(float, 0.0, 1.0, f"a probability; or {hyperparameters.AUGMENT_ADAPTIVE}: "
                                          f"steered as ADA steers it")

    def __call__(self, text):
        if text == hyperparameters.AUGMENT_ADAPTIVE:
            return text
        try:
            float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor "
                                             f"{hyperparameters.AUGMENT_ADAPTIVE!r}") from None
        return super().__call__(text)


AUGMENT_P = AugmentProbability()
AUGMENT_TARGET = bounded_float(0.0, 1.0, "a mean of signs that is neither 'never' nor 'always'",
                               low_open=True, high_open=True)


def batch_size_problem(batch_size, image_size):
    """Why a batch is too large for the networks at `image_size`, or None: BATCH_SIZE's reason,
    one tensor past 2^30 values, for the largest layer at that size."""
    limit = 2 ** 30 // hyperparameters.largest_layer_values(image_size)
    if batch_size > limit:
        return (f"at --image-size {image_size} it must be at most {limit:,}: the networks' "
                f"largest layer holds {hyperparameters.largest_layer_values(image_size):,} "
                f"values an image, and past 2^30 in one tensor TensorFlow's CPU kernels risk "
                f"int32 index overflow")
    return None


def add_run_group(parser, raw_help=None):
    """The flags that name what a tool reads: --run, --checkpoint and (with `raw_help`, what
    --raw does there) --raw."""
    group = parser.add_argument_group("the run")
    group.add_argument("--run", required=True, help="run directory of train.py")
    group.add_argument("--checkpoint", default=None,
                       help="a checkpoint prefix to use instead of the run's newest, or 'best': "
                            "the best one a run trained with --eval-every kept")
    if raw_help:
        group.add_argument("--raw", action="store_true",
                           help=f"a run trained with --g-ema: {raw_help}")

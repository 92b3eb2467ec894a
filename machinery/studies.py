"""The measurements docs/measuring.md and docs/augmentation.md publish, from the command line (run
from the project folder):

  python -m machinery.studies spaces RUN[@CHECKPOINT] ...   the flat-folder feature spaces against
                                                            the class-based numbers
  python -m machinery.studies ladder --dataset mnist-sample  the same on real images made worse
                                                            step by step (no training needed)
  python -m machinery.studies sample-sizes --run RUN        KID and FD at 500, 1,000, 5,000 samples
  python -m machinery.studies curve --run RUN               an --eval-every run's numbers by epoch
  python -m machinery.studies digits RUN[@CHECKPOINT] ...   runs on folders of mnist-sample digits
                                                            of any size, scored alike

`spaces` takes runs of one labeled folder (the digit folder of docs/data.md: runs of different
quality, such as checkpoints after 1, 2, 5 and 10 epochs, with and without augmentation): each
RUN, or RUN@CHECKPOINT (a name in its checkpoints/ folder, such as model-195 or best). It scores
each with the folder's classifier (what evaluate.py gives a labeled folder) and in each candidate
space of feature_spaces.SPACES (and Inception's with --inception-graph), as a flat folder would
be, and gives the rank correlation (Spearman, and Kendall's tau) of each space's Frechet distance
and KID with the classifier's. A space that ranks the runs as the classes do has correlations
near 1. Each prints a table and, with --out, writes its numbers as JSON.
"""
import argparse
import json
import os
import sys

import numpy as np
import scipy.stats

from machinery import quiet_start

if __name__ == "__main__":
    quiet_start.import_tensorflow()  # TensorFlow's start-up chatter kept off the terminal

import data  # noqa: E402  (TensorFlow: after the filter)
from machinery import (classifiers, durable, errors, evaluation, feature_cache,  # noqa: E402
                       feature_spaces, hyperparameters, image_rows, inception, kid, metrics,
                       near_copies, pictures, quality, run_directory, sampling, training_health)


def correlations(reference, values):
    """(Spearman's rho, Kendall's tau) of two sequences of numbers; None for fewer than 3."""
    if len(reference) < 3:
        return None
    return (float(scipy.stats.spearmanr(reference, values)[0]),
            float(scipy.stats.kendalltau(reference, values)[0]))


def distances(features, real_features, seed, num_subsets=kid.NUM_SUBSETS):
    """{'frechet_distance', 'kid', 'kid_std'} of two feature sets."""
    kid_mean, kid_std = kid.kernel_distance(features, real_features, num_subsets, seed=seed)
    return {"frechet_distance": quality.frechet_distance(features, real_features),
            "kid": kid_mean, "kid_std": kid_std}


def candidate_spaces(graph=None):
    """The candidate feature spaces: every one of feature_spaces.SPACES, and Inception's."""
    spaces = [kind() for kind in feature_spaces.SPACES.values()]
    if graph:
        spaces.append(inception.InceptionFeatures(graph))
    return spaces


def _space_size(space):
    return None if isinstance(space, inception.InceptionFeatures) else data.IMAGE_SIZE


def parse_item(item):
    """'RUN@CHECKPOINT' -> (RunDir, checkpoint prefix or None)."""
    path, _, checkpoint = item.partition("@")
    run = run_directory.RunDir(path)
    if checkpoint and checkpoint != "best" and os.sep not in checkpoint:
        checkpoint = os.path.join(run.checkpoint_dir, checkpoint)
    return run, checkpoint or None


def score_spaces(items, num, seed, graph=None):
    """The rows of `spaces`: each item's class-based numbers and its numbers in each space."""
    runs = [parse_item(item) for item in items]
    configs = [run.read_config() for run, _ in runs]
    if len({config.get("data_fingerprint") for config in configs}) != 1:
        raise ValueError("the runs must be of one labeled folder (one data_fingerprint)")
    dataset, root, data_dir, verify = evaluation.trained_data(configs[0])
    evaluation.check_num(num, dataset, root)
    if not feature_spaces.is_labeled(dataset):
        raise ValueError("the runs' folder has no classes: the class-based numbers need them")
    classifier, _ = feature_spaces.scorer(dataset, root, data_dir, verify=verify)
    spaces = [classifier, *candidate_spaces(graph)]
    rows = quality.real_rows(len(dataset.images), num, seed)
    real = {space.name: feature_cache.real_outputs(
        feature_cache.cache_path(dataset, root, data_dir, space.key), dataset.images, rows,
        space.predict, size=_space_size(space)) for space in spaces}
    table = []
    try:
        for item, (run, checkpoint) in zip(items, runs):
            images = data.to_uint8(sampling.sample_images(run, num, seed, checkpoint).images)
            entry = {"run": item, "class-based": quality.quality(
                classifier, images, image_rows.read_rows(dataset.images, rows), seed,
                real[classifier.name])}
            for space in spaces[1:]:
                size = _space_size(space)
                features = space.predict(image_rows.resize(images, size) if size else images)[1]
                entry[space.name] = distances(features, real[space.name][1], seed)
            table.append(entry)
            print(f"{item}: {json.dumps(entry, default=float)}", flush=True)
    finally:
        for space in spaces:
            space.close()
    return table, [space.name for space in spaces[1:]]


def space_summary(table, names):
    """Lines: each space's rank correlations with the class-based numbers."""
    classes = [entry["class-based"] for entry in table]
    lines, summary = [], {}
    for name in names:
        found = {f"{mine} vs class {theirs}": correlations(
            [sign * entry[theirs] for entry in classes],
            [entry[name][mine] for entry in table])
            for mine, theirs, sign in (("frechet_distance", "frechet_distance", 1),
                                       ("kid", "kid", 1),
                                       ("frechet_distance", "classifier_score", -1))}
        summary[name] = found
        lines.append(f"{name}: " + ", ".join(
            f"{what} rho {value[0]:+.3f} tau {value[1]:+.3f}" if value else f"{what} n/a"
            for what, value in found.items()))
    return lines, summary


# --- The ladder: real images made worse, step by step -----------------------------------------
def _blurred(images, radius):
    from PIL import Image, ImageFilter

    return np.stack([np.asarray(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
                                .filter(ImageFilter.GaussianBlur(radius))).reshape(image.shape)
                     for image in images])


def ladder_conditions(images, labels, num, rng):
    """{condition: uint8 images}: `num` real images as they are, with noise, blurred, and drawn
    from fewer classes (modes dropped), each a step worse than the one before."""
    conditions = {"real": images[:num]}
    for sigma in (8, 24, 64):
        noisy = images[:num] + rng.normal(0, sigma, images[:num].shape)
        conditions[f"noise {sigma}"] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    for radius in (0.5, 1.0, 2.0):
        conditions[f"blur {radius}"] = _blurred(images[:num], radius)
    for kept in (5, 2, 1):
        pool = np.flatnonzero(labels < kept)
        conditions[f"{kept} classes"] = images[rng.choice(pool, num, replace=len(pool) < num)]
    return conditions


def score_ladder(dataset, root, data_dir, num, seed, graph=None, num_subsets=20):
    """The rows of `ladder`: the class-based numbers and each space's of every condition, the
    reference being `num` other real images of the dataset."""
    order = np.random.default_rng([seed, 5]).permutation(len(dataset.images))
    if len(order) < 2 * num:
        raise ValueError(f"the ladder needs 2 x {num:,} images; the dataset has {len(order):,}")
    reference = image_rows.read_rows(dataset.images, order[:num], data.IMAGE_SIZE)
    pool = order[num:]  # in the seeded order: its first images are a random draw
    conditions = ladder_conditions(image_rows.read_rows(dataset.images, pool, data.IMAGE_SIZE),
                                   dataset.labels[pool], num, np.random.default_rng(seed))
    classifier, _ = feature_spaces.scorer(dataset, root, data_dir)
    spaces = [classifier, *candidate_spaces(graph)]
    table = [{"run": name} for name in conditions]
    try:
        for space in spaces:
            real = space.predict(reference)[1]
            for entry, images in zip(table, conditions.values()):
                probabilities, features = space.predict(images)
                numbers = distances(features, real, seed, num_subsets)
                if space is classifier:
                    numbers["classifier_score"] = quality.classifier_score(probabilities)
                entry["class-based" if space is classifier else space.name] = numbers
            print(f"{space.name}: done", flush=True)
    finally:
        for space in spaces:
            space.close()
    return table, [space.name for space in spaces[1:]]


# --- KID and FD against the number of samples --------------------------------------------------
def score_sample_sizes(run, sizes, repeats, seed):
    """For each size n: FD and KID of n generated against n real images, and of n real against
    n other real images (while the data holds 2n), over `repeats` seeded draws."""
    config = run.read_config()
    dataset, root, data_dir, verify = evaluation.trained_data(config)
    largest = max(sizes)
    evaluation.check_num(largest, dataset, root)
    images = data.to_uint8(sampling.sample_images(run, 2 * largest, seed).images)
    space, _ = feature_spaces.scorer(dataset, root, data_dir, verify=verify)
    try:
        rows = np.arange(len(dataset.images))
        real = feature_cache.real_outputs(feature_cache.cache_path(
            dataset, root, data_dir, space.key, config.get("splits")), dataset.images, rows,
            space.predict)[1]
        generated = space.predict(image_rows.resize(images, data.IMAGE_SIZE))[1]
    finally:
        space.close()
    table = []
    for n in sizes:
        for repeat in range(repeats):
            rng = np.random.default_rng([seed, n, repeat])
            real_draw = rng.permutation(len(real))
            entry = {"n": n, "repeat": repeat, "space": space.name,
                     "generated": distances(generated[rng.choice(len(generated), n, False)],
                                            real[real_draw[:n]], seed + repeat)}
            if 2 * n <= len(real):
                entry["real"] = distances(real[real_draw[n:2 * n]], real[real_draw[:n]],
                                          seed + repeat)
            table.append(entry)
            print(json.dumps(entry), flush=True)
    return table


def sample_size_lines(table):
    lines = [f"{'n':>6} {'what':>10} {'FD mean':>10} {'FD sd':>8} {'KID mean':>10} "
             f"{'KID sd':>8} (over repeats)"]
    for n in sorted({entry["n"] for entry in table}):
        for what in ("generated", "real"):
            found = [entry[what] for entry in table if entry["n"] == n and what in entry]
            if found:
                fd = [numbers["frechet_distance"] for numbers in found]
                kids = [numbers["kid"] for numbers in found]
                lines.append(f"{n:>6} {what:>10} {np.mean(fd):>10.3f} {np.std(fd):>8.3f} "
                             f"{np.mean(kids):>10.5f} {np.std(kids):>8.5f}")
    return lines


# --- An --eval-every run's curve ---------------------------------------------------------------
def curve_lines(run):
    """The quality rows of metrics.csv by epoch, and the best checkpoint kept."""
    from machinery import checkpoints

    run.read_config()  # RunError when `run` is not a run directory
    rows = [row for row in metrics.read_metrics(run.metrics_path) if "frechet_distance" in row]
    best = checkpoints.best_record(run.checkpoint_dir)
    lines = [f"{'epoch':>5} {'step':>6} {'classifier score':>16} {'FD':>9} {'KID':>9} "
             f"{'KID sd':>8}"]
    for row in rows:
        mark = "  <- best" if best and row["step"] == best["step"] else ""
        lines.append(f"{row['epoch']:>5} {row['step']:>6} {row.get('classifier_score', 0):>16.3f} "
                     f"{row['frechet_distance']:>9.3f} {row.get('kid', float('nan')):>9.4f} "
                     f"{row.get('kid_std', float('nan')):>8.4f}{mark}")
    if best:
        lines.append(f"best: epoch {best['epoch']}, step {best['step']}, "
                     f"{quality.METRIC_NAMES.get(best['metric'])} {best['value']:.4f} "
                     f"({best['checkpoint']})")
    return lines


NEAR_COPY_HELDOUT = 5000  # evaluate.py's: training images held out in turn


def score_digit_runs(items, num, seed, data_dir="data"):
    """The rows of `digits`: runs on folders of mnist-sample digits (500, 1,000, all 5,000, as
    docs/augmentation.md writes them), every one scored with the mnist-sample classifier against
    all 5,000 digits, so runs on folders of any size compare; and near copies in its features,
    each sample against the run's own training images (near_copies: held out in turn)."""
    classifier, _ = classifiers.load_classifier("mnist-sample", data_dir, download=False)
    digits = data.load_dataset("mnist-sample")
    real_outputs = classifier.predict(digits.images)
    table = []
    try:
        for item in items:
            run, checkpoint = parse_item(item)
            config = run.read_config()
            training = evaluation.trained_data(config)[0].images
            images = data.to_uint8(sampling.sample_images(run, num, seed, checkpoint).images)
            outputs = classifier.predict(images)
            entry = {"run": item, "images": len(training), **quality.quality(
                classifier, images, digits.images, seed, real_outputs, outputs)}
            found = near_copies.near_copies(outputs[1], classifier.predict(training)[1],
                                            min(len(training), NEAR_COPY_HELDOUT))
            entry.update(near_copies=found.num_flagged, near_copies_expected=found.expected_flagged,
                         near_copies_p=found.p_value)
            table.append(entry)
            print(f"{item}: {json.dumps(entry, default=float)}", flush=True)
    finally:
        classifier.close()
    return table


def digit_lines(table):
    lines = [f"{'run':<40} {'images':>6} {'score':>6} {'FD':>8} {'KID':>8} {'entropy':>7} "
             f"{'near copies (expected)':>23}"]
    for row in table:
        lines.append(f"{row['run'][-40:]:<40} {row['images']:>6} {row['classifier_score']:>6.2f} "
                     f"{row['frechet_distance']:>8.2f} {row['kid']:>8.4f} "
                     f"{row['class_entropy']:>7.3f} {row['near_copies']:>12} "
                     f"({row['near_copies_expected']:.0f})")
    return lines


def plot_health(items, path):
    """d_real_sign, augment_p and the losses (metrics.csv) of the runs, against the step, in
    one figure; d_real_sign with the adaptive p's target and the health line's alarm level."""
    runs = [(item, metrics.read_metrics(parse_item(item)[0].metrics_path)) for item in items]
    pictures.save_health_plot(path, runs, target=hyperparameters.AUGMENT_TARGET,
                              alarm=training_health.MEMORISING_SIGN)


# --- The command line --------------------------------------------------------------------------
def table_lines(table, names):
    """One line per run (or condition): the class-based numbers, then each space's FD and KID."""
    head = f"{'':<32} {'class: score':>12} {'FD':>9} {'KID':>9}" + "".join(
        f" | {name[:22]:>22}: FD, KID" for name in names)
    lines = [head]
    for entry in table:
        classes = entry["class-based"]
        lines.append(f"{entry['run'][-32:]:<32} {classes['classifier_score']:>12.3f} "
                     f"{classes['frechet_distance']:>9.3f} {classes['kid']:>9.4f}" + "".join(
                         f" | {entry[name]['frechet_distance']:>22.4f}, "
                         f"{entry[name]['kid']:.5f}" for name in names))
    return lines


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m machinery.studies",
                                     description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="study", required=True)
    spaces = commands.add_parser("spaces", help="flat-folder spaces against class-based numbers")
    spaces.add_argument("items", nargs="+", metavar="RUN[@CHECKPOINT]")
    ladder = commands.add_parser("ladder", help="the same on real images made worse")
    ladder.add_argument("--dataset", default="mnist-sample",
                        help="a named dataset, or 'folder' with --images")
    ladder.add_argument("--images", default=None, help="a labeled folder (--dataset folder)")
    ladder.add_argument("--data-dir", default="data")
    sizes = commands.add_parser("sample-sizes", help="KID and FD at several sample sizes")
    sizes.add_argument("--run", required=True)
    sizes.add_argument("--sizes", default="500,1000,5000")
    sizes.add_argument("--repeats", type=int, default=5)
    curve = commands.add_parser("curve", help="an --eval-every run's numbers by epoch")
    curve.add_argument("--run", required=True)
    digits = commands.add_parser("digits", help="runs on digit folders of any size, scored alike")
    digits.add_argument("items", nargs="+", metavar="RUN[@CHECKPOINT]")
    digits.add_argument("--curves", default=None, metavar="PNG",
                        help="also draw the runs' d_real_sign and augment_p into this picture")
    for command, num in ((spaces, 5000), (ladder, 2000), (digits, 5000)):
        command.add_argument("--num", type=int, default=num,
                             help="generated (or changed) images, and real ones, per row")
    for command in (spaces, ladder):
        command.add_argument("--inception-graph", default=None, metavar="FILE",
                             help="also Inception's features (slow on a CPU)")
    for command in (spaces, ladder, sizes, digits):
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--out", default=None, help="write the numbers as JSON here")
    return parser


def run_study(args):
    if args.study == "curve":
        return curve_lines(run_directory.RunDir(args.run)), None
    if args.study == "digits":
        table = score_digit_runs(args.items, args.num, args.seed)
        if args.curves:
            plot_health(args.items, args.curves)
        return digit_lines(table), table
    if args.study == "sample-sizes":
        table = score_sample_sizes(run_directory.RunDir(args.run),
                                   [int(size) for size in args.sizes.split(",")], args.repeats,
                                   args.seed)
        return sample_size_lines(table), table
    if args.study == "spaces":
        table, names = score_spaces(args.items, args.num, args.seed, args.inception_graph)
    else:
        dataset = data.load_folder(args.images, args.data_dir) if args.dataset == data.FOLDER \
            else data.load_dataset(args.dataset, args.data_dir, download=False)
        table, names = score_ladder(dataset, args.images, args.data_dir, args.num, args.seed,
                                    args.inception_graph)
    lines, summary = space_summary(table, names)
    return table_lines(table, names) + ["rank correlation with the class-based numbers:"] + \
        lines, {"rows": table, "correlations": summary}


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        lines, numbers = run_study(args)
        print("\n".join(lines))
        if numbers is not None and getattr(args, "out", None):
            # (NumPy numbers made plain first: write_json takes what json.dumps does)
            errors.write_or_fail(args.out, durable.write_json,
                                 json.loads(json.dumps(numbers, default=float)),
                                 unsaved="the numbers are above")
            print(f"wrote {args.out}")
    except data.DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except errors.RunError as error:  # a snapshot not a run, a folder moved, --out unwritable
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

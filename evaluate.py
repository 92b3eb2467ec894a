"""Sample quality in numbers: `python evaluate.py --run runs/mnist`.

Scores images generated from a run's checkpoint with a classifier trained on the real labeled
images (quality.py says what each number means), prints them and adds them, by step, to the run's
evaluation.json. A run of --dataset folder is scored with a classifier of the folder's classes (its
sub-folders; classifiers.load_folder_classifier), on the folder loaded again through its cache and
refused if it changed since the run trained on it; a flat folder has no classes to score with.
"""
import os
import sys

import options
import quality
import quiet_start


def build_parser():
    parser = options.new_parser(__doc__.split("\n")[0])
    options.add_run_group(parser, "score the trained weights, not their average")
    group = parser.add_argument_group("the evaluation")
    add = group.add_argument
    add("--num", type=options.bounded_int(quality.MIN_IMAGES, quality.MAX_IMAGES,
                                          quality.IMAGES_WHY), default=quality.DEFAULT_NUM,
        help="generated images, and real images compared with them")
    add("--seed", type=options.SEED, default=0, help="seed of the z and the real draw")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)  # every number is checked by its type


if __name__ == "__main__":
    ARGS = quiet_start.parse_flags_then_import_tensorflow(parse_args)

import classifiers  # noqa: E402
import data  # noqa: E402
import devices  # noqa: E402
import runs  # noqa: E402
import sampling  # noqa: E402


def evaluate_run(run, num, seed, checkpoint=None, raw=False):
    """Quality of `num` images from the run's checkpoint against as many real ones: (result dict
    with the checkpoint, its step and the classifier's held-out accuracy, checkpoint path)."""
    config = run.read_config()
    name, data_dir = config["dataset"], runs.setting_path(config, "data_dir", "data")
    verify, size = not config.get("skip_checksum", False), runs.image_size(config)
    if name == data.FOLDER:  # as the run trained on it, or refused
        dataset, root = runs.load_trained_folder(config)
        classifiers.require_labeled(dataset, root, "evaluate.py")
    else:
        root = None
        dataset = data.load_dataset(name, data_dir, config.get("splits"), verify, download=False,
                                    image_size=size)  # as the run trained on
    generated, checkpoint, generator = sampling.sample_images(run, num, seed, checkpoint, raw)
    classifier, info = classifiers.dataset_classifier(dataset, root, data_dir, verify=verify)
    try:
        result = quality.quality(classifier, data.to_uint8(generated),
                                 quality.real_images(dataset, num, seed), seed)
    finally:
        classifier.close()
    result.update(checkpoint=os.path.basename(checkpoint), step=runs.checkpoint_step(checkpoint),
                  classifier_heldout_accuracy=info["heldout_accuracy"], generator=generator)
    return result, checkpoint


def main(argv=None, args=None):
    args = args or parse_args(argv)
    run = runs.RunDir(args.run)
    devices.warn_if_gpu_unseen()
    try:
        result, checkpoint = evaluate_run(run, args.num, args.seed, args.checkpoint, args.raw)
    except data.DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except runs.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"{checkpoint}, {result['generator']}: {quality.format_quality(result)}",
          flush=True)  # before any save
    averaged = result["generator"].startswith("averaged")
    key = str(result["step"]) + ("-averaged" if averaged else "")
    try:
        run.add_evaluation(key, result)
    except runs.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"wrote {run.evaluation_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(args=ARGS))

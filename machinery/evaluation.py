"""evaluate.py's work: the sample quality of a run's checkpoint (quality.py's numbers, with the
classifier of the run's data, classifiers.py), printed and added to the run's evaluation.json."""
import os
import sys

import data
from machinery import (checkpoints, classifiers, devices, errors, quality, results,
                       run_directory, sampling)


def evaluate_run(run, num, seed, checkpoint=None, raw=False):
    """Quality of `num` images from the run's checkpoint against as many real ones: (result dict
    with the checkpoint, its step and the classifier's held-out accuracy, checkpoint path)."""
    config = run.read_config()
    name = config["dataset"]
    data_dir = run_directory.setting_path(config, "data_dir", "data")
    verify, size = not config.get("skip_checksum", False), run_directory.image_size(config)
    if name == data.FOLDER:  # as the run trained on it, or refused
        dataset, root = run_directory.load_trained_folder(config)
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
    result.update(checkpoint=os.path.basename(checkpoint),
                  step=checkpoints.checkpoint_step(checkpoint),
                  classifier_heldout_accuracy=info["heldout_accuracy"], generator=generator)
    return result, checkpoint


def evaluate(args):
    """evaluate.py with its parsed flags: prints the numbers, then saves them; returns the exit
    status (a problem is one line on stderr, and nothing of the run is changed)."""
    run = run_directory.RunDir(args.run)
    devices.warn_if_gpu_unseen()
    try:
        result, checkpoint = evaluate_run(run, args.num, args.seed, args.checkpoint, args.raw)
    except data.DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except errors.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"{checkpoint}, {result['generator']}: {quality.format_quality(result)}",
          flush=True)  # before any save
    averaged = result["generator"].startswith("averaged")
    key = str(result["step"]) + ("-averaged" if averaged else "")
    try:
        results.add_evaluation(run, key, result)
    except errors.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"wrote {run.evaluation_path}")
    return 0

"""evaluate.py's work: the sample quality of a run's checkpoint (quality.py's numbers, in the
features of the run's classifier, or of a fixed feature space for a flat folder:
feature_spaces.py), printed and added to the run's evaluation.json."""
import os
import sys

import data
from machinery import (checkpoints, devices, errors, feature_cache, feature_spaces, image_rows,
                       quality, results, run_directory, sampling)


def trained_data(config):
    """(dataset, its folder or None, data dir, verify) of a run's settings, loaded as the run
    trained on it (a folder: through its cache, refused if it changed).

    Raises:
      data.DatasetError: a file is missing or damaged; the folder moved or changed.
    """
    data_dir = run_directory.setting_path(config, "data_dir", "data")
    verify, size = not config.get("skip_checksum", False), run_directory.image_size(config)
    if config["dataset"] == data.FOLDER:
        dataset, root = run_directory.load_trained_folder(config)
        return dataset, root, data_dir, verify
    dataset = data.load_dataset(config["dataset"], data_dir, config.get("splits"), verify,
                                download=False, image_size=size)  # as the run trained on
    return dataset, None, data_dir, verify


def check_num(num, dataset, root):
    """Raises RunError when `num` real images cannot be drawn from the dataset."""
    if num > len(dataset.images):
        what = root if dataset.name == data.FOLDER else dataset.name
        raise errors.RunError(f"--num {num:,} is more than the {len(dataset.images):,} real "
                              f"images of {what} the generated ones are compared with; use at "
                              f"most {len(dataset.images):,}")


def evaluate_run(run, num, seed, checkpoint=None, raw=False):
    """Quality of `num` images from the run's checkpoint against as many real ones: (result dict
    with the checkpoint, its step, the feature space and, for a classifier, its held-out
    accuracy; checkpoint path).

    Raises:
      RunError, data.DatasetError: see trained_data, check_num, sampling.sample_images.
    """
    config = run.read_config()
    dataset, root, data_dir, verify = trained_data(config)
    check_num(num, dataset, root)
    generated, checkpoint, generator = sampling.sample_images(run, num, seed, checkpoint, raw)
    space, info = feature_spaces.scorer(dataset, root, data_dir, verify=verify)
    try:
        rows = quality.real_rows(len(dataset.images), num, seed)
        real_outputs = feature_cache.real_outputs(
            feature_cache.cache_path(dataset, root, data_dir, space.key, config.get("splits")),
            dataset.images, rows, space.predict)
        generated = data.to_uint8(generated)
        result = quality.quality(space, generated, image_rows.read_rows(dataset.images, rows),
                                 seed, real_outputs)
    finally:
        space.close()
    result.update(checkpoint=os.path.basename(checkpoint), feature_space=space.name,
                  step=checkpoints.checkpoint_step(checkpoint), generator=generator)
    if info:
        result["classifier_heldout_accuracy"] = info["heldout_accuracy"]
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

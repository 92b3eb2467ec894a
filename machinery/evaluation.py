"""evaluate.py's work: the sample quality of a run's checkpoint (quality.py's numbers, in the
features of the run's classifier, or of a fixed feature space for a flat folder:
feature_spaces.py), printed and added to the run's evaluation.json."""
import os
import sys

import numpy as np

import data
from machinery import (checkpoints, devices, errors, feature_cache, feature_spaces, image_rows,
                       inception, kid, near_copies, pictures, quality, results, run_directory,
                       sampling, sessions)

# Near copies: each sample is compared with at most this many training images (a seeded draw of
# a larger set, the real images scored among them), and at most NEAR_COPY_HELDOUT of those are
# held out in turn.
NEAR_COPY_TRAINING = 50_000
NEAR_COPY_HELDOUT = 5_000


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


def open_inception(data_dir, graph=None, download=False):
    """TTUR's Inception graph (inception.InceptionFeatures): the file `graph`, or with
    `download` the data folder's copy, fetched once; None when neither is asked for.

    Raises:
      inception.InceptionGraphError: a missing, broken or other graph (one line).
    """
    if download:
        graph, md5 = inception.graph_in_data_dir(data_dir)
    elif graph:
        md5 = None
    else:
        return None
    return inception.InceptionFeatures(graph, expected_md5=md5,
                                       session_config=sessions.session_config())


def inception_numbers(net, generated, real_rows, seed, dataset, cache_path):
    """The papers' FID and KID: in the Inception graph's pool_3 features, the real images' kept
    in the feature cache (the images as the run has them; the graph resizes to 299)."""
    real = feature_cache.real_outputs(cache_path, dataset.images, real_rows, net.predict,
                                      size=None)[1]
    features = net.predict(generated)[1]
    kid_mean, kid_std = kid.kernel_distance(features, real, seed=seed)
    return {"frechet_distance": quality.frechet_distance(features, real), "kid": kid_mean,
            "kid_std": kid_std, "kid_subsets": kid.NUM_SUBSETS,
            "kid_subset_size": kid.rows_per_subset(len(features), len(real)),
            "feature_space": net.name, "graph": os.path.abspath(net.path), "graph_md5": net.md5,
            "num_generated": len(features), "num_real": len(real)}


def format_inception(numbers):
    return (f"Inception's FID {numbers['frechet_distance']:.3f} and "
            f"{quality.format_kid(numbers)}: the papers' numbers, in the pool_3 features of "
            f"TTUR's {inception.GRAPH_FILE} (MD5 {numbers['graph_md5']}), "
            f"{numbers['num_generated']:,} generated against {numbers['num_real']:,} real images")


def evaluate_run(run, num, seed, checkpoint=None, raw=False, graph=None, download=False):
    """Quality of `num` images from the run's checkpoint against as many real ones: (result dict
    with the checkpoint, its step, the feature space and, for a classifier, its held-out
    accuracy; checkpoint path).

    Raises:
      RunError, data.DatasetError: see trained_data, check_num, sampling.sample_images.
    """
    config = run.read_config()
    dataset, root, data_dir, verify = trained_data(config)
    check_num(num, dataset, root)
    net = open_inception(data_dir, graph, download)  # a broken file: refused before any work
    classes = sampling.num_classes(config)
    asked = None if not classes else sessions.draw_labels(  # the classes as the data has them
        np.random.default_rng([seed, 11]), num,
        sessions.class_labels(dataset.labels, classes).shares)
    try:
        generated, checkpoint, generator, asked = sampling.sample_images(
            run, num, seed, checkpoint, raw, labels=asked)
        generated = data.to_uint8(generated)
        if net:
            numbers = inception_numbers(
                net, generated, quality.real_rows(len(dataset.images), num, seed), seed, dataset,
                feature_cache.cache_path(dataset, root, data_dir, net.key, config.get("splits")))
    finally:
        if net:
            net.close()
    space, info = feature_spaces.scorer(dataset, root, data_dir, verify=verify)
    try:
        # The real images scored are the first `num` of the training images compared with.
        training = quality.real_rows(len(dataset.images), max(num, NEAR_COPY_TRAINING), seed)
        real_outputs = feature_cache.real_outputs(
            feature_cache.cache_path(dataset, root, data_dir, space.key, config.get("splits")),
            dataset.images, training, space.predict)
        generated_outputs = space.predict(image_rows.resize(generated, data.IMAGE_SIZE))
        result = quality.quality(space, generated, image_rows.read_rows(
            dataset.images, training[:num]), seed, tuple(
                None if part is None else part[:num] for part in real_outputs),
            generated_outputs)
    finally:
        space.close()
    result.update(checkpoint=os.path.basename(checkpoint), feature_space=space.name,
                  step=checkpoints.checkpoint_step(checkpoint), generator=generator)
    if info:
        result["classifier_heldout_accuracy"] = info["heldout_accuracy"]
    if classes:
        result.update(quality.class_agreement(generated_outputs[0], asked, classes))
    if net:
        result["inception"] = numbers
    heldout = min(len(training), NEAR_COPY_HELDOUT)
    found = near_copies.near_copies(generated_outputs[1], real_outputs[1], heldout) \
        if heldout >= near_copies.MIN_HELDOUT else None
    return result, checkpoint, (found, generated, dataset.images, training)


def near_copy_fields(found, training_rows):
    """What evaluation.json keeps of near_copies' finding (training images by dataset row)."""
    return {"flagged": found.num_flagged, "generated": found.num_generated,
            "heldout": found.num_heldout, "training_images": len(training_rows),
            "percentile": found.percentile, "threshold": found.threshold,
            "expected_flagged": found.expected_flagged, "p_value": found.p_value,
            "closest": [{"sample": sample, "training_image": int(training_rows[index]),
                         "distance": distance}
                        for sample, index, distance in found.closest_pairs]}


def save_near_copies(run, near):
    """Draws the closest pairs of near_copies' finding into near_copies.png.

    Raises:
      RunError: the picture cannot be written.
    """
    found, generated, images, training = near
    samples = [sample for sample, _, _ in found.closest_pairs]
    nearest = image_rows.read_rows(images, training[[index for _, index, _ in
                                                     found.closest_pairs]])
    errors.write_or_fail(run.near_copies_path, pictures.save_pairs_png, generated[samples],
                         nearest, "closest samples (top) and their nearest training images",
                         unsaved=f"the result is saved in {run.evaluation_path}")


def evaluate(args):
    """evaluate.py with its parsed flags: prints the numbers, then saves them; returns the exit
    status (a problem is one line on stderr, and nothing of the run is changed)."""
    run = run_directory.RunDir(args.run)
    devices.warn_if_gpu_unseen()
    try:
        result, checkpoint, near = evaluate_run(run, args.num, args.seed, args.checkpoint,
                                                args.raw, args.inception_graph,
                                                args.download_inception)
    except (data.DatasetError, inception.InceptionGraphError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except errors.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"{checkpoint}, {result['generator']}: {quality.format_quality(result)}",
          flush=True)  # before any save
    if "inception" in result:
        print(format_inception(result["inception"]), flush=True)
    if "class_agreement" in result:
        names = run.read_config().get("class_names") or []
        print(quality.format_agreement(result, names), flush=True)
    found = near[0]
    result["near_copies"] = near_copy_fields(found, near[3]) if found else None
    print(near_copies.describe(found, run.near_copies_path) if found else
          f"near copies: not measured (fewer than {near_copies.MIN_HELDOUT} real images to hold "
          f"out)", flush=True)
    averaged = result["generator"].startswith("averaged")
    key = str(result["step"]) + ("-averaged" if averaged else "")
    try:
        results.add_evaluation(run, key, result)
        print(f"wrote {run.evaluation_path}")
        if found:
            save_near_copies(run, near)
    except errors.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0

"""train.py's work: a training run from its parsed flags, in one call (`train`).

It claims the run directory (claims.py), loads the data, builds the graph and restores the newest
checkpoint (training_graph.py), then hands the session to the loop (training_loop.py). With
several devices or workers the engine is tf.distribute's (strategies.py, workers.py).
"""
import contextlib
import os
import sys
import tempfile

import tensorflow as tf

import data
from machinery import (claims, cluster as cluster_lib, devices, epoch_outputs, errors, metrics,
                       options, run_directory, sessions, strategies, training_graph,
                       training_loop, workers)

tf1 = tf.compat.v1


def train(args, parser):
    """Trains as train.py's parsed flags `args` say (`parser`: the flags' groups, for the
    settings lines); returns the exit status. A problem the user can fix is one line on stderr;
    a signal saves a checkpoint first (errors.EXIT_INTERRUPTED)."""
    devices.warn_if_gpu_unseen()
    try:
        _claim_and_train(args, parser)
    except errors.RunError as error:
        prefix = "" if error.exit_code == errors.EXIT_INTERRUPTED else "error: "
        print(f"{prefix}{error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:  # before the loop (loading, building) or a second Ctrl-C
        print("interrupted; the last checkpoint, if any, is intact", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    return 0


def exit_process(status):
    """Ends train.py with `status`. With several workers everything is saved and closed by now,
    and the gRPC server's teardown would only add log lines after the last one (and can wait on
    workers that are gone): the process ends at once."""
    if cluster_lib.from_environment():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _claim_and_train(args, parser):
    tf.get_logger().setLevel("ERROR")  # TF1 APIs' deprecation notices are not the user's business
    cluster = cluster_lib.from_environment()  # checked when the flags were parsed
    try:
        engine = strategies.make_engine(args.devices, cluster)
    except strategies.EngineError as error:
        raise errors.RunError(str(error)) from None
    if engine.chief:
        run = run_directory.RunDir(args.out)
        with claims.open_for_training(run, args.fresh) as claim:  # one writer per run directory
            run.check_resumable(dict(vars(args), splits=list(args.splits)),
                                training_graph.RESUME_KEYS, training_graph.RESUME_DEFAULTS)
            _train_in(run, args, parser, claim, engine, cluster)
        return
    # The other workers keep nothing: their run directory is a scratch folder, removed at exit.
    with tempfile.TemporaryDirectory(prefix=f"dcgan-worker{engine.worker_index}-") as scratch:
        run = run_directory.RunDir(scratch)
        with claims.open_for_training(run) as claim:
            _train_in(run, args, parser, claim, engine, cluster)


def load_data(args):
    """The dataset and its batch iterator, or a RunError saying what is wrong with them."""
    try:
        if args.dataset == data.FOLDER:
            dataset = data.load_folder(args.images, args.data_dir, args.image_size,
                                       args.channels, args.fit)
        else:
            dataset = data.load_dataset(args.dataset, args.data_dir, args.splits,
                                        verify=not args.skip_checksum,
                                        download=not args.no_download, image_size=args.image_size)
    except data.DatasetError as error:
        raise errors.RunError(str(error)) from None
    try:
        batches = data.BatchIterator(len(dataset.images), args.batch_size, args.seed)
    except ValueError as error:
        raise errors.RunError(f"{args.dataset}: {error}") from None
    return dataset, batches


def check_same_pictures(run, dataset):
    """A folder run resumes only on the pictures it started with: its fingerprint (the files'
    paths, sizes and times, and the decoding settings) must be the one the run recorded."""
    saved = run.saved_config()
    if dataset.fingerprint is None or not saved or not saved.get("data_fingerprint"):
        return
    if saved["data_fingerprint"] != dataset.fingerprint:
        changed = f": {dataset.changes}" if dataset.changes else ""
        raise errors.RunError(
            f"{saved['images']} has changed since this run started ({saved['num_images']:,} "
            f"images then, {len(dataset.images):,} now{changed}); resuming would train on other "
            f"pictures. Put the folder back as it was, or start over with --fresh.")


def _class_names(args, dataset):
    """A conditional run's class names (data.class_names); None for an unconditional run.

    Raises:
      RunError: --conditional on data without labels.
    """
    if not args.conditional:
        return None
    names = data.class_names(dataset)
    if not names:
        raise errors.RunError(
            f"--conditional needs labeled images: {args.images} has no classes (its images "
            f"must lie in sub-folders, one per class and at least two, say "
            f"{os.path.join(args.images, 'cats')} and {os.path.join(args.images, 'dogs')})")
    return names


def _settings(args, parser, dataset, engine, class_names):
    """The run's settings for config.json, after printing them (the flags by group, and what was
    derived from the data and the machine)."""
    output_dim = int(dataset.images.shape[-1])
    resized = "" if args.image_size == data.IMAGE_SIZE or args.dataset == data.FOLDER else \
        f", resized from {data.IMAGE_SIZE}x{data.IMAGE_SIZE} (Lanczos)"  # (a folder: decoded so)
    derived = {"the data": f"{options.plural(len(dataset.images), 'image')} of "
                           f"{args.image_size}x{args.image_size}x{output_dim}{resized}",
               "tensorflow": tf.__version__}
    if engine.strategy is not None:
        derived["replicas"] = f"{engine.description}; " \
                              f"{args.batch_size // engine.replicas} images each per step"
    if class_names:
        derived["classes"] = f"{len(class_names)}: {', '.join(class_names[:10])}" + \
            (", ..." if len(class_names) > 10 else "")
    print("\n".join(["settings (config.json keeps them all):",
                     *options.settings_lines(parser, args, derived)]))
    print(f"device: {devices.describe_device()}; precision {args.precision}; seed {args.seed}")
    return dict(vars(args), splits=list(args.splits), output_dim=output_dim,
                num_images=len(dataset.images), tensorflow=tf.__version__,
                data_fingerprint=dataset.fingerprint, classes=dataset.classes,
                replicas=engine.replicas, workers=engine.workers,
                num_classes=len(class_names) if class_names else None, class_names=class_names)


def _train_in(run, args, parser, claim, engine, cluster):
    """Trains in a run directory this process holds the claim (claims.TrainingClaim) of."""
    dataset, batches = load_data(args)
    if engine.chief:
        check_same_pictures(run, dataset)
    if args.precision == "bfloat16":
        warning = devices.bfloat16_warning(devices.bfloat16_support())
        if warning:
            print(warning, file=sys.stderr, flush=True)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    class_names = _class_names(args, dataset)
    evaluation = epoch_outputs.load_evaluation(args, dataset) if engine.chief else None
    settings = _settings(args, parser, dataset, engine, class_names)
    agreed = dict({key: getattr(args, key) for key in training_graph.AGREED_SETTINGS},
                  splits=list(args.splits))
    run_graph = training_graph.build_graph(args, settings["output_dim"], engine,
                                           workers.agreed_numbers(agreed, dataset.images),
                                           settings["num_classes"])
    classes = sessions.class_labels(dataset.labels, len(class_names)) if class_names else None
    config = sessions.session_config(args.intra_op_threads,
                                     workers.inter_op_threads(engine, args.inter_op_threads),
                                     engine.cpu_devices)
    try:
        engine, config = strategies.start_server(engine, cluster, config)
    except strategies.EngineError as error:
        raise errors.RunError(str(error)) from None
    run_options = tf1.RunOptions(timeout_in_ms=args.worker_timeout * 1000) \
        if engine.workers > 1 else None
    progress = workers.Progress()
    watchdog = workers.Watchdog(engine, run, args.worker_timeout, progress)
    with workers.failures(engine, run, args.worker_timeout, progress), \
            tf1.Session(engine.target, graph=run_graph.graph, config=config) as sess, \
            contextlib.ExitStack() as closing:
        if evaluation:
            closing.callback(evaluation.classifier.close)
        if engine.workers > 1:
            print(f"waiting for the other workers (TF_CONFIG lists {engine.workers}; "
                  f"--worker-timeout {args.worker_timeout} s)", flush=True)
        with watchdog.watching():
            step, restored = training_graph.restore_or_initialise(
                sess, run_graph, run, batches, args.seed, engine, run_options)
        progress.started = True
        claim.started()  # the run's own files follow: a failure from here on is not undone
        log = metrics.MetricsLog(run, step, resumed=restored is not None)
        closing.callback(log.close)
        run.write_config(settings)
        outputs = epoch_outputs.EpochOutputs(args, sess, run_graph.model, run, log,
                                             sess.run(run_graph.fixed_z), evaluation, classes)
        trainer = training_loop.Trainer(args, sess, run_graph, run, log, dataset, batches,
                                        outputs, step, engine, run_options, watchdog, classes)
        trainer.run_epochs()
    where = args.out if engine.chief else "kept by the chief"
    print(f"done: {options.plural(trainer.step, 'step')}, "
          f"{options.plural(batches.epoch, 'epoch')}; run directory {where}")
    if outputs.best_line():
        print(f"best evaluated checkpoint: {outputs.best_line()}")

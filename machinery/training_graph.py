"""The graph a training run builds: training_step.build_model's, plus what a checkpoint holds
besides the networks (the fixed sample z, the position in the data), and, with several workers,
the ops they run together; restoring it from the newest good checkpoint, or initialising it."""
import collections

import numpy as np
import tensorflow as tf

from machinery import (averaged_generator, checkpoints, hyperparameters, sessions, strategies,
                       training_step, workers)

tf1 = tf.compat.v1

# Settings a checkpoint is tied to: changing one makes a resumed run meaningless.
RESUME_KEYS = ("dataset", "splits", "images", "channels", "fit", "image_size", "z_dim",
               "batch_size", "seed", "sample_grid", "g_ema", "augment", "augment_p",
               "augment_target", "flip", "conditional")
# For runs saved before the setting existed.
RESUME_DEFAULTS = {"g_ema": 0.0, "image_size": hyperparameters.IMAGE_SIZE, "images": None,
                   "channels": None, "fit": None, "augment": None, "augment_p": None,
                   "augment_target": None, "flip": False, "conditional": False}
# What every worker must agree on: what the step computes and how long it trains (a worker that
# stops early leaves the others waiting), and the data. A folder's path may differ from machine
# to machine, and so may its files' times (a copy): workers.agreed_numbers compares pixels.
AGREED_SETTINGS = (*(key for key in RESUME_KEYS if key not in ("images",)), "g_steps", "lr",
                   "beta1", "alpha", "smooth", "precision", "sync_batch_norm", "devices",
                   "epochs", "max_steps")
AGREED_FLAGS = ", ".join("--" + key.replace("_", "-") for key in AGREED_SETTINGS)

RunGraph = collections.namedtuple(
    "RunGraph", "graph model fixed_z epoch batch_index position save_position saver checkpointed "
                "init chief_values agreement agreed stop_request stop_votes")


def build_graph(args, output_dim, engine, agreed=(0, 0), num_classes=None):
    """The training graph plus what a checkpoint holds besides the networks: the fixed sample z
    and the position in the data (epoch, next batch). With several workers, also the op that
    checks that all were started with the same settings and data (built first), the one that
    gives every worker the chief's values, and the stop vote run with each step
    (strategies.agreement_op, chief_values_op, vote_op)."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(args.seed)
        several = engine.workers > 1
        agreement = strategies.agreement_op(engine.strategy, agreed) if several else None
        model = training_step.build_model(
            output_dim, z_dim=args.z_dim, g_steps=args.g_steps, learning_rate=args.lr,
            beta1=args.beta1, alpha=args.alpha, smooth=args.smooth, precision=args.precision,
            g_ema_decay=args.g_ema, image_size=args.image_size, strategy=engine.strategy,
            sync_batch_norm=args.sync_batch_norm, augment=args.augment or (),
            augment_p=args.augment_p if args.augment else 1.0,
            augment_target=args.augment_target or hyperparameters.AUGMENT_TARGET,
            num_classes=num_classes if args.conditional else None)
        # (the convolutions: those for the device TensorFlow sees)
        initial_fixed_z = sessions.draw_z(np.random.default_rng([args.seed, 1]),
                                          args.sample_grid ** 2, args.z_dim)
        with tf1.variable_scope("run_state"):
            fixed_z = tf1.get_variable("fixed_z", initializer=initial_fixed_z, trainable=False)
            epoch = tf1.get_variable("epoch", [], tf.int64, tf1.zeros_initializer(),
                                     trainable=False)
            batch_index = tf1.get_variable("batch_index", [], tf.int64,
                                           tf1.zeros_initializer(), trainable=False)
        position = tf1.placeholder(tf.int64, [2])
        save_position = tf.group(epoch.assign(position[0]), batch_index.assign(position[1]))
        checkpointed = averaged_generator.checkpointed_variables()
        saver = tf1.train.Saver(checkpointed, max_to_keep=None)  # checkpoints.py keeps a few
        init = tf1.global_variables_initializer()
        chief_values = strategies.chief_values_op(engine.strategy, checkpointed) \
            if several else None
        stop_request, stop_votes = strategies.vote_op(engine.strategy) if several else (None,
                                                                                        None)
    graph.finalize()  # nothing may add ops in the loop (a classic TF1 slow-down)
    return RunGraph(graph, model, fixed_z, epoch, batch_index, position, save_position, saver,
                    checkpointed, init, chief_values, agreement, agreed, stop_request,
                    stop_votes)


def restore_or_initialise(sess, run_graph, run, batches, seed, engine, run_options=None):
    """Restores the newest checkpoint that restores (and the data position), or initialises
    when the run has none; returns (step, checkpoint restored or None). With several workers
    only the chief restores, and every worker then takes the chief's values."""
    if run_graph.agreement is not None:
        workers.check_agreement(sess, run_graph.agreement, run_graph.agreed, engine, AGREED_FLAGS,
                                run_options)
    # What a checkpoint does not hold is initialised all the same (several workers: together).
    sess.run(run_graph.init, options=run_options)
    restored = checkpoints.restore(run.checkpoint_dir, sess, run_graph.saver,
                                   run_graph.checkpointed, set_aside_damaged=True) \
        if engine.chief else None
    if not restored and run_graph.model.start_average is not None:
        sess.run(run_graph.model.start_average)
    if run_graph.chief_values is not None:
        sess.run(run_graph.chief_values, options=run_options)
    elif not restored:
        return 0, None
    step, epoch, batch_index = (int(value) for value in sess.run(
        [run_graph.model.global_step, run_graph.epoch, run_graph.batch_index]))
    batches.restore({"seed": seed, "epoch": epoch, "batch_index": batch_index})
    if restored:
        print(f"resumed {restored}: step {step}, epoch {epoch + 1}, batch {batch_index}")
    elif step:
        print(f"took the chief's checkpoint: step {step}, epoch {epoch + 1}, batch {batch_index}")
    return step, restored

"""One worker of a two-process MultiWorkerMirroredStrategy test (tests/test_workers.py), run as
`python tests/multi_worker_step.py MODE OUT.npz` with TF_CONFIG set: it builds the model as
train.py does (16x16, one channel, synchronized batch norm), and saves every variable's value.

MODE "train": initialise, then three steps on the batch helpers.py's train_steps trains one
device on, each worker feeding its half. MODE "chief-values": initialise, let the chief alone
change every variable (as a restored checkpoint does), then run the op that gives every worker the
chief's values.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from machinery import cluster as cluster_lib  # noqa: E402
from machinery import sessions, strategies, training_step  # noqa: E402

tf1 = tf.compat.v1
SIZE, BATCH, Z_DIM, TIMEOUT_MS = 16, 8, 100, 120_000  # as helpers.py's REPLICA_SIZE, REPLICA_BATCH


def main(mode, out):
    cluster = cluster_lib.from_environment()
    engine = strategies.make_engine(1, cluster)
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        model = training_step.build_model(1, strategy=engine.strategy, sync_batch_norm=True,
                                          image_size=SIZE, g_steps=1)
        variables = tf1.global_variables()
        chief_values = strategies.chief_values_op(engine.strategy, variables)
        changes = tf.group(*[v.assign(v + tf.cast(index + 1, v.dtype))
                             for index, v in enumerate(variables)])
        init = tf1.global_variables_initializer()
        config = sessions.session_config(inter_op_threads=4)
        engine, config = strategies.start_server(engine, cluster, config)
        options = tf1.RunOptions(timeout_in_ms=TIMEOUT_MS)
        with tf1.Session(engine.target, config=config) as sess:
            sess.run(init, options=options)
            if mode == "chief-values":
                if engine.worker_index == 0:
                    sess.run(changes)
                sess.run(chief_values, options=options)
            else:
                images = np.random.default_rng(0).integers(0, 256, (BATCH, SIZE, SIZE, 1),
                                                           dtype=np.uint8)
                for step in range(3):
                    feed = sessions.step_feed(model, images, np.arange(BATCH), 0, step,
                                              engine.worker_index, engine.workers)
                    sess.run(model.train_step, feed, options)
            values = sess.run(variables)
    np.savez(out, **{v.op.name.replace("/", "|"): value for v, value in zip(variables, values)})


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Training past one device with TensorFlow's own engine, tf.distribute, through its
tf.compat.v1 classes: MirroredStrategy over this machine's devices, and
MultiWorkerMirroredStrategy across the machines TF_CONFIG names (cluster.py), one process each.

The graph is built in the strategy's scope (training_step.build_model(strategy=...)); this module
picks the devices, makes the strategy, the server and the session settings, and builds the ops every
worker runs together: the chief's values after it restores a checkpoint, the workers' agreement
on settings and data, and the stop vote. No all-reduce or cluster code of its own: every
reduction is the strategy's.
"""
import collections

import tensorflow as tf

from machinery import cluster as cluster_lib

tf1 = tf.compat.v1


class Engine(collections.namedtuple(
        "Engine", "strategy target cpu_devices replicas worker_index workers server description")):
    """strategy: None on one device; target: the session target ('' in this process, the
    server's once start_server started it, None before); cpu_devices: the CPU devices the
    session must have; replicas: in sync across all workers; worker_index/workers: this
    process's place (cluster.Cluster); server: the running tf.distribute.Server or None."""

    @property
    def chief(self):
        """Whether this process writes the run directory (the only one, or worker 0)."""
        return self.worker_index == 0


class EngineError(RuntimeError):
    """The devices asked for are not there: the message says what is, in one line."""


def single_device():
    """No strategy: today's graph, in this process."""
    return Engine(None, "", 1, 1, 0, 1, None, None)


def make_engine(devices, cluster=None):
    """The Engine for `devices` replicas on this machine and the workers of `cluster`.

    Without a cluster and with one device: no strategy at all. Without a cluster: a
    MirroredStrategy over the first `devices` GPUs TensorFlow sees or, on a machine without one,
    over as many logical CPU devices (how it is tested; each gets part of the cores). With a
    cluster: a MultiWorkerMirroredStrategy over `devices` GPUs per worker (one CPU per worker on
    a machine without GPUs), whose server start_server starts.

    Raises:
      EngineError: fewer GPUs than asked for, or several CPU replicas per worker.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and devices > len(gpus):
        raise EngineError(f"--devices {devices}: TensorFlow sees {len(gpus)} GPU"
                          f"{'s' if len(gpus) > 1 else ''} here")
    if cluster is None:
        if devices == 1:
            return single_device()
        names = [f"/gpu:{index}" for index in range(devices)] if gpus else \
            _logical_cpus(devices)
        strategy = tf1.distribute.MirroredStrategy(devices=names)
        kind = "GPU" if gpus else "logical CPU"
        return Engine(strategy, "", 1 if gpus else devices, devices, 0, 1, None,
                      f"MirroredStrategy over {devices} {kind} devices ({', '.join(names)})")
    if not gpus and devices > 1:
        raise EngineError(f"--devices {devices} with TF_CONFIG: on machines without GPUs each "
                          f"worker trains one replica (--devices 1)")
    spec = tf.train.ClusterSpec(cluster.spec)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=cluster.task_type, task_id=cluster.task_index, rpc_layer="grpc",
        num_accelerators={"GPU": devices} if gpus else None)
    # Ring all-reduces, not NCCL: the v1 graph launches each step's many collectives in no fixed
    # order, and NCCL's, which block their GPU stream, can then deadlock across workers.
    strategy = tf1.distribute.experimental.MultiWorkerMirroredStrategy(
        communication=tf.distribute.experimental.CommunicationImplementation.RING,
        cluster_resolver=resolver)
    replicas = strategy.num_replicas_in_sync
    return Engine(strategy, None, 1, replicas, cluster.worker_index, cluster.workers,
                  None, f"MultiWorkerMirroredStrategy, {cluster_lib.describe(cluster)}, "
                        f"{devices} {'GPU' if gpus else 'CPU'} replica"
                        f"{'s' if devices > 1 else ''} here, {replicas} in all")


def _logical_cpus(count):
    """Splits the CPU into `count` logical devices, before TensorFlow's runtime starts; returns
    their names."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        if len(tf.config.get_logical_device_configuration(cpu) or [None]) != count:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:  # the runtime has started (a test process): use what it has
        if len(tf.config.list_logical_devices("CPU")) < count:
            raise EngineError(f"--devices {count}: TensorFlow started with "
                              f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s) "
                              f"in this process; start a new one") from None
    return [f"/cpu:{index}" for index in range(count)]


def start_server(engine, cluster, config):
    """For a multi-worker engine: the session settings the strategy needs, and this task's
    started gRPC server (it listens on the TF_CONFIG address). Returns (engine with target and
    server, config)."""
    if engine.target is not None:
        return engine, config
    config = engine.strategy.update_config_proto(config)
    address = cluster.spec[cluster.task_type][cluster.task_index]
    try:
        server = tf.distribute.Server(tf.train.ClusterSpec(cluster.spec),
                                      job_name=cluster.task_type, task_index=cluster.task_index,
                                      config=config, start=True)
    except tf.errors.OpError as error:
        raise EngineError(f"cannot start this worker's server on port "
                          f"{address.rpartition(':')[2]} ({address} in TF_CONFIG): "
                          f"{error.message.strip()}; is another process using the port?") from None
    return engine._replace(target=server.target, server=server), config


def chief_values_op(strategy, variables):
    """One op that sets `variables` on every worker to the chief's values: each replica offers
    its values, zeros except on the chief's first replica, and the strategy's own all-reduce
    sums them (x + 0 is x exactly). Run it on every worker after the chief restored a
    checkpoint. Integer variables travel as float64, exact below 2^53."""
    def offered():
        first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
        values = [_portable(variable) for variable in variables]
        return [tf.where(first, value, tf.zeros_like(value)) for value in values]

    with strategy.scope():
        return tf.group(*[variable.assign(tf.cast(_sum(strategy, offer), variable.dtype))
                          for variable, offer in zip(variables, _each_replica(strategy, offered))],
                        name="chief_values")


def _portable(variable):
    value = tf.convert_to_tensor(variable)
    return tf.cast(value, tf.float64) if value.dtype.is_integer else value


def _each_replica(strategy, build):
    """What `build()` returns on every replica (per-replica values), built in replica context.
    do_not_convert: it builds graph ops once; AutoGraph has nothing to convert."""
    return strategy.extended.call_for_each_replica(
        tf.autograph.experimental.do_not_convert(build))


def _sum(strategy, per_replica):
    """The strategy's all-reduce sum over every replica of every worker."""
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)


def replica_sum(strategy, value):
    """The sum over all replicas of every worker of `value()` (a float64 tensor each replica
    builds), by the strategy's all-reduce: every worker gets the same total."""
    with strategy.scope():
        return _sum(strategy, _each_replica(strategy, value))


def agreement_op(strategy, values):
    """The replica sum of `values` (numbers below 2^40 that each worker computes from what it
    must share with the others): it equals replicas x values on every worker only if every
    worker computed the same. Build it before anything else in the graph, so it pairs up across
    workers even when their graphs differ after it, and run it first."""
    return replica_sum(strategy, lambda: tf.constant([float(value) for value in values],
                                                     tf.float64))


def vote_op(strategy):
    """(placeholder, total): each worker feeds 1.0 to ask for a stop, 0.0 otherwise; run with the
    training step, the total is the same on every worker, so all stop after the same step."""
    request = tf1.placeholder_with_default(tf.constant(0.0, tf.float64), [], name="stop_request")
    return request, replica_sum(strategy, lambda: tf.identity(request))

"""Where this process stands in a run on several machines: TF_CONFIG, read and checked.

TensorFlow's multi-worker strategies are configured by the TF_CONFIG environment variable, a JSON
object such as
    {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}
(a "chief" list may name the first machine instead). Plain Python, no TensorFlow: the entry
points read it while they parse their flags, so a global batch that does not divide by the
replicas of every machine, or a mistyped TF_CONFIG, is refused at once in one line.
"""
import collections
import json
import os

VARIABLE = "TF_CONFIG"
TASK_TYPES = ("chief", "worker")  # in the order TensorFlow numbers the workers

# workers: how many processes train together (one per machine); task_type/task_index: this
# process's entry in TF_CONFIG; worker_index: its place among them (0 is the chief, which alone
# writes the run directory); spec: {task type: [addresses]}.
Cluster = collections.namedtuple("Cluster", "workers task_type task_index worker_index spec")


class ClusterError(ValueError):
    """TF_CONFIG cannot describe a run: the message says why, in one line."""


def from_environment(environ=None):
    """The Cluster TF_CONFIG describes, or None when it is unset or names one task only (then the
    run is on this machine alone). Raises ClusterError when TF_CONFIG is malformed."""
    text = (os.environ if environ is None else environ).get(VARIABLE, "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ClusterError(f"{VARIABLE} is not JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise ClusterError(f'{VARIABLE} needs a "cluster" object, like {{"cluster": {{"worker": '
                           f'["host1:port", "host2:port"]}}, "task": {{"type": "worker", '
                           f'"index": 0}}}}')
    spec = config["cluster"]
    unknown = sorted(set(spec) - set(TASK_TYPES))
    if unknown:
        raise ClusterError(f"{VARIABLE} lists {', '.join(unknown)}: this training needs only "
                           f"'worker' (and optionally one 'chief'), one per machine")
    for task_type, addresses in spec.items():
        if not isinstance(addresses, list) or not addresses or \
                not all(isinstance(address, str) and address.rpartition(":")[2].isdigit()
                        for address in addresses):
            raise ClusterError(f'{VARIABLE}: cluster "{task_type}" must be a list of '
                               f'"host:port" addresses, not {json.dumps(addresses)}')
    if len(spec.get("chief", [])) > 1:
        raise ClusterError(f"{VARIABLE} lists {len(spec['chief'])} chiefs: at most one")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in spec or \
            isinstance(task.get("index"), bool) or not isinstance(task.get("index"), int) or \
            not 0 <= task["index"] < len(spec[task["type"]]):
        raise ClusterError(f'{VARIABLE} needs "task": {{"type": one of {sorted(spec)}, "index": '
                           f'a position in that list}}, not {json.dumps(task)}')
    workers = sum(len(spec.get(task_type, [])) for task_type in TASK_TYPES)
    if workers == 1:
        return None
    chiefs = len(spec.get("chief", []))
    worker_index = task["index"] + (chiefs if task["type"] == "worker" else 0)
    return Cluster(workers, task["type"], task["index"], worker_index,
                   {task_type: list(spec[task_type]) for task_type in TASK_TYPES
                    if task_type in spec})


def describe(cluster):
    """'worker 2 of 3 (chief)' for the logs."""
    role = " (the chief: it writes the run directory)" if cluster.worker_index == 0 else \
        " (writes nothing: the chief keeps the run directory)"
    return f"worker {cluster.worker_index + 1} of {cluster.workers}{role}"

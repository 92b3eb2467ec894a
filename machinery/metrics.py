"""metrics.csv and TensorBoard: the numbers a run logs as it trains.

metrics.csv holds a row per --log-every steps (the losses) or per evaluation (sample quality),
every field a number; the TensorBoard events in the run directory hold the same scalars and the
sample grids. The file is read line by line, in every layout a version of train.py wrote, so a
damaged line costs only itself; it is rewritten atomically (durable.atomic_write).
"""
import csv
import io
import re
import time

import tensorflow as tf

from machinery import durable, errors

tf1 = tf.compat.v1

LOSS_FIELDS = ("d_loss", "g_loss", "d_real", "d_fake", "images_per_sec")
CLASS_QUALITY_FIELDS = ("classifier_score", "frechet_distance", "class_entropy",
                        "min_class_share")
# A flat folder's evaluations have the distances only (no classes): the rest stay empty.
QUALITY_FIELDS = (*CLASS_QUALITY_FIELDS, "kid", "kid_std")
# ADA's r_t over the logging interval, and the augmentation probability (empty without one).
HEALTH_FIELDS = ("d_real_sign", "augment_p")
# A row holds either the losses of a step or the quality of an evaluation; the rest stay empty.
METRIC_FIELDS = ("step", "epoch", *LOSS_FIELDS, *QUALITY_FIELDS, "time", *HEALTH_FIELDS)
# The layouts of earlier versions, told apart from this one by their number of fields: the
# first (538f904 to 391f6ea) had no quality columns, the second (cb75821 to 268e59b) no KID and
# no health columns, the third (016da8e to 5bf0195) the health columns but no KID.
FIRST_METRIC_FIELDS = ("step", "epoch", *LOSS_FIELDS, "time")
SECOND_METRIC_FIELDS = ("step", "epoch", *LOSS_FIELDS, *CLASS_QUALITY_FIELDS, "time")
THIRD_METRIC_FIELDS = (*SECOND_METRIC_FIELDS, *HEALTH_FIELDS)
_METRIC_LAYOUTS = {len(fields): fields
                   for fields in (METRIC_FIELDS, THIRD_METRIC_FIELDS, SECOND_METRIC_FIELDS,
                                  FIRST_METRIC_FIELDS)}
_INTEGER_METRICS = ("step", "epoch")
# A row is under 300 bytes; a line past this is damage (say, a zero-filled tail after a power
# cut) and is skipped without being held in memory.
MAX_METRICS_LINE = 4096
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^[-+]?(inf|nan)$")


def _bounded_lines(handle, limit):
    """The lines of a binary file, each with its newline; None for a line longer than `limit`
    bytes, or for a last line without a newline (a write cut short), neither held in memory."""
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        if len(line) > limit:
            while line and not line.endswith(b"\n"):
                line = handle.readline(1 << 20)
            yield None
        else:
            yield line if line.endswith(b"\n") else None


def parse_metric_line(line):
    """One line of metrics.csv: a row dict (see read_metrics), or None for a header.

    Raises:
      ValueError: the line is damaged (None from _bounded_lines, not UTF-8, another number of
        fields than a layout has, a field that is not a number, a step or epoch not a whole
        number >= 0, no step).
    """
    if line is None:
        raise ValueError("overlong or cut short")
    values = line.decode("utf-8").rstrip("\r\n").split(",")
    fields = _METRIC_LAYOUTS.get(len(values))
    if fields is None:
        raise ValueError(f"{len(values)} fields")
    if tuple(values) == fields:
        return None
    row = {}
    for key, value in zip(fields, values):
        if not value:
            continue
        if not _NUMBER.match(value):
            raise ValueError(f"{key} is not a number")
        number = float(value)
        if key in _INTEGER_METRICS:
            if not (number.is_integer() and number >= 0):
                raise ValueError(f"{key} is not a count")
            number = int(number)
        row[key] = number
    if "step" not in row:
        raise ValueError("no step")
    return row


def _line_numbers(numbers, shown=5):
    listed = ", ".join(map(str, numbers[:shown]))
    return f"line {listed}" + (f" and {len(numbers) - shown} more" if len(numbers) > shown else "")


def _parse_metrics(path):
    """(rows, numbers of the damaged lines) of the metrics.csv at `path`; see read_metrics."""
    rows, damaged = [], []
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return rows, damaged
    with handle:
        for number, line in enumerate(_bounded_lines(handle, MAX_METRICS_LINE), 1):
            try:
                row = parse_metric_line(line)
            except ValueError:
                damaged.append(number)
                continue
            if row is not None:
                rows.append(row)
    return rows, damaged


def read_metrics(path):
    """The rows of the metrics.csv at `path` (a RunDir's metrics_path) as dicts: step and epoch
    ints, the rest floats, empty fields left out; none when there is no file. Every layout a
    version of train.py wrote is read (FIRST_, SECOND_ and THIRD_METRIC_FIELDS too). The file is
    read line by line, with no quoting: a damaged line (cut short by a kill, garbage, a stray
    quote, NULs, not UTF-8, overlong) costs that line only, with a note."""
    rows, damaged = _parse_metrics(path)
    if damaged:
        print(f"{path}: skipped {len(damaged)} damaged line(s) "
              f"({_line_numbers(damaged)})", flush=True)
    return rows


def keep_metrics_until(path, step):
    """Rewrites the metrics.csv at `path` with its rows up to `step` in this version's layout
    and returns them. A file with damaged lines is first kept whole as metrics.csv.damaged-<time>,
    so the rewrite loses no byte of it.

    Raises:
      RunError: it cannot be written (or, damaged, kept aside).
    """
    rows, damaged = _parse_metrics(path)
    if damaged:
        aside = durable.unused_name(f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        errors.write_or_fail(aside, durable.link_or_copy, path)
        print(f"{path}: skipped {len(damaged)} damaged line(s) "
              f"({_line_numbers(damaged)}); the file as it was is kept as {aside}", flush=True)
    rows = [row for row in rows if row["step"] <= step]
    write_metrics(path, rows)
    return rows


def write_metrics(path, rows):
    """Replaces the metrics.csv at `path` with a header and `rows`, atomically.

    Raises:
      RunError: it cannot be written.
    """
    text = io.StringIO()
    writer = csv.DictWriter(text, METRIC_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    errors.write_or_fail(path, durable.atomic_write,
                         lambda handle: handle.write(text.getvalue().encode()))


class MetricsLog:
    """Appends records to metrics.csv (flushed at once) and to TensorBoard, from `step` on.

    Opening it drops the rows after `step` (work a killed process did after its last checkpoint,
    which will be trained again) and tells TensorBoard to drop its events after `step` too.
    """

    def __init__(self, run, step, resumed):
        self.path = run.metrics_path
        self.rows = keep_metrics_until(self.path, step)
        self.writer = tf1.summary.FileWriter(run.path)
        if resumed:
            self.writer.add_session_log(tf1.SessionLog(status=tf1.SessionLog.START), step)
        self.file = open(self.path, "a", newline="")
        self.csv = csv.DictWriter(self.file, METRIC_FIELDS, extrasaction="ignore",
                                  lineterminator="\n")

    def record(self, row, tags):
        """Appends a row (which holds its step) and its `tags` fields to TensorBoard: tags is a
        list of (tag, fields) pairs, each field logged as tag/field.

        Raises:
          RunError: metrics.csv cannot be written (a line cut short there costs only itself).
        """
        try:
            self.csv.writerow(row)
            self.file.flush()
        except OSError as error:
            raise errors.RunError(f"cannot write {self.path} ({errors.cause(error)}); the last "
                                  f"checkpoint is intact. Free the space or fix the cause, then "
                                  f"run the same command to resume") from None
        self.rows.append(row)
        self.writer.add_summary(tf1.Summary(value=[
            tf1.Summary.Value(tag=f"{tag}/{field}", simple_value=row[field])
            for tag, fields in tags for field in fields]), int(row["step"]))

    def add_png(self, tag, png, width, height, step):
        self.writer.add_summary(tf1.Summary(value=[tf1.Summary.Value(
            tag=tag, image=tf1.Summary.Image(encoded_image_string=png, height=height,
                                             width=width, colorspace=4))]), step)

    def flush(self):
        self.writer.flush()

    def close(self):
        try:
            self.file.close()
        except OSError:
            pass  # a full disk: the rows were flushed one by one, or reported then
        self.writer.close()

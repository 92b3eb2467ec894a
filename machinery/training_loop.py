"""The training loop: epochs of steps, each one session call; a line and a checkpoint per epoch;
a signal finishes the step in flight, saves and stops."""
import contextlib
import math
import signal
import time

import tensorflow as tf

from machinery import (checkpoints, convolutions, devices, errors, options, sessions,
                       training_health)

tf1 = tf.compat.v1


class Interrupt:
    """Turns SIGINT / SIGTERM into a flag the loop checks between steps, so the step in flight
    finishes and a checkpoint is written before the process exits."""

    def __init__(self):
        self.signal_name = None

    def __enter__(self):
        self.previous = {sig: signal.signal(sig, self.handle)
                         for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def handle(self, signum, frame):
        if self.signal_name is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Trainer:
    """The training loop's state (session, step, data position, logs) and its steps; the epoch's
    pictures and evaluation are `outputs`' (an epoch_outputs.EpochOutputs)."""

    def __init__(self, args, sess, run_graph, run, log, dataset, batches, outputs, step,
                 engine, run_options=None, watchdog=None, classes=None):
        self.args, self.sess, self.run_graph, self.run, self.log = args, sess, run_graph, run, log
        self.engine, self.run_options = engine, run_options
        self.watching = watchdog.watching if watchdog else contextlib.nullcontext
        self.model = run_graph.model
        self.dataset, self.batches, self.outputs, self.step = dataset, batches, outputs, step
        self.classes = classes  # a conditional run's sessions.ClassLabels
        self.stop_votes = 0.0  # with several workers: how many asked to stop at the last step
        self.traced = False
        self.window_start, self.window_steps, self.window_signs = time.perf_counter(), 0, []
        self.health = training_health.TrainingHealth(args.smooth, bool(args.augment))
        self.health.resume(log.rows)  # a resumed run's window goes on from metrics.csv

    def run_step(self, indices, stop_wanted=False):
        """One training step; returns ((d_loss, g_loss, d_real, d_fake, d_real_sign, augment_p),
        seconds in sess.run), augment_p None without augmentation. The first step is traced to
        log where its ops ran. With several workers the step also counts the workers that want
        to stop (`stop_wanted`: a signal here): self.stop_votes."""
        model = self.model
        fetches = [model.train_step, model.d_loss, model.g_loss, model.d_real, model.d_fake,
                   model.d_real_sign, model.augment_p if model.augment_p is not None else
                   model.d_real_sign]
        feed = sessions.step_feed(model, self.dataset.images, indices, self.args.seed,
                                  self.step, self.engine.worker_index, self.engine.workers,
                                  self.args.flip, self.classes)
        if self.run_graph.stop_votes is not None:
            fetches.append(self.run_graph.stop_votes)
            feed[self.run_graph.stop_request] = 1.0 if stop_wanted else 0.0
        start = time.perf_counter()
        with self.watching():
            values = self.sess.run(fetches, feed, self.run_options) if self.traced else \
                self._run_traced(fetches, feed)
        seconds = time.perf_counter() - start
        if self.run_graph.stop_votes is not None:
            self.stop_votes = float(values.pop())
        self.step = int(values[0])
        numbers = [float(value) for value in values[1:]]
        if model.augment_p is None:
            numbers[-1] = None
        return tuple(numbers), seconds

    def _run_traced(self, fetches, feed):
        """The first step, traced: its line says where its ops ran."""
        run_metadata, traced = tf1.RunMetadata(), tf1.RunOptions()
        if self.run_options:
            traced.CopyFrom(self.run_options)
        # A session of a tf.distribute server returns step statistics only for a full trace.
        traced.trace_level = tf1.RunOptions.FULL_TRACE if self.engine.server else \
            tf1.RunOptions.SOFTWARE_TRACE
        values = self.sess.run(fetches, feed, traced, run_metadata)
        print(f"first step ran on: {devices.placement_summary(run_metadata)}; convolutions: "
              f"{convolutions.describe(self.model.implementation)}", flush=True)
        self.traced = True
        return values

    def stopping(self, interrupt):
        """Whether to stop after this step for a signal: here, or with several workers, once any
        worker asked (all learn it in the same step, so all stop after it together)."""
        if self.run_graph.stop_votes is None:
            return interrupt.signal_name is not None
        return self.stop_votes > 0

    def check_finite(self, d_loss, g_loss):
        if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
            kept = checkpoints.newest(self.run.checkpoint_dir) if self.engine.chief else \
                "the chief's"
            raise errors.RunError(
                f"step {self.step}: loss is not finite (D {d_loss}, G {g_loss}); training stopped "
                f"without saving. The last good checkpoint is "
                f"{kept or 'none (no epoch finished yet)'}; try a lower --lr.", errors.EXIT_NAN)

    def record_losses(self, epoch_number, d_loss, g_loss, d_real, d_fake, augment_p):
        """A row of metrics.csv and TensorBoard: this step's numbers, and d_real_sign over the
        steps since the last row (ADA's r_t over the interval)."""
        now = time.perf_counter()
        images_per_sec = self.window_steps * self.args.batch_size / (now - self.window_start)
        d_real_sign = sum(self.window_signs) / len(self.window_signs)
        self.window_start, self.window_steps, self.window_signs = now, 0, []
        row = {"step": self.step, "epoch": epoch_number, "d_loss": d_loss, "g_loss": g_loss,
               "d_real": d_real, "d_fake": d_fake, "d_real_sign": d_real_sign,
               "images_per_sec": images_per_sec, "time": time.time()}
        tags = [("loss", ("d_loss", "g_loss")),
                ("discriminator", ("d_real", "d_fake", "d_real_sign"))]
        if augment_p is not None:
            row["augment_p"] = augment_p
            tags.append(("augmentation", ("augment_p",)))
        self.log.record(row, tags)

    def watch_health(self, bar, d_loss, g_loss, d_real_sign):
        """Prints the training-health line (training_health.py) the first time it has one; the
        chief alone, since every worker sees the same numbers."""
        line = self.health.observe(d_loss, g_loss, d_real_sign)
        if line and self.engine.chief:
            bar.write(line)

    def should_stop(self):
        return self.args.max_steps is not None and self.step >= self.args.max_steps

    def train_epoch(self, interrupt):
        """Trains the rest of the current epoch, or until --max-steps or a signal; returns the
        steps trained and the seconds spent inside the training step."""
        from tqdm import tqdm  # imported here: only the loop draws progress bars

        epoch_number = self.batches.epoch + 1
        bar = tqdm(total=self.batches.batches_per_epoch, initial=self.batches.batch_index,
                   desc=f"epoch {epoch_number}/{self.args.epochs}", unit="batch",
                   dynamic_ncols=True, mininterval=1.0)
        steps, step_seconds = 0, 0.0
        with bar:
            for indices in self.batches.epoch_batches():
                (d_loss, g_loss, d_real, d_fake, d_real_sign, augment_p), seconds = \
                    self.run_step(indices, interrupt.signal_name is not None)
                steps += 1
                step_seconds += seconds
                self.window_steps += 1
                self.window_signs.append(d_real_sign)
                bar.update(1)
                shown = {} if augment_p is None else {"p": f"{augment_p:.2f}"}
                bar.set_postfix(d_loss=f"{d_loss:.3f}", g_loss=f"{g_loss:.3f}", **shown,
                                refresh=False)
                self.check_finite(d_loss, g_loss)
                self.watch_health(bar, d_loss, g_loss, d_real_sign)
                if self.step % self.args.log_every == 0:
                    self.record_losses(epoch_number, d_loss, g_loss, d_real, d_fake, augment_p)
                if self.stopping(interrupt) or self.should_stop():
                    break
        self.batches.finish_epoch_if_done()  # a stop on an epoch's last batch ends the epoch
        return steps, step_seconds

    def save_checkpoint(self):
        self.sess.run(self.run_graph.save_position,
                      {self.run_graph.position: [self.batches.epoch, self.batches.batch_index]})
        checkpoints.save(self.run.checkpoint_dir, self.sess, self.run_graph.saver, self.step)

    def end_epoch(self, epoch_number):
        """Training first: the checkpoint, then the optional pictures and evaluation, whose
        failures are reported and cost nothing saved. The chief alone writes them (the other
        workers hold the same weights)."""
        if self.engine.chief:
            self.save_checkpoint()
            self.outputs.write(epoch_number, self.step)
        self.log.flush()

    def run_epochs(self):
        """Epochs until --epochs or --max-steps; a signal saves a checkpoint and ends the run."""
        with Interrupt() as interrupt:
            while self.batches.epoch < self.args.epochs and not self.should_stop():
                epoch_number = self.batches.epoch + 1
                epoch_start = time.perf_counter()
                steps, step_seconds = self.train_epoch(interrupt)
                if self.stopping(interrupt):
                    self.stop(interrupt)
                self.end_epoch(epoch_number)
                self.report_epoch(epoch_number, epoch_start, steps, step_seconds)

    def stop(self, interrupt):
        """Ends the run after a signal: the chief saves a checkpoint; every worker raises the
        RunError that says so (exit status EXIT_INTERRUPTED)."""
        why = interrupt.signal_name or "another worker's signal"
        if not self.engine.chief:
            raise errors.RunError(f"{why}: every worker stopped at step {self.step}, and the "
                                  f"chief saved a checkpoint; start every worker again with the "
                                  f"same command to resume", errors.EXIT_INTERRUPTED)
        self.save_checkpoint()
        self.log.flush()
        others = ", and so did every worker" if self.engine.workers > 1 else ""
        raise errors.RunError(f"{why}: saved a checkpoint at step {self.step}{others}; run the "
                              f"same command to resume", errors.EXIT_INTERRUPTED)

    def report_epoch(self, epoch_number, epoch_start, steps, step_seconds):
        """The epoch's line. The time outside the step's sess.run is what train.py adds to the
        step bench.py times: the README's end-to-end check."""
        now = time.perf_counter()
        seconds = now - epoch_start
        print(f"epoch {epoch_number}: {options.plural(steps, 'step')} in {seconds:.1f} s, "
              f"{steps * self.args.batch_size / seconds:.1f} images/s, "
              f"{100 * step_seconds / seconds:.1f}% of it in the training step", flush=True)
        self.window_start, self.window_steps, self.window_signs = now, 0, []

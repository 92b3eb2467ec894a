"""The training step train.py runs: one D update and --g-steps G updates as one op, on one device
or on every replica of a tf.distribute strategy.

It computes what dcgan.model_loss and dcgan.model_optimizers (the blog post's reference, two
session calls per batch) compute; tests/test_training_step.py holds the two against each other.
"""
import collections
import contextlib

import tensorflow as tf

import dcgan
from machinery import augmentation, averaged_generator, layers, sessions
from machinery.hyperparameters import (ALPHA, AUGMENT_ADAPTIVE, AUGMENT_TARGET, BETA1, G_STEPS,
                                       IMAGE_SIZE, LEARNING_RATE, SMOOTH, Z_DIM, augment_policies)

tf1 = tf.compat.v1

Model = collections.namedtuple(
    "Model", "real_images z train_step d_loss g_loss d_real d_fake global_step output_dim "
             "z_dim precision implementation sampler averaged start_average image_size "
             "replicas d_real_sign augment_draws augment_passes augment_p real_labels "
             "fake_labels num_classes")
Model.__doc__ = """The built training graph. Feed `real_images` (uint8 [batch, N, N, output_dim],
scaled to [-1, 1] in the graph) and `z` (float32 [batch, z_dim]); run `train_step`. To log:
`d_loss` (before the D update), `g_loss` (of the first G update, against the updated D), mean
D(x) `d_real` and mean D(G(z)) `d_fake` (means over all replicas). `sampler`: the inference-mode
generator on `z` (a sessions.Sampler); `global_step`: the int64 count of batches trained. With
g_ema_decay, `averaged` (the averaged generator's Sampler) and `start_average` (copies the
weights into the average: run it once after initialising), else None for both. `replicas`: the
replicas in sync (1 without a strategy). `d_real_sign`: the mean of sign(D's logit) on the real
images D saw, to log (ADA's r_t). With augmentation, `augment_draws` (float32 [batch,
augment_passes, augmentation.DRAWS_PER_PASS], augmentation.draws) to feed and `augment_p` (the
probability the step used) to log; else None. A conditional model (num_classes classes) also
takes `real_labels` and `fake_labels` (int32 [batch]: the real images' classes and those to
generate; the sampler's labels are fake_labels); else both are None. The rest: the settings it
was built with."""

# What one replica's step is built from; `networks` holds the keyword arguments of every pass,
# `augment` the augmentation policies (an empty tuple: none), `num_classes` a conditional
# model's classes (None: unconditional).
_StepSettings = collections.namedtuple(
    "_StepSettings", "output_dim g_steps alpha smooth g_ema_decay networks image_size augment "
                     "num_classes")
# A built step: the op that ends it, the losses, mean D(x), D(G(z)) and the mean sign of D's
# logits on the reals to log, the averaged generator's Sampler (or None) and the generator's
# trainable variables.
_Step = collections.namedtuple(
    "_Step", "last_update d_loss g_loss d_real d_fake d_real_sign averaged g_vars")
# What the passes of a step put through D are augmented with: the fed numbers, and p.
_Augmenting = collections.namedtuple("_Augmenting", "draws p")
# A conditional step's classes: of the real images, and of those G generates.
_Labels = collections.namedtuple("_Labels", "real fake")


def build_model(output_dim, *, z_dim=Z_DIM, g_steps=G_STEPS, learning_rate=LEARNING_RATE,
                beta1=BETA1, alpha=ALPHA, smooth=SMOOTH, precision="float32",
                implementation=None, g_ema_decay=0.0, image_size=IMAGE_SIZE, strategy=None,
                sync_batch_norm=False, augment=(), augment_p=1.0,
                augment_target=AUGMENT_TARGET, num_classes=None):
    """Builds the whole training graph: placeholders, one fused training op, and the sampler.

    One run of `train_step` is what the blog post's session calls per batch do (one D update,
    then `g_steps` G updates on the same z), with two savings that change no number: the G
    forward pass of the D update is reused by the first G update (same z, same G weights), and
    every update and the step counter run in one session call. Each G update reads the weights
    the D update wrote: its layers are built under a control dependency on it, and resource
    variables read after their dependencies. Under a tf.distribute `strategy` every replica runs
    the same step on its slice of the batch fed here (`_replicated_step`).

    Args:
      output_dim, z_dim, image_size: image channels; size of z; the images' side N.
      g_steps: generator updates per discriminator update (>= 1).
      learning_rate, beta1, alpha, smooth: both Adams'; D's leaky ReLU slope; label smoothing.
      precision: 'float32' or 'bfloat16' compute (weights, BN statistics and losses stay float32).
      implementation: how the convolutions are computed (convolutions.IMPLEMENTATIONS); None
        picks the one for the device TensorFlow sees.
      g_ema_decay: if > 0, after each G update also w_avg <- decay w_avg + (1 - decay) w for an
        averaged copy of the generator (averaged_generator.py; not in the paper; opt-in).
      strategy, sync_batch_norm: None (one device), or a tf.compat.v1.distribute strategy whose
        scope the model is built in (the batch fed must divide by its local replicas); with it,
        batch norm may use all replicas' statistics (N replicas compute one device's step).
      augment, augment_p, augment_target: augmentation policies (hyperparameters') every image
        D sees goes through, in the D and G updates (opt-in), each with probability augment_p,
        or AUGMENT_ADAPTIVE: p steered towards a mean sign of D's logits on the reals of
        augment_target (augmentation.adaptive_p).
      num_classes: a conditional DCGAN of that many classes (dcgan.generator's class embedding,
        dcgan.discriminator's projection; opt-in); None: unconditional.

    Returns:
      A Model.

    Raises:
      ValueError: any argument out of range.
    """
    settings = _step_settings(output_dim, z_dim, g_steps, alpha, smooth, precision,
                              implementation, g_ema_decay, image_size, strategy, sync_batch_norm,
                              augment, augment_p, augment_target, num_classes)
    implementation = settings.networks["implementation"]
    optimizers = (dcgan.adam(learning_rate, beta1, "d_adam"),
                  dcgan.adam(learning_rate, beta1, "g_adam"))
    real_images = tf1.placeholder(tf.uint8, [None, image_size, image_size, output_dim],
                                  name="real_images")
    z = tf1.placeholder(tf.float32, [None, z_dim], name="z")
    labels = _Labels(tf1.placeholder(tf.int32, [None], name="real_labels"),
                     tf1.placeholder(tf.int32, [None], name="fake_labels")) if num_classes else None
    global_step = tf1.train.get_or_create_global_step()
    step, augmenting, after = _step_ops(real_images, z, labels, settings, optimizers, strategy,
                                        augment_p, augment_target)
    replicas = strategy.num_replicas_in_sync if strategy else 1
    with tf.control_dependencies(after):
        train_step = tf1.assign_add(global_step, 1, name="train_step")

    fake_labels = labels.fake if labels else None
    samples = dcgan.sampler(z, output_dim, precision=precision, implementation=implementation,
                            image_size=image_size, labels=fake_labels, num_classes=num_classes)
    start_average = averaged_generator.start_average() if step.averaged else None
    return Model(real_images, z, train_step, step.d_loss, step.g_loss, step.d_real, step.d_fake,
                 global_step, output_dim, z_dim, precision, implementation,
                 sessions.Sampler(z, samples, z_dim, None, None, step.g_vars, fake_labels,
                                  None, num_classes), step.averaged,
                 start_average, image_size, replicas, step.d_real_sign,
                 augmenting.draws if augmenting else None, settings.g_steps + 1,
                 tf.convert_to_tensor(augmenting.p) if augmenting else None,
                 labels.real if labels else None, fake_labels, num_classes)


def _step_settings(output_dim, z_dim, g_steps, alpha, smooth, precision, implementation,
                   g_ema_decay, image_size, strategy, sync_batch_norm, augment, augment_p,
                   augment_target, num_classes):
    """build_model's arguments checked, as the _StepSettings every replica builds from."""
    dcgan.check_positive_int(output_dim, "output_dim")
    dcgan.check_positive_int(z_dim, "z_dim")
    dcgan.check_positive_int(g_steps, "g_steps")
    dcgan.check_smooth(smooth)
    if not 0.0 <= g_ema_decay < 1.0:
        raise ValueError(f"g_ema_decay must be in [0, 1), got {g_ema_decay!r}")
    if sync_batch_norm and strategy is None:
        raise ValueError("sync_batch_norm needs a strategy: one device has nothing to sync")
    dcgan.check_image_size(image_size)
    if num_classes is not None:
        dcgan.check_positive_int(num_classes, "num_classes")
    augment = augment_policies(",".join(augment)) if augment else ()
    if augment_p != AUGMENT_ADAPTIVE and not (isinstance(augment_p, (int, float)) and
                                              0.0 <= augment_p <= 1.0):
        raise ValueError(f"augment_p must be in [0, 1] or {AUGMENT_ADAPTIVE!r}, got "
                         f"{augment_p!r}")
    if not 0.0 < augment_target < 1.0:
        raise ValueError(f"augment_target must be in (0, 1), got {augment_target!r}")
    networks = dict(precision=precision,
                    implementation=layers.convolution_implementation(implementation),
                    sync_batch_norm=sync_batch_norm)
    return _StepSettings(output_dim, g_steps, alpha, smooth, g_ema_decay, networks, image_size,
                         augment, num_classes)


def _step_ops(real_images, z, labels, settings, optimizers, strategy, augment_p,
              augment_target):
    """The step, on one device or every replica of `strategy` (in its scope); its _Augmenting
    (or None); and the ops the step counter waits for: the last update, and an adaptive p's."""
    with strategy.scope() if strategy else contextlib.nullcontext():
        augmenting = _augmenting(settings, augment_p)
        if strategy is None:
            step = _training_step(sessions.scale_pixels(real_images), z, settings, optimizers,
                                  augmenting=augmenting, labels=labels)
        else:
            step = _replicated_step(strategy, real_images, z, settings, optimizers, augmenting,
                                    labels)
        after = [step.last_update]
        if augment_p == AUGMENT_ADAPTIVE:
            after.append(augmentation.adaptive_p(
                step.d_real_sign, _global_batch(real_images, strategy), step.last_update,
                augment_target).update)
    return step, augmenting, after


def _augmenting(settings, augment_p):
    """With augmentation, the placeholder of the step's random numbers (one pass for the reals,
    one for the fakes of the D and the first G update, one per further G update) and p, a
    number or the adaptive variable; else None. Built in the strategy's scope, if any."""
    if not settings.augment:
        return None
    draws = tf1.placeholder(tf.float32, [None, settings.g_steps + 1,
                                         augmentation.DRAWS_PER_PASS], name="augment_draws")
    p = augmentation.adaptive_p_variable() if augment_p == AUGMENT_ADAPTIVE else \
        float(augment_p)
    return _Augmenting(draws, p)


def _global_batch(real_images, strategy):
    """The images of one step across every worker, as a tensor: each is fed its share."""
    fed = tf.shape(real_images)[0]
    if strategy is None:
        return fed
    workers = strategy.num_replicas_in_sync // len(strategy.extended.worker_devices)
    return fed * workers


def _training_step(real, z, settings, optimizers, loss_scale=1.0, build_averaged=None,
                   augmenting=None, labels=None):
    """One D update then g_steps G updates on (real, z), built in this thread; see build_model.

    `loss_scale` multiplies the losses the optimizers minimize (not those logged): under a
    strategy it is 1 / replicas, since the strategy sums the replicas' gradients. With
    settings.g_ema_decay, `build_averaged()` builds the averaged generator's Sampler after the
    first G update (by default, here, for z). With `augmenting` (an _Augmenting of this batch's
    rows), D sees every batch through settings.augment. A conditional step's `labels` (its
    _Labels) go with the images: the reals' classes with the reals, G's with G and its images.
    """
    d_optimizer, g_optimizer = optimizers
    networks, output_dim = settings.networks, settings.output_dim
    real_classes, fake_classes = ({}, {}) if labels is None else (
        dict(labels=labels.real, num_classes=settings.num_classes),
        dict(labels=labels.fake, num_classes=settings.num_classes))
    generates = dict(networks, image_size=settings.image_size, **fake_classes)
    scaled = (lambda loss: loss) if loss_scale == 1.0 else (lambda loss: loss * loss_scale)

    def seen(images, pass_index):
        """What D sees of a batch: the batch itself, or it augmented with pass pass_index's
        numbers. The first G update reuses the D update's augmented fakes, as it reuses them."""
        if augmenting is None:
            return images
        return augmentation.augment(images, settings.augment, augmenting.p,
                                    augmenting.draws[:, pass_index])

    # (1) Update D: maximize log D(x) + log(1 - D(G(z))).
    with layers.recorded_updates() as g_stat_updates:
        fake = seen(dcgan.generator(z, output_dim, training=True, **generates), 1)
    with layers.recorded_updates() as d_stat_updates:
        real_prob, real_logits = dcgan.discriminator(seen(real, 0), alpha=settings.alpha,
                                                     **networks, **real_classes)
    fake_prob, fake_logits = dcgan.discriminator(fake, reuse=True, alpha=settings.alpha,
                                                 update_moving_stats=False, **networks,
                                                 **fake_classes)
    d_loss = dcgan.discriminator_loss(real_logits, fake_logits, settings.smooth)
    d_real, d_fake = tf.reduce_mean(real_prob), tf.reduce_mean(fake_prob)
    d_real_sign = tf.reduce_mean(tf.sign(real_logits))  # ADA's r_t, for this batch
    g_vars = dcgan.trainable_variables(dcgan.GENERATOR_SCOPE)
    with tf.control_dependencies(d_stat_updates):
        last_update = d_optimizer.minimize(scaled(d_loss), var_list=dcgan.trainable_variables(
            dcgan.DISCRIMINATOR_SCOPE))

    # (2) Update G, g_steps times: maximize log D(G(z)) against the updated D.
    build_averaged = build_averaged or (lambda: _step_averaged_sampler(
        z, settings, labels.fake if labels else None))
    g_losses, averaged = [], None
    for index in range(settings.g_steps):
        with tf.control_dependencies([last_update]):
            if index > 0:  # G changed in the previous update: its forward pass is new
                with layers.recorded_updates() as g_stat_updates:
                    fake = seen(dcgan.generator(z, output_dim, reuse=True, training=True,
                                                **generates), 1 + index)
            _, fake_logits_after = dcgan.discriminator(fake, reuse=True, alpha=settings.alpha,
                                                       update_moving_stats=False, **networks,
                                                       **fake_classes)
            g_losses.append(dcgan.generator_loss(fake_logits_after))
        with tf.control_dependencies([last_update] + g_stat_updates):
            last_update = g_optimizer.minimize(scaled(g_losses[-1]), var_list=g_vars)
        if settings.g_ema_decay:
            if index == 0:  # the averaged generator's variables, once
                averaged = build_averaged()
            last_update = averaged_generator.update_average(settings.g_ema_decay, last_update)
    return _Step(last_update, d_loss, g_losses[0], d_real, d_fake, d_real_sign, averaged, g_vars)


def _step_averaged_sampler(z, settings, fake_labels=None):
    """The averaged generator's Sampler on `z` (and a conditional one's classes to generate),
    built with the step's settings."""
    return averaged_generator.averaged_sampler(
        z, settings.output_dim, settings.networks["precision"],
        settings.networks["implementation"], settings.image_size, fake_labels,
        settings.num_classes)


def _replica_loss_scale(strategy):
    """What each replica's losses are multiplied by: the strategy sums their gradients."""
    return 1.0 / strategy.num_replicas_in_sync


def _replicated_step(strategy, real_images, z, settings, optimizers, augmenting=None,
                     labels=None):
    """The step run by every replica of `strategy` on its slice of the batch fed here.

    Each replica's losses are divided by the number of replicas in sync: the v1 optimizers sum
    the replicas' gradients, so undivided, N replicas would step N times too far. The logged
    numbers are the means over all replicas (on every worker). Nothing here writes summaries:
    they do not work inside the replica function (TensorFlow #44352).
    """
    local_replicas = len(strategy.extended.worker_devices)
    loss_scale = _replica_loss_scale(strategy)
    averaged = []

    def build_averaged():
        """The averaged generator, once for all replicas, outside them (merge_call), where the
        one-device graph builds it: its sampler is the whole model's, on the whole z."""
        def build(_):
            if not averaged:
                averaged.append(_step_averaged_sampler(z, settings,
                                                       labels.fake if labels else None))
        tf.distribute.get_replica_context().merge_call(build)
        return averaged[0]

    def replica_step():
        context = tf.distribute.get_replica_context()
        # Replica ids run worker by worker (worker k holds k L ... k L + L - 1 of L each), so
        # the id modulo L is the replica's place on this worker, and in the batch fed here.
        local = context.replica_id_in_sync_group % local_replicas
        share = tf.shape(real_images)[0] // local_replicas
        rows = slice(local * share, (local + 1) * share)
        rows_augmenting = augmenting._replace(draws=augmenting.draws[rows]) if augmenting \
            else None
        rows_labels = _Labels(labels.real[rows], labels.fake[rows]) if labels else None
        step = _training_step(sessions.scale_pixels(real_images[rows]), z[rows], settings,
                              optimizers, loss_scale, build_averaged, rows_augmenting,
                              rows_labels)
        return (step.last_update, step.d_loss, step.g_loss, step.d_real, step.d_fake,
                step.d_real_sign)

    # do_not_convert: the function builds graph ops once; AutoGraph has nothing to convert.
    updates, *logged = strategy.extended.call_for_each_replica(
        tf.autograph.experimental.do_not_convert(replica_step))
    means = [strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for value in logged]
    return _Step(strategy.group(updates), *means, averaged[0] if averaged else None,
                 dcgan.trainable_variables(dcgan.GENERATOR_SCOPE))

"""Takes a run's generator out: `python export.py --run runs/svhn --out exports/svhn`, a SavedModel.

Plain TensorFlow loads it without this project: `tf.saved_model.load(dir)`, signature
'serving_default', `z` float32 [batch, z_dim] (any batch) -> `images` uint8 [batch, N, N, C], the
very pixels generate.py writes for the same z (its .npz holds them under 'z'). It holds the
generator generate.py samples: the run's newest checkpoint (or --checkpoint), its averaged copy if
the run keeps one and --raw is not given, batch norm in inference mode. `--format tflite` converts
it with TensorFlow's TF Lite converter into --out/model.tflite and runs it once in TF Lite's
interpreter against the SavedModel first. --out is written whole or not at all; an existing
export is replaced only with --force. Serving, the browser, ONNX: docs/export.md.
"""
import sys

from machinery import options, quiet_start

FORMATS = ("saved_model", "tflite")  # machinery/exporting.py's, without importing TensorFlow


def build_parser():
    parser = options.new_parser(__doc__.split("\n")[0])
    options.add_run_group(parser, "export the trained weights, not their average")
    group = parser.add_argument_group("what to export")
    add = group.add_argument
    add("--seed", type=options.SEED, default=0,
        help="seed of the averaged generator's batch-norm statistics, as generate.py's --seed: "
             "the same seed gives generate.py's pixels (default: 0; no effect without --g-ema "
             "or with --raw)")
    group = parser.add_argument_group("output")
    add = group.add_argument
    add("--out", required=True,
        help="the new folder to write (missing parents are created); never the run's")
    add("--format", choices=FORMATS, default="saved_model",
        help="saved_model: a TensorFlow SavedModel; tflite: --out/model.tflite, converted from "
             "it and checked against it")
    add("--force", action="store_true",
        help="replace an existing export at --out, once the new one is complete")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


if __name__ == "__main__":
    ARGS = quiet_start.parse_flags_then_import_tensorflow(parse_args)

from machinery import exporting  # noqa: E402  (TensorFlow: after the flags)


def main(argv=None, args=None):
    return exporting.export(args or parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(args=ARGS))

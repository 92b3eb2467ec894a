"""RunError, the one error a user can fix, and the exit statuses of the commands.

Every command prints a RunError as one line and exits with its status, never with a traceback;
`cause` turns an OSError or a TensorFlow error into the one line that says what went wrong.
"""
import json

EXIT_ERROR = 1
EXIT_NAN = 3            # a loss that is not finite stopped training
EXIT_INTERRUPTED = 130  # a signal stopped training after saving (128 + SIGINT, as shells say)


class RunError(Exception):
    """A problem the user can fix; the commands print it as one line and exit non-zero."""

    def __init__(self, message, exit_code=EXIT_ERROR):
        super().__init__(message)
        self.exit_code = exit_code


# Lines of a TensorFlow error message that say where, not what.
_TF_CONTEXT = ("Graph execution error", "Detected at node", "File \"", "Node:", "[[")


def cause(error):
    """What went wrong, in one line: an OSError's reason, or the line of a TensorFlow error
    that names the failure (its message wraps it in graph-execution context)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(_TF_CONTEXT)]
    return (meaningful or lines or [type(error).__name__])[-1]


def write_or_fail(path, write, *args, unsaved=None):
    """write(path, *args), a failure becoming one RunError line naming the path; `unsaved`
    says what is lost (default: nothing saved before)."""
    try:
        write(path, *args)
    except OSError as error:
        raise RunError(f"cannot write {path} ({cause(error)}); " + (unsaved or (
            "nothing saved before is lost. Free the space or fix the permission, then run "
            "the same command again"))) from None


def read_saved_record(path, what, remedy, is_valid=lambda record: isinstance(record, dict)):
    """The JSON record this program saved at `path`, None when there is none. One that cannot
    be read or parsed, or that `is_valid` rejects, is a RunError: "`path`: damaged `what`
    (why); `remedy`"."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise RunError(f"{path}: damaged {what} ({cause(error)}); {remedy}") from None
    if not is_valid(record):
        raise RunError(f"{path}: damaged {what} (not the record this program writes); {remedy}")
    return record

"""What the entry points share on the command line: the help layout, the settings line, counts.

Plain Python, no TensorFlow: every entry point builds its parser from this and the
hyperparameters, and parses its flags before it imports TensorFlow, so `--help` and a mistyped
flag answer at once instead of after seconds of importing.
"""
import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default once: not for switches or unset values, nor where the help says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False  # (0 == False, yet shown)
        if unset or action.default == argparse.SUPPRESS or "default" in text:
            return text
        return super()._get_help_string(action)


def new_parser(description):
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def plural(count, noun, plural_noun=None):
    """'1 epoch', '2 epochs', '1,000 images'."""
    word = noun if count == 1 else (plural_noun or noun + "s")
    return f"{count:,} {word}"


def _shown(value):
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def settings_lines(parser, args, extra=None):
    """The resolved settings, one line per group of flags (`  model: --z-dim 100 --lr 0.0002
    ...`), as flags a user could type again; switches that are off are left out. `extra` (a
    {title: text} dict) adds lines of what was derived, such as the data's size."""
    lines = []
    for group in parser._action_groups:
        words = []
        for action in group._group_actions:
            if not action.option_strings or action.dest == "help":
                continue
            value = getattr(args, action.dest, None)
            flag = action.option_strings[-1]
            if isinstance(action, argparse._StoreTrueAction):
                if value:
                    words.append(flag)
            elif value is not None:
                words.append(f"{flag} {_shown(value)}")
        if words:
            lines.append(f"  {group.title.split(' (')[0]}: {' '.join(words)}")
    for title, text in (extra or {}).items():
        lines.append(f"  {title}: {text}")
    return lines

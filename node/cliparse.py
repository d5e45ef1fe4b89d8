"""argparse for ringlab's commands (harness, ringctl): errors in one line naming what was wrong,
the closest right option or choice when one is close, and an unknown option reported by the
subcommand it was given to."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any, NoReturn

_QUOTED = re.compile(r"'([^']*)'")
_CHOICES = re.compile(r"(?:one of|choose from|comma list of)\s+(.*?)(?:, got\b|\)|$)")


def _closest(word: str, choices: Sequence[str]) -> str | None:
    import difflib

    lowered = {c.lower(): c for c in choices}  # QUORUM for quorum
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else None


def with_suggestion(message: str) -> str:
    """``message`` plus "; did you mean X?" when it rejects a quoted word that is close to one of
    the choices it lists (argparse's "invalid choice" and ringlab's "must be one of ..., got 'x'")."""
    listed = _CHOICES.search(message)
    if not listed or "did you mean" in message:
        return message
    bad = _QUOTED.findall(message[:listed.start()]) + _QUOTED.findall(message[listed.end():])
    if not bad:
        return message
    close = _closest(bad[0], [c for c in re.split(r"[\s,']+|\bor\b", listed[1]) if c])
    return f"{message}; did you mean {close}?" if close and close != bad[0] else message


class OneLineErrors(argparse.ArgumentParser):
    """Errors in one line (a command's usage block buried the line that matters), exiting
    ``usage_exit``."""

    usage_exit = 2

    def error(self, message: str) -> NoReturn:
        self.exit(self.usage_exit, f"{self.prog}: error: {with_suggestion(message)} (see `{self.prog} --help`)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """As argparse's, but an unknown option is named by the subcommand it was given to, with
        that command's closest option."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            chain = self._command_chain(parsed)
            command = chain[-1]
            unknown = next((w for w in extra if w.startswith("-")), extra[0]).split("=", 1)[0]
            said = f"unrecognized arguments: {' '.join(extra)}"
            close = _closest(unknown, _long_options(command))
            outer = next((p for p in reversed(chain[:-1]) if _closest(unknown, _long_options(p))), None)
            if close:
                said += f"; did you mean {close}?"
            elif outer is not None:
                option = _closest(unknown, _long_options(outer))
                said += f"; {option} is an option of `{outer.prog}`: give it before the command"
            command.error(said)
        return parsed

    def _command_chain(self, parsed: Any) -> list[argparse.ArgumentParser]:
        """This parser and the subcommand parsers ``parsed`` went through, outermost first."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(chosen, OneLineErrors):
                    return [self, *chosen._command_chain(parsed)]
        return [self]


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings if o.startswith("--")]

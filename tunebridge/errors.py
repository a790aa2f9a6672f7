"""User-facing errors: the CLI prints these without a traceback and exits with status 2."""


class TunebridgeError(Exception):
    """A problem with the user's input (file, field, line) that they can fix."""


def did_you_mean(word: str, choices) -> str | None:
    """The closest of ``choices`` to a misspelt ``word``, or None."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return close[0] if close else None


def unknown(what: str, word: str, choices) -> str:
    """``unknown model 'x'; did you mean 'y'? (known: ...)``"""
    near = did_you_mean(word, choices)
    return (
        f"unknown {what} {word!r}"
        + (f"; did you mean {near!r}?" if near else "")
        + f" (known: {', '.join(map(str, choices))})"
    )

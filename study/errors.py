"""One-line error messages that name the key, the value and what was expected."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class StudyInputError(ValueError):
    """Bad user input (sweep file, run-one arguments, API body). The message is one line per error."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


def short(value: Any, limit: int = 60) -> str:
    """repr(value), clipped to `limit` characters: how a value appears in an error line."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int past Python's 4300-digit repr limit; absurd nesting
        text = f"<int of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_text(key: Any, limit: int = 60) -> str:
    """A key as it appears in an error line: as written when printable, else its repr (so a key with
    a line break cannot split the line); clipped like values."""
    text = str(key)
    return text if text.isprintable() and len(text) <= limit else short(text, limit)


def describe_validation_error(error: ValidationError, prefix: str = "") -> list[str]:
    """Turn pydantic's errors into lines like: parameters.T: got 0, expected an integer >= 1."""
    lines = []
    for item in error.errors(include_url=False):
        location = ".".join(key_text(part) for part in item["loc"] if not _is_union_tag(part))
        key = f"{prefix}{location}" if location else prefix.rstrip(".") or "input"
        if item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (value {short(item.get('input'))})")
            continue
        expected = item["msg"]
        for lead in ("Input should be ", "Value error, ", "Assertion failed, "):
            expected = expected.removeprefix(lead)
        lines.append(f"{key}: got {short(item.get('input'))}, expected {expected}")
    return lines


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the discriminator tag / union member name into loc; users never wrote it.
    return isinstance(part, str) and (part in {"dugd", "chgd", "psor", "unrolling", "lista", "probe"} or "[" in part or part in {"float", "int", "str", "literal['random']"})

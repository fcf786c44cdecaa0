"""Comma-separated option lists (`--combiners`, `--md5-mode`)."""


def parse_choices(text, choices, what):
    """`"a, b,a"` -> ``("a", "b")``: validated against `choices`, duplicates removed, order kept."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in choices]
    if unknown or not names:
        raise ValueError(f"unknown {what}(s) {unknown or text!r}; choose from {', '.join(choices)}")
    return names

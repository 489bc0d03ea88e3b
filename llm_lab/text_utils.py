"""Small text helpers shared across packages."""


def natural_key(value) -> tuple:
    """Sort key that puts integer-like strings first, in numeric order ("2" before "10"), then the rest
    alphabetically: `sorted(labels, key=natural_key)`."""
    s = str(value)
    return (0, int(s), "") if s.lstrip("-").isdigit() else (1, 0, s)

"""The ``empressa`` command (placeholder until the node commands land)."""


def main() -> None:
    raise SystemExit("empressa: not yet implemented")

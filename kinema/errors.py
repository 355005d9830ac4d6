"""Error types for bad input: each names the culprit and the reason in one line."""


class KinemaError(Exception):
    """Bad input from the user: a file, a value or a config. The CLI prints it and exits 2."""


class ConfigError(KinemaError):
    """A recipe or override that does not fit the config schema."""

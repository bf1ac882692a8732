"""Exceptions with messages a user can act on."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and what was expected."""


class WeightsNotAvailableError(FileNotFoundError):
    """Pretrained weights were requested but are not on this machine (twostream never downloads
    implicitly: fetch them once with network access, or point the config at a local path)."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss or gradient; the message names the step and the bad terms.

    Raised before the optimizer applies the step, so the weights (and every checkpoint written so
    far) are the last finite ones. Exit status 3 from the CLI (see ``twostream.cli``)."""

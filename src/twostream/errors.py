"""Exceptions with messages a user can act on."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and what was expected."""


class WeightsNotAvailableError(FileNotFoundError):
    """Pretrained weights were requested but are not on this machine (twostream never downloads
    implicitly: fetch them once with network access, or point the config at a local path)."""

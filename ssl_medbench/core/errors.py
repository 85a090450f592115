"""Errors a user can cause: the command line prints them as one line and exits with code 2."""


class UserError(Exception):
    """A bad config, bad data or unknown plugin: the message names the file or key and what was expected."""


class ConfigError(UserError):
    """A grid file or ``--set`` override that does not match the grid schema."""


class DataError(UserError):
    """A dataset folder or file that does not follow its layout's convention."""


class UnknownPluginError(UserError, KeyError):
    """A plugin name that is not in its registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class StorageError(UserError):
    """A file the suite writes could not be written (disk full, no permission): nothing half-written is left."""


class TrackingUnavailable(UserError):
    """The MLflow tracking store cannot be reached (at start, or lost in the middle of a grid)."""

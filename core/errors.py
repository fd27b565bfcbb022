"""Exception types of the core. Each carries one sentence a user can act on; apps show it as is."""


class KinemaError(Exception):
    """Base class of every error the core raises on purpose."""


class InputError(KinemaError, ValueError):
    """The user's input (an upload, a trajectory, a parameter) cannot be used as given."""


class ModelNotAvailable(KinemaError, RuntimeError):
    """Model weights are not available; the message names the setting or env var to change."""

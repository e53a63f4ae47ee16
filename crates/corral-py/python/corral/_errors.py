"""corral's exceptions: one root class, each also the built-in a Python user would catch.

The runtime raises them with its own messages, verbatim (what was asked, what was found,
and a ``hint:`` line saying what to do).
"""


class CorralError(Exception):
    """The root of every error corral raises."""


class ConfigError(CorralError, ValueError):
    """A malformed setting: ``CORRAL_*``/``NEURON_RT_*`` values, ``corral.init`` arguments."""


class CoresBusyError(CorralError, RuntimeError):
    """The cores asked for are held by another process (the message names its pid and command)."""


class PlacementError(CorralError, ValueError):
    """A placement that cannot be met: ``nc_count`` 0 or past the process's cores, a bad start."""


class ModelLoadError(CorralError, RuntimeError):
    """A model that cannot be loaded: missing file, not a model, an operator the engine lacks."""


class InferenceError(CorralError, ValueError):
    """Wrong inputs: a name, dtype, shape or count the model does not take."""


class ExecTimeoutError(CorralError, TimeoutError):
    """A call that could not start within ``CORRAL_EXEC_TIMEOUT`` (its cores stayed busy)."""


class QueueFullError(CorralError, RuntimeError):
    """An async call refused at once because its replica's queue was full (retry, or add
    replicas); blocking calls wait for room instead, up to ``CORRAL_EXEC_TIMEOUT``."""


class EngineError(CorralError, RuntimeError):
    """The engine failed while running a call."""


class ModelUnloadedError(CorralError, RuntimeError):
    """A call to a model that was unloaded."""


class ForkError(CorralError, RuntimeError):
    """A forked child used its parent's runtime (load after the fork, or use ``corral launch``)."""


for _class in list(globals().values()):
    if isinstance(_class, type) and issubclass(_class, CorralError):
        _class.__module__ = "corral"  # shown as corral.InferenceError, where users import it
del _class

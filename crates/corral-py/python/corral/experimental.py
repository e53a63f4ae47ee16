"""``torch_neuronx.experimental``'s names, so the seeds' programs run with only the import
changed: ``torch_neuronx.experimental.neuron_cores_context`` -> ``corral.experimental...``."""

from . import multicore_context, neuron_cores_context, set_multicore, set_neuron_cores

__all__ = ["multicore_context", "neuron_cores_context", "set_multicore", "set_neuron_cores"]

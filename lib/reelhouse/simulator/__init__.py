"""The traffic simulator: a catalogue of users and videos with latent tastes, and the app
traffic (feed impressions, plays, skips, likes ...) they generate, produced to Kafka.

``catalogue`` owns the dimension data and upload stream, ``traffic`` the behaviour model and
encoding (no Kafka), ``malformed`` the deliberately broken messages, ``runner`` the producing
processes and the report, ``options`` the command-line options.
"""

from reelhouse.simulator.options import SimulationOptions, add_simulation_arguments, simulation_options_from_args
from reelhouse.simulator.runner import SimulationReport, run_simulation

__all__ = [
    "SimulationOptions",
    "SimulationReport",
    "add_simulation_arguments",
    "run_simulation",
    "simulation_options_from_args",
]

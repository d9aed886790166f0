"""billmig pipeline: synth, extract, map, load, window, phases, and the ``billmig`` CLI."""

__version__ = "0.1.0"

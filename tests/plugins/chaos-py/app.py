"""Test plugin `chaos-py`: the `chaos` test plugin's sandbox probes, in
Python (componentize-py). The stage itself is in `transform.py`, the module
componentize-py looks in for the exported `transform` interface."""

from wit_world import exports


class Transform(exports.Transform):
    """The world's export; the work is in `transform.Stage`."""

"""componentize-py's entry module for a Weir plugin (written by `weir
plugin build`): the world's exports. The stage itself is in
`transform.py`, the module named after the exported interface."""

from wit_world import exports


class Transform(exports.Transform):
    """The `transform` interface; its `stage` resource is `transform.Stage`."""

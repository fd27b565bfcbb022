"""Changes to diffusers models that add a technique in place, each removable (``joint``, ``cross_frame``)."""

"""Changes to diffusers models that add a technique to them in place, each removable (see ``joint``)."""

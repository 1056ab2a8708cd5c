"""Time of a training step from what the hardware has to do (``step``)."""

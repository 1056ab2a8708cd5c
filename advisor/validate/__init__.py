"""The models against measurements: memory (``memory``) and time (``speed``) against published
rows and harness runs, and leave-one-source-out calibration (``calibration``)."""

"""How answers look, for ``--json`` and for people: recipes (``recipe``), estimates and catalogs
(``estimate``), time and RL phases (``speed``), validation (``validate``), shared formats (``common``)."""

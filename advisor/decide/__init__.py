"""From inputs to a recipe: the practitioners' rules as data (``rules``), the procedure that applies
them (``procedure``), sizing an option against a GPU (``sizing``), what fits the clock
(``feasible``), hyperparameters (``hyper``), the one pass over measured evidence (``evidence``,
with ``forgetting``), the guide's budget table (``budget_table``) and the typed answer (``recipe``)."""

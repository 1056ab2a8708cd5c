"""Peak training memory: one configuration (``setup``), what the step holds between steps
(``state``), what autograd keeps (``activations``), the phase-by-phase estimate (``estimate``),
GRPO/DPO's extra phases (``rl``), and what a GPU holds around the step (``overhead``).

The simulator (``advisor.simulate``) counts the same step on fake tensors; this package is the
torch-free analytic model the default path uses."""

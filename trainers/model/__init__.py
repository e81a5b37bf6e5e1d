"""The network of the paper: its architecture specs, the update unit, the GUNN and SUNN layers
(Algorithm 1), whole networks and their analytic cost."""

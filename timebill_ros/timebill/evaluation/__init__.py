"""Reproduction of the TimeBill paper's experiment on this machine (issue 6): completion rate and
score against budget, under Kill and Skip-Next, for no eviction, fixed ratios and TimeBill."""

"""Training semantics shared by every backend: learning-rate schedules, loss averaging, loss-curve records."""

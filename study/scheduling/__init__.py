"""Running a sweep: the coordinator, its lease, the Ray task, the Optuna search, units of work."""

# Empty on purpose: a Ray worker importing a module here runs this file first (kept free of imports).

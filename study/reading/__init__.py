"""Reading a sweep back: results, queries, analysis (Pareto front, importances)."""

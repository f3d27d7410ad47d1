"""`study serve`: the FastAPI app, the sweeps it runs, its answer cache."""

"""Writing a sweep to MLflow: the write thread, the layout, the results table, bulk insert, journal, parent run, provenance, outage."""

"""The sweep report page, its sweep figures, and the figure backfill."""

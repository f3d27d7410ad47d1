"""The sweep file: schema, checks, loading, objectives."""

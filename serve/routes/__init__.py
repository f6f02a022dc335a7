"""The service's routers: `health` (probes, model metadata, metrics) and `segment` (``POST /segment``)."""

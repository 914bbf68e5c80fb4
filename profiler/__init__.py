"""The throughput profiler behind ``dali-cutmix profile``: :mod:`.measure` times the pipeline's stages and the
reference loader, :mod:`.report` turns the figures into a table, JSON and a chart."""

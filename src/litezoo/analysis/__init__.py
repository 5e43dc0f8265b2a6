"""Analysis: what a network costs (MACs, parameters, memory access, latency) and why FLOPs are not speed.

``count_macs`` / ``count_params`` are the quick numbers; ``profile_model`` gives the per-layer table;
``measure_latency`` times a forward pass honestly; ``compare`` and ``guidelines`` build on them.
"""

from litezoo.analysis.counting import count_macs, count_params, trace_costs

__all__ = ["count_macs", "count_params", "trace_costs"]

"""Analysis: what a network costs (MACs, parameters, memory access, latency) and why FLOPs are not speed.

``count_macs`` / ``count_params`` are the quick numbers; ``profile_model`` gives the per-layer table;
``measure_latency`` times a forward pass honestly. ``litezoo.analysis.compare`` (table + chart) and
``litezoo.analysis.guidelines`` (ShuffleNet V2's G1–G4 re-run) build on them. Conventions: docs/analysis.md.
"""

from litezoo.analysis.counting import count_macs, count_params, trace_costs
from litezoo.analysis.latency import measure_latency
from litezoo.analysis.profiler import profile_model

__all__ = ["count_macs", "count_params", "trace_costs", "measure_latency", "profile_model"]

"""Measuring models: latency, throughput and memory (size and FLOPs: ``ssformer.models.size``)."""

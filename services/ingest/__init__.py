"""Ingest service: live SeedLink (``eew ingest``) and archive replay (``eew replay``) into Kafka.

``core`` is pure (validation, repair, continuity, packetising); ``state`` tracks SeedLink
sequence numbers and persists them; ``publisher`` is the Kafka adapter; ``seedlink`` and
``replay`` are the input adapters.
"""

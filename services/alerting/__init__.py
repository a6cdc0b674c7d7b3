"""Alerting: station scores -> associated events -> Alert messages and deliveries to subscribers.

Packages, by role (each imports only the ones above it; ``tests/unit/test_alerting_layers.py``):

- ``association/``: the pure science, NumPy/stdlib, event time only. ``Associator`` (facade) over
  the reorder buffer, station triggers, association and emission; location, magnitude, intensity,
  stations and the network's geometry.
- ``formats/``: one builder per wire format -- alert JSON and protobuf (``messages``), CAP,
  QuakeML -- and the HMAC signature of delivered bodies (``signing``).
- ``dispatch/``: getting alerts out -- the durable outbox, the delivery engine with its webhook,
  MQTT and SSE senders, subscribers and the subscriber HTTP API.
- ``service.py`` wires them to Kafka (``settings.py``: every knob; ``offsets.py``: what may be
  committed; ``metrics.py``: the Prometheus bundle); ``python -m services.alerting`` runs it.
"""

"""Dispatch: getting alerts to subscribers. The durable outbox (``outbox``), the delivery engine
and webhook sender (``delivery``), MQTT (``mqtt``) and server-sent events (``sse``), the subscriber
registry and per-site forecasts (``subscribers``), and the subscriber HTTP API (``api`` on
``http_server``)."""

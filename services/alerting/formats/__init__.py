"""Alert formats: the alert JSON/protobuf messages (``messages``), CAP 1.2 (``cap``), QuakeML
(``quakeml``) and the HMAC signature of delivered bodies (``signing``). One builder per format,
shared by the alerting service, the subscriber API and validation."""

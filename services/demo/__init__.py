"""The demo: a replayed earthquake through broker -> detector -> alerting, ending in an alert."""

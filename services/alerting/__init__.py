"""Alerting: station scores -> associated events -> Alert messages and webhook deliveries."""

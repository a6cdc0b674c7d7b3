"""Every flag and environment variable of ``eew alert`` keeps its name: the locator, magnitude,
delivery, API and CAP configs became nested groups with a flag prefix (issue 18), and deploy/
manifests, SECURITY.md, README and operators use the names listed here (taken at the commit before)."""

from __future__ import annotations

import pytest

from services.alerting.settings import AlertingSettings
from services.common.settings import knobs, load_settings

# The flat names of AlertingSettings before the groups (0e79e01), in that order.
NAMES_BEFORE = [
    "bootstrap_servers",
    "http_host",
    "http_port",
    "log_level",
    "client_id",
    "group_id",
    "max_poll_records",
    "poll_timeout_ms",
    "max_unacked",
    "commit_interval_s",
    "flush_timeout_s",
    "close_timeout_s",
    "broker_timeout_s",
    "broker_check_timeout_s",
    "broker_check_interval_s",
    "alive_timeout_s",
    "housekeeping_interval_s",
    "publish_retry_s",
    "ready_stall_s",
    "scores_topic",
    "alerts_topic",
    "deadletter_topic",
    "stations",
    "webhook_urls",
    "webhook_secret",
    "min_stations",
    "vp_min_km_s",
    "tolerance_s",
    "max_spread_s",
    "max_link_km",
    "explained_coda_s",
    "min_trigger_duration_s",
    "detrigger_threshold",
    "detrigger_s",
    "event_ttl_s",
    "max_lateness_s",
    "max_hold_s",
    "station_idle_s",
    "pick_max_lead_s",
    "retrigger_separation_s",
    "trigger_threshold",
    "correlation",
    "amplitude_window_s",
    "max_p_window_s",
    "magnitude_update_step",
    "max_retain_s",
    "max_future_s",
    "express_triggers",
    "locate",
    "locate_vp_km_s",
    "locate_min_stations",
    "magnitude_nominal_gain",
    "locate_max_uncertainty_km",
    "locate_half_width_km",
    "restore_idle_s",
    "catch_up_max_buffer",
    "delivery_attempts",
    "delivery_backoff_initial_s",
    "delivery_backoff_max_s",
    "delivery_connect_timeout_s",
    "delivery_read_timeout_s",
    "delivery_workers",
    "delivery_max_age_s",
    "fanout_queue_size",
    "drain_s",
    "outbox_db",
    "outbox_table_prefix",
    "outbox_retention_days",
    "allow_private_webhooks",
    "api_port",
    "api_host",
    "api_tokens",
    "api_tokens_file",
    "api_request_timeout_s",
    "api_max_connections",
    "api_max_connections_per_client",
    "api_max_subscribers_per_token",
    "api_rate_per_s",
    "api_burst",
    "sse_public",
    "sse_max_clients",
    "sse_max_per_token",
    "sse_heartbeat_s",
    "mqtt_host",
    "mqtt_port",
    "mqtt_username",
    "mqtt_password",
    "mqtt_topic_prefix",
    "mqtt_publish_timeout_s",
    "cap_sender",
    "cap_status",
    "cap_area_radius_km",
    "cap_expires_s",
    "cap_signing_key",
    "cap_signing_cert",
    "outbox_secret_keys",
]


# Added since (every timeout a setting, issue 18); none renamed.
NAMES_ADDED = ["restore_max_s", "restore_metadata_timeout_s", "api_keep_alive_s", "api_shutdown_s", "delivery_in_flight_grace_s"]


def test_flat_names_flags_and_environment_are_unchanged() -> None:
    now = {k.name: k for k in knobs(AlertingSettings)}
    assert sorted(now) == sorted(NAMES_BEFORE + NAMES_ADDED)
    for name in NAMES_BEFORE:
        assert now[name].flag == "--" + name.replace("_", "-")
        assert now[name].env("EEW_") == "EEW_" + name.upper()


def test_help_lists_every_flat_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings(AlertingSettings, ["--help"])
    out = capsys.readouterr().out
    for name in NAMES_BEFORE:
        assert f"--{name.replace('_', '-')}" in out, name


def test_prefixed_flags_and_environment_reach_the_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EEW_API_PORT", "0")
    monkeypatch.setenv(
        "EEW_API_TOKENS", "ops:0123456789abcdef"
    )  # the service's own field, not ApiConfig.tokens
    monkeypatch.setenv("EEW_MQTT_HOST", "mqtt.local")
    monkeypatch.setenv("EEW_OUTBOX_RETENTION_DAYS", "2")
    s = load_settings(
        AlertingSettings,
        [
            "--locate-min-stations", "5", "--locate-half-width-km", "auto", "--magnitude-nominal-gain", "3e8",
            "--delivery-attempts", "2", "--fanout-queue-size", "7", "--allow-private-webhooks",
            "--sse-public", "true", "--cap-sender", "eew@example.org", "--api-burst", "3",
        ],
    )  # fmt: skip
    assert (s.locator.min_stations, s.locator.half_width_km, s.magnitude.nominal_gain) == (5, None, 3e8)
    assert (s.delivery.attempts, s.delivery.fanout_queue_size, s.delivery.retention_s) == (2, 7, 2 * 86400.0)
    assert (s.api.port, s.api.burst, s.api.sse_public, s.api.allow_private_webhooks) == (0, 3, True, True)
    assert s.cap.sender == "eew@example.org"
    api = s.api_config()
    assert [t.name for t in api.tokens] == ["ops"] and api.mqtt_enabled
    assert s.delivery_config().allow_private  # one knob for the API and the delivery
    assert load_settings(AlertingSettings, ["--locate", "false"]).locator_config() is None
    assert AlertingSettings(locate_vp_km_s=5.5).locator.vp_km_s == 5.5  # keyword by flat name

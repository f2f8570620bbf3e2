"""Alerts that reach people: alert state across runs and delivery to webhooks and Slack."""

from tracehouse.alerting.destinations import (
    Delivery,
    Destination,
    WebhookDestination,
    alert_payload,
    destinations_from_env,
    slack_message,
)
from tracehouse.alerting.notify import NotifyResult, notify, send_test_alert, track_alerts
from tracehouse.alerting.state import ALERT_STATE_SCHEMA, load_state, save_state, track

__all__ = [
    "ALERT_STATE_SCHEMA",
    "Delivery",
    "Destination",
    "NotifyResult",
    "WebhookDestination",
    "alert_payload",
    "destinations_from_env",
    "load_state",
    "notify",
    "save_state",
    "send_test_alert",
    "slack_message",
    "track",
    "track_alerts",
]

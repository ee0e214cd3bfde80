"""Slack alerts: `content` (what an alert shows), `blocks` (pure Block Kit formatting) and `slack`
(sending with timeouts and bounded retries). See docs/ALERTS.md."""

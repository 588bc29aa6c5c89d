"""A worker with ``BLIPWATCH_ALERTMANAGER_URL`` pages through a real Alertmanager: a simulated
incident appears in ``GET /api/v2/alerts`` as active while it fires, then leaves the active list and
reaches the receiver as ``resolved``. No separate bridge process.

The API responses are written to ``$EVIDENCE_DIR/alertmanager-incident.json`` (default: the test's
tmp dir).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.helpers import Worker, base_env, produce
from tests.integration.test_dashboards_prometheus import MID_INCIDENT, scenario  # noqa: F401 - fixture
from tests.services import Alertmanager, WebhookReceiver, wait_until

# a worker through a whole incident to a real Alertmanager (~36 s): with the long tests; make test keeps
# the bridge's incident test, the same mapping through the other path
pytestmark = [pytest.mark.integration, pytest.mark.soak, pytest.mark.timeout(600)]

DASHBOARD = "http://grafana.test:3000"


def test_worker_with_alertmanager_url_posts_the_incident_firing_then_resolved(
        broker, unique_topics, tmp_path, scenario):  # noqa: F811 - the imported fixture
    messages = scenario["messages"]
    onset = next(i for i, (_, line) in enumerate(messages) if MID_INCIDENT in line)
    with WebhookReceiver() as webhook, Alertmanager(tmp_path, webhook_url=webhook.url) as am:
        env = base_env(broker, unique_topics, BLIPWATCH_CONFIG=str(scenario["config"]),
                       BLIPWATCH_ALERTMANAGER_URL=am.url, BLIPWATCH_DASHBOARD_URL=DASHBOARD)
        with Worker(env, tmp_path) as worker:
            worker.wait_ready()
            produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], messages[:onset])

            def global_incident():
                return [alert for alert in am.alerts(alertname="CustomerBehaviourBlip",
                                                     metric="search_zero_results_rate")
                        if not {"channel", "country", "device"} & set(alert["labels"])]

            [active] = wait_until(global_incident, timeout=180, interval=1, what="the incident active in Alertmanager")
            fired_response = am.get("/api/v2/alerts")
            assert active["status"]["state"] == "active"
            assert active["labels"]["severity"] in ("warning", "critical")
            assert active["startsAt"].startswith("2026-01-05T18:0"), "startsAt is the incident's start"
            assert "search" in active["annotations"]["summary"].lower()
            assert active["annotations"]["dashboard"].startswith(DASHBOARD + "/d/blipwatch-blips/")
            fired_keys = {alert["labels"]["dedup_key"] for alert in fired_response}
            key = active["labels"]["dedup_key"]
            wait_until(lambda: [a for a in webhook.alerts("firing") if a["labels"]["dedup_key"] == key],
                       timeout=30, what="firing notification")

            produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], messages[onset:])
            wait_until(lambda: not am.alerts(dedup_key=key), timeout=180, interval=1,
                       what="the incident no longer active")
            [resolved] = wait_until(lambda: [a for a in webhook.alerts("resolved") if a["labels"]["dedup_key"] == key],
                                    timeout=30, what="resolved notification")
            # every incident of the scenario resolves, and nothing else was ever active
            wait_until(lambda: not am.alerts(alertname="CustomerBehaviourBlip"), timeout=120, interval=1,
                       what="no blip alert active once the scenario is over")
            resolved_response = am.get("/api/v2/alerts")
            time.sleep(2)
            assert am.alerts(dedup_key=key) == [], "a resolved incident must not be resurrected"
            assert {a["labels"]["dedup_key"] for a in webhook.alerts("resolved")} >= fired_keys
            assert "alertmanager bridge: consuming" in worker.log()
        assert worker.process.returncode == 0, worker.log()[-3000:]

    evidence = Path(os.environ.get("EVIDENCE_DIR") or tmp_path) / "alertmanager-incident.json"
    evidence.parent.mkdir(parents=True, exist_ok=True)
    evidence.write_text(json.dumps({
        "alertmanager": am.url,
        "fired": {"request": "GET /api/v2/alerts", "response": fired_response},
        "resolved": {"request": "GET /api/v2/alerts", "response": resolved_response,
                     "note": "Alertmanager's API lists active alerts only: a resolved one is absent; "
                             "its resolution is the webhook notification below",
                     "webhook_alert": resolved},
    }, indent=2) + "\n")
    print(f"\n{evidence}: fired {len(fired_response)} alerts, e.g. {json.dumps(active, indent=1)}\n"
          f"resolved: {json.dumps(resolved, indent=1)}")

"""The blipwatch Faust app, read top to bottom as the data flow (docs/architecture.md):

    customer-events ──ingest (batched consumer)──> blipwatch-metric-partials (+ customer-events-dlq)
    blipwatch-metric-partials ──aggregate (agent)──> blipwatch-metric-points, anomaly-alerts
                                                     (+ the detector-state table's changelog)

``create_app(settings, catalogue)`` builds it; ``blipwatch worker`` runs it. The stages live in
modules of their own: ``ingest_service`` (with ``rebalance`` and ``topic_keeper``) and
``aggregate_agent``.
"""

from __future__ import annotations

import faust
from faust.sensors.prometheus import setup_prometheus_sensors

from blipwatch.kafka import faust_compat
from blipwatch.kafka.partitioner import KeyHashCache
from blipwatch.kafka.producer_options import producer_options
from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.stream_app.aggregate_agent import AggregateAgent
from blipwatch.stream_app.config import Settings
from blipwatch.stream_app.replication import for_cluster as replication_for
from blipwatch.stream_app.ingest_service import IngestService
from blipwatch.stream_app.topic_keeper import TopicKeeper


def create_app(settings: Settings, catalogue: Catalogue) -> faust.App:
    replication = replication_for(settings)  # BLIPWATCH_REPLICATION_FACTOR, lowered on a smaller cluster
    app = faust.App(
        settings.app_id,
        **settings.faust_kwargs(),
        datadir=str(settings.data_path),
        store="memory://",
        **settings.faust_web_kwargs(),  # /metrics and a health check only
        topic_partitions=settings.partitions,
        topic_replication_factor=replication.factor,
        table_standby_replicas=1,
        # a 6 s session: joins in ~3 s on the embedded broker, and a dead worker's partitions
        # move within seconds on any Kafka
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        # open windows are held un-acknowledged until they close: a rebalance must not wait for them
        stream_wait_empty=False,
        # they are also older than Faust's livelock warning expects
        broker_commit_livelock_soft_timeout=3600,
        producer_acks=-1,
        producer_partitioner=KeyHashCache(),
        logging_config=None,
    )
    # idempotent retries on a real Kafka (a timed-out but written batch is not written twice)
    faust_compat.add_producer_options(app, producer_options(settings.embedded_broker))
    consumer_options: dict[str, int] = {}
    if settings.embedded_broker:
        from blipwatch.kafka import tansu_compat

        tansu_compat.install(app, settings)
        consumer_options["fetch_max_wait_ms"] = tansu_compat.FETCH_MAX_WAIT_MS

    # --- topics --------------------------------------------------------------------------
    events_topic = app.topic(settings.events_topic, partitions=settings.partitions,
                             key_serializer="raw", value_serializer="raw")
    partials_topic = app.topic(settings.partials_topic, partitions=settings.partitions, internal=True,
                               key_serializer="raw", value_serializer="raw", config=replication.topic_configs)
    # the DLQ, points and alerts are written with the producer directly (no Faust Topic per message)

    # --- tables --------------------------------------------------------------------------
    # detector + policy state per series, written when a window closes; a restarted or
    # rebalanced worker continues from here (standby replicas keep a warm copy).
    # The changelog topic is declared here because Table derives its codecs from key_type/value_type
    # (json by default), while the state is versioned bytes of its own.
    changelog_name = f"{settings.app_id}-detector-state-changelog"
    detector_state = app.Table(
        "detector-state", partitions=settings.partitions,
        changelog_topic=app.topic(changelog_name, partitions=settings.partitions,
                                  key_serializer="raw", value_serializer="raw", compacting=True,
                                  internal=True, acks=False, config=replication.topic_configs),
    )
    detector_state.key_serializer = detector_state.value_serializer = "raw"
    topics = TopicKeeper(settings.broker, settings.aiokafka_kwargs(), settings.partitions,
                         [settings.events_topic, settings.partials_topic, settings.dlq_topic,
                          settings.points_topic, settings.alerts_topic, changelog_name],
                         compacted=[changelog_name], replication=replication)

    # --- stage 1: ingest — events in, partials and dead letters out (a batched consumer) ------
    app.service(IngestService(app, settings, catalogue, events_topic, topics, consumer_options))

    # --- stage 2: aggregate, score, alert — partials in, points and alerts out ----------------
    aggregation = AggregateAgent(settings, catalogue, detector_state, changelog_name,
                                 producer=lambda: faust_compat.aiokafka_producer(app),
                                 consumer=lambda: app.consumer)

    @app.agent(partials_topic)
    async def aggregate(stream):
        async for event in stream.noack().events():
            await aggregation.handle(event.value, event.message.tp, event.message.offset, event.ack)

    @app.task
    async def write_state_when_quiet() -> None:
        await aggregation.write_state_when_quiet()

    # on stop, before the tables stop: finish the message in hand, write its state, commit
    faust_compat.before_tables_stop(app, aggregation.finish_then_commit)

    @app.on_partitions_revoked.connect
    async def forget_partitions(app_, revoked, **kwargs) -> None:
        aggregation.forget_partitions()

    # --- optional: alerts to Alertmanager in-process (BLIPWATCH_ALERTMANAGER_URL) -------------
    from blipwatch.stream_app.alertmanager_bridge import run_in_worker

    run_in_worker(app, settings)

    setup_prometheus_sensors(app, name_prefix="blipwatch_faust")
    return app

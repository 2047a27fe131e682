"""A Faust worker that decides nothing: the floor under stopguard's cost.

`stopguard bench` runs it beside the real worker on the same backlog. It is
built by the same `build_faust_app` (same broker options, same consumer
settings) and, for every send request, reads the record, parses it, writes
one row to a table and produces one answer to the approved topic keyed by
subscriber: the Kafka and Faust work a decision cannot avoid, with no
rules, no ordering and no outbox. The table row and the answer leave
through the worker's `DeliveryProducer`, as the worker's do; inputs are
acknowledged as Faust does by default, without waiting for them. Inbound
records are only acknowledged. Whatever stopguard does slower than this is
its own; what this does slower than a bare confluent-kafka loop is Faust's.

Run as `python -m app.tools.faust_floor` with the same STOPGUARD_* settings
as a worker.
"""

from __future__ import annotations

import faust
import orjson
from faust.types import StreamT

from app.logs import drop_spinner, logging_config
from app.settings import Settings
from app.topics import load_catalog
from app.worker.app import build_faust_app
from app.worker.delivery import DeliveryProducer
from app.worker.event_loop import install_event_loop
from app.worker.outbox import ConfirmedTable


def build_floor_app(settings: Settings) -> faust.App:
    catalog = load_catalog(settings)
    app = build_faust_app(settings, catalog)
    inputs = app.topic(catalog.requests, catalog.inbound)
    delivery = DeliveryProducer(settings)
    app.service(delivery)  # type: ignore[arg-type]
    answered: ConfirmedTable = app.Table(  # type: ignore[assignment]
        "answered", partitions=catalog.partitions
    )
    answered.producer = delivery

    async def answer(stream: StreamT) -> None:
        async for event in stream.events():  # type: ignore[attr-defined]
            if event.message.topic != catalog.requests:
                continue
            record = orjson.loads(event.value)
            record["status"] = "approved"
            answer = orjson.dumps(record)
            answered[record["request_id"]] = answer
            delivery.produce(catalog.approved, record["to"].encode(), answer)

    app.agent(inputs, name="answer")(answer)
    return app


def main() -> None:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    install_event_loop(settings)
    worker = faust.Worker(
        build_floor_app(settings),
        loglevel=settings.log_level,
        logging_config=logging_config(settings),
        quiet=True,
    )
    drop_spinner(worker)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()

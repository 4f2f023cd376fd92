"""The transformer benchmark's baseline: the same run loop with no mapping.

`python -m devtools.bench.rawloop` consumes RawItems, decodes them with fastavro,
encodes them again and produces them (consume → decode → encode → produce), through
services/common's RunLoop with the transformer's batch size, so the only difference to
the transformer is the mapping step. RAWLOOP_TRANSACTIONAL=1 commits each batch in a
Kafka transaction as the transformer does; 0 produces, flushes and commits offsets.
Settings: KAFKA_* as the services, RAWLOOP_GROUP_ID, RAWLOOP_BATCH_SIZE, RAWLOOP_OUT.
"""

from __future__ import annotations

import logging
import os

from confluent_kafka import Message

from services.common import topics
from services.common.kafka import make_consumer, make_producer
from services.common.records import OutRecord
from services.common.runloop import RunLoop, per_record
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.stopper import Stopper


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    kafka = KafkaSettings()
    serde = default_serde()
    transactional = os.environ.get("RAWLOOP_TRANSACTIONAL", "1") == "1"
    group = f"{kafka.topic_prefix}{os.environ.get('RAWLOOP_GROUP_ID', 'bench-rawloop')}"
    out_topic = kafka.topic(os.environ.get("RAWLOOP_OUT", topics.CANONICAL))

    def handle(msg: Message) -> list[OutRecord]:
        name, record = serde.decode(msg.value())
        return [OutRecord(out_topic, msg.key(), serde.encode(name, record), msg.headers() or [])]

    RunLoop(
        stage="rawloop",
        consumer=make_consumer(kafka, group_id=group),
        producer=make_producer(
            kafka, transactional_id=f"{group}-{os.getpid()}" if transactional else None
        ),
        topics=[kafka.topic(topics.RAW)],
        handler=per_record(handle),
        dlq_topic=kafka.topic(topics.DLQ),
        stopper=Stopper().install(),
        transactional=transactional,
        batch_size=int(os.environ.get("RAWLOOP_BATCH_SIZE", "500")),
    ).run()


if __name__ == "__main__":
    main()

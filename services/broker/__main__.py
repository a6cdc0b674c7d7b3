"""``eew broker``: run the embedded broker in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import Field
from pydantic_settings import CliImplicitFlag

from services.broker.embedded import EmbeddedBroker
from services.common.lifecycle import StopFlag, setup_logging
from services.common.settings import ServiceSettings, load_settings

log = logging.getLogger("eew.broker")


class BrokerSettings(ServiceSettings):
    """Settings of ``eew broker``."""

    port: int = Field(9092, description="Port Tansu listens on, on 127.0.0.1.")
    durable: CliImplicitFlag[bool] = Field(
        False, description="Keep data across restarts (Tansu s3:// on a local SeaweedFS); flag --durable."
    )
    data_dir: Path = Field(Path(".eew-run/broker"), description="Where durable mode keeps its data.")
    create_topics: CliImplicitFlag[bool] = Field(
        True, description="Create the pipeline's topics with their final partitions (--no-create-topics)."
    )


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(BrokerSettings, argv)
    setup_logging(settings.log_level)
    stop = StopFlag().install_signal_handlers()
    durable_dir = settings.data_dir if settings.durable else None
    with EmbeddedBroker(
        port=settings.port, durable_dir=durable_dir, create_topics=settings.create_topics
    ) as b:
        print(f"broker ready: --bootstrap-servers {b.bootstrap}", flush=True)
        while not stop.wait(0.5):
            if b.proc is not None and b.proc.poll() is not None:
                log.error("tansu exited with code %s", b.proc.returncode)
                return 1
            if b.s3 is not None and b.s3.proc is not None and b.s3.proc.poll() is not None:
                log.error("SeaweedFS (weed) exited with code %s", b.s3.proc.returncode)
                return 1
    log.info("broker stopped")
    return 0

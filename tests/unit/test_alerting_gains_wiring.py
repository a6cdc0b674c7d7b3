"""The alerting service hands station gains from its station file to the associator (live Pd magnitude)."""

from pathlib import Path

from prometheus_client import CollectorRegistry

from services.alerting.service import AlertingService
from services.alerting.settings import AlertingSettings


def test_gains_from_the_station_csv_reach_the_associator(tmp_path: Path) -> None:
    csv = tmp_path / "stations.csv"
    csv.write_text(
        "network,station,location,latitude,longitude,elevation_m,gain,gain_unit\n"
        "XX,S01,,37.8,-122.2,0,6.0e8,M/S\n"
        "XX,S02,,37.9,-122.1,0,,\n"
    )
    settings = AlertingSettings(stations=csv, outbox_db=f"sqlite:///{tmp_path}/outbox.sqlite")
    service = AlertingService(settings, CollectorRegistry())
    try:
        assert service.gains == {"XX.S01": 6.0e8}
        service._make_core(None)
        assert service.core is not None and service.core.gains == {"XX.S01": 6.0e8}
    finally:
        service._close_delivery()

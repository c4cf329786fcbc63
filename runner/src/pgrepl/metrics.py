"""Prometheus metrics of a runner, served over HTTP by its controller (`pgrepl run`) when the setting
`metrics_listen` is ADDRESS:PORT (empty or off: no listener). Every scrape looks afresh (observe.figures): one
query per source database and a few on the control database, on connections of its own kept between scrapes.

prometheus_client (Debian's python3-prometheus-client) is imported only when a listener is asked for, so a host
without it runs the runner all the same, and says why there are no metrics.
"""

from __future__ import annotations

import logging
import math
import threading

import psycopg

from . import catalog, observe
from .errors import PgreplError

log = logging.getLogger("pgrepl")


def parse_listen(value: str) -> tuple[str, int] | None:
    """'10.0.0.5:9187' -> ('10.0.0.5', 9187); '[::1]:9187' -> ('::1', 9187); '' or 'off' -> None."""
    value = value.strip()
    if value in ("", "off"):
        return None
    host, port = value.rsplit(":", 1)
    return host.strip("[]"), int(port)


def _num(v) -> float:
    return math.nan if v is None else float(v)


class Collector:
    """A prometheus_client collector that asks the control database and the sources at each scrape."""

    def __init__(self, control_conninfo: str) -> None:
        self.conninfo = control_conninfo
        self.lock = threading.Lock()   # the HTTP server may serve two scrapes at once; the connections are shared
        self.control: psycopg.Connection | None = None
        self.sources: observe.Sources | None = None

    def _figures(self) -> dict:
        if self.control is None or self.control.closed or self.control.broken:
            if self.sources is not None:
                self.sources.close()
            self.control = catalog.open_control(self.conninfo)
            self.sources = observe.Sources(self.control)
        return observe.figures(self.control, self.sources)

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        with self.lock:
            try:
                f = self._figures()
                up = 1
            except (psycopg.Error, PgreplError) as e:
                log.warning("metrics: cannot read the control database: %s", str(e).strip())
                if self.control is not None:
                    self.control.close()
                f, up = {"syncs": {}, "sources": {}, "errors": {}}, 0
        st = ["sync", "target"]
        g = {name: GaugeMetricFamily(f"pgrepl_{name}", about, labels=labels) for name, about, labels in [
            ("control_up", "1 when the control database answered this scrape", []),
            ("backlog_rows", "delta rows captured on the source and not yet applied to the target", st),
            ("lag_seconds", "age of the oldest change not yet applied to the target (0: nothing owed)", st),
            ("last_applied_change_age_seconds", "age of the newest change applied to the target", st),
            ("last_good_run_age_seconds", "seconds since the last good run towards the target ended", st),
            ("last_run_good", "1 when the last finished run towards the target was good, 0 when it failed", st),
            ("worker_up", "1 when a worker holds the sync's lease (runs it), 0 otherwise; active syncs only",
             ["sync"]),
            ("progress_rows_done", "rows done by the running copy or catch-up", st + ["kind"]),
            ("progress_rows_total", "rows the running copy or catch-up has in all (estimate)", st + ["kind"]),
            ("source_up", "1 when the source database answered this scrape", ["db"]),
            ("delta_rows", "rows in the source's delta stores (statistics' estimate)", ["db"]),
            ("delta_bytes", "size on disk of the source's delta stores", ["db"]),
            ("purge_horizon_age_seconds", "age of the oldest row kept in the source's delta stores", ["db"])]}
        c = {name: CounterMetricFamily(f"pgrepl_{name}", about, labels=labels) for name, about, labels in [
            ("runs", "runs towards the target by result (kept in pgrepl.run until purged)", st + ["result"]),
            ("rows", "rows applied to the target by operation", st + ["op"]),
            ("conflicts", "swap conflicts journaled, by rule", ["sync", "rule"])]}
        g["control_up"].add_metric([], up)
        for name, s in f["syncs"].items():
            if s["active"]:
                g["worker_up"].add_metric([name], 1 if s["worker_up"] else 0)
            for rule, n in s["conflicts"].items():
                c["conflicts"].add_metric([name, rule], n)
            for tgt, t in s["targets"].items():
                key = [name, tgt]
                if t["backlog"] is not None:
                    g["backlog_rows"].add_metric(key, t["backlog"])
                    g["lag_seconds"].add_metric(key, t["lag"])
                if t["applied_age"] is not None:
                    g["last_applied_change_age_seconds"].add_metric(key, t["applied_age"])
                g["last_good_run_age_seconds"].add_metric(key, _num(t["last_good_age"]))
                if t["last_result"]:
                    g["last_run_good"].add_metric(key, 1 if t["last_result"] == "good" else 0)
                for result, n in t["runs"].items():
                    c["runs"].add_metric(key + [result], n)
                for op, n in t["rows"].items():
                    c["rows"].add_metric(key + [op], n)
                p = t["progress"]
                if p and p["running"]:
                    g["progress_rows_done"].add_metric(key + [p["kind"]], p["done"])
                    g["progress_rows_total"].add_metric(key + [p["kind"]], _num(p["total"]))
        for db in sorted(set(f["sources"]) | set(f["errors"])):
            g["source_up"].add_metric([db], 0 if db in f["errors"] else 1)
            d = f["sources"].get(db)
            if d:
                g["delta_rows"].add_metric([db], d["rows"])
                g["delta_bytes"].add_metric([db], d["bytes"])
                g["purge_horizon_age_seconds"].add_metric([db], d["oldest_age"])
        yield from g.values()
        yield from c.values()


def serve(control_conninfo: str, listen: str) -> bool:
    """Starts the metrics listener in a thread of this process; False (logged) when it cannot."""
    where = parse_listen(listen)
    if where is None:
        return False
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        log.error("metrics_listen is %s but prometheus_client is not installed (python3-prometheus-client): "
                  "no metrics", listen)
        return False
    registry = CollectorRegistry()
    registry.register(Collector(control_conninfo))
    try:
        start_http_server(where[1], addr=where[0], registry=registry)
    except OSError as e:
        log.error("metrics: cannot listen on %s: %s", listen, e)
        return False
    log.info("metrics on http://%s/metrics", listen)
    return True

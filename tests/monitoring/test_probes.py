"""HTTP/TCP probes against real local peers, target validation and the Target admin."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitoring.collectors import probes
from monitoring.models import Series, Target
from monitoring.storage import series_cache

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_series_cache() -> Iterator[None]:
    """Series ids cached by an earlier test point at rows its rollback removed."""
    series_cache.clear()
    yield
    series_cache.clear()


def target(address: str, **fields: object) -> Target:
    values: dict[str, object] = {
        "name": f"t{Target.objects.count()}",
        "kind": Target.Kind.HTTP,
        "address": address,
        "interval": dt.timedelta(seconds=60),
        "timeout": dt.timedelta(seconds=2),
        **fields,
    }
    return Target.objects.create(**values)


def probe(t: Target) -> probes.ProbeResult:
    return probes.probe_targets([t])[t.pk]


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    """A threaded HTTP server, so a hanging handler does not hold up other requests."""
    release = threading.Event()
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.release = release  # type: ignore[attr-defined]
    srv.start()
    yield srv
    release.set()
    srv.clear()
    srv.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestHttp:
    def test_up_with_expected_status_and_keyword(self, server: HTTPServer) -> None:
        server.expect_request("/health").respond_with_data("status: all systems OK", status=200)
        result = probe(target(server.url_for("/health"), keyword="all systems OK"))
        assert result.success, result.error
        assert result.status == 200 and 0 < result.duration_ms < 2000
        assert result.tls_days_left is None

    def test_wrong_status_fails_and_says_why(self, server: HTTPServer) -> None:
        server.expect_request("/health").respond_with_data("down for maintenance", status=503)
        result = probe(target(server.url_for("/health")))
        assert not result.success
        assert result.status == 503 and result.error == "status 503, expected 200"

    def test_any_status_below_400_when_none_is_expected(self, server: HTTPServer) -> None:
        server.expect_request("/accepted").respond_with_data("", status=204)
        assert probe(target(server.url_for("/accepted"), expected_status=None)).success

    def test_missing_keyword_fails(self, server: HTTPServer) -> None:
        server.expect_request("/health").respond_with_data("<html>maintenance page</html>", status=200)
        result = probe(target(server.url_for("/health"), keyword="all systems OK"))
        assert not result.success
        assert result.error == "keyword 'all systems OK' not found"

    def test_redirects_are_followed(self, server: HTTPServer) -> None:
        server.expect_request("/old").respond_with_data("", status=302, headers={"Location": "/new"})
        server.expect_request("/new").respond_with_data("landed", status=200)
        result = probe(target(server.url_for("/old"), keyword="landed"))
        assert result.success, result.error

    def test_hanging_endpoint_times_out_without_holding_up_the_others(self, server: HTTPServer) -> None:
        release = server.release  # type: ignore[attr-defined]

        def hang(request: Request) -> Response:
            release.wait(30)
            return Response("too late")

        server.expect_request("/hang").respond_with_handler(hang)
        server.expect_request("/fast").respond_with_data("ok")
        hanging = target(server.url_for("/hang"), timeout=dt.timedelta(milliseconds=500))
        fast = target(server.url_for("/fast"))
        started = time.monotonic()
        results = probes.probe_targets([hanging, fast])
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"probing took {elapsed:.1f} s"
        assert not results[hanging.pk].success
        assert results[hanging.pk].error == "timed out after 0.5 s"
        assert results[fast.pk].success

    def test_refused_connection_fails(self) -> None:
        result = probe(target(f"http://127.0.0.1:{free_port()}/"))
        assert not result.success and result.error == "connection refused"


def self_signed(tmp_path: Path, days: int) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


class TestHttps:
    @pytest.fixture
    def tls_server(self, tmp_path: Path) -> Iterator[HTTPServer]:
        srv = HTTPServer(host="localhost", port=0, ssl_context=self_signed(tmp_path, days=30))
        srv.start()
        srv.expect_request("/").respond_with_data("secure OK")
        yield srv
        srv.clear()
        srv.stop()

    def test_days_left_of_the_certificate(self, tls_server: HTTPServer) -> None:
        result = probe(target(tls_server.url_for("/"), verify_tls=False, keyword="secure OK"))
        assert result.success, result.error
        assert result.tls_days_left == pytest.approx(30, abs=0.1)

    def test_untrusted_certificate_fails_but_still_reports_days_left(self, tls_server: HTTPServer) -> None:
        result = probe(target(tls_server.url_for("/"), verify_tls=True))
        assert not result.success
        assert result.error.startswith("TLS: ")
        assert result.tls_days_left == pytest.approx(30, abs=0.1)


class TestTcp:
    def test_open_port_is_up(self, server: HTTPServer) -> None:
        result = probe(target(f"127.0.0.1:{server.port}", kind=Target.Kind.TCP, expected_status=None))
        assert result.success and 0 < result.duration_ms < 2000

    def test_closed_port_is_down(self) -> None:
        result = probe(target(f"127.0.0.1:{free_port()}", kind=Target.Kind.TCP))
        assert not result.success and result.error == "connection refused"


class TestSchedule:
    def test_each_target_is_probed_at_its_own_interval(self, server: HTTPServer) -> None:
        server.expect_request("/").respond_with_data("ok")
        now = timezone.now()
        url = server.url_for("/")
        never = target(url, name="never-probed")
        overdue = target(url, name="overdue", last_checked_at=now - dt.timedelta(seconds=61))
        recent = target(url, name="recent", last_checked_at=now - dt.timedelta(seconds=30))
        target(url, name="disabled", enabled=False)
        readings = probes.ProbesCollector().collect(now)
        probed = {r.labels["target"] for r in readings if r.name == "probe_success"}
        assert probed == {"never-probed", "overdue"}
        for t in (never, overdue):
            t.refresh_from_db()
            assert t.last_checked_at == now and t.last_success is True and t.last_duration_ms is not None
        recent.refresh_from_db()
        assert recent.last_checked_at == now - dt.timedelta(seconds=30)
        # Next cycle, 10 s later: nothing is due.
        assert probes.ProbesCollector().collect(now + dt.timedelta(seconds=10)) == []

    def test_a_due_target_is_claimed_by_one_run_only(self, server: HTTPServer) -> None:
        t = target(server.url_for("/"))
        stale_copy = Target.objects.get(pk=t.pk)
        now = timezone.now()
        assert probes.claim([t], now) == [t]
        assert probes.claim([stale_copy], now) == []

    def test_samples_carry_the_target_label(self, server: HTTPServer) -> None:
        from monitoring import collectors

        server.expect_request("/").respond_with_data("ok")
        target(server.url_for("/"), name="homepage")
        collectors.run("probes")
        stored = {s.name: s for s in Series.objects.filter(labels__target="homepage")}
        assert set(stored) == {"probe_success", "probe_duration_ms", "probe_http_status"}
        assert stored["probe_success"].last_value == 1
        assert stored["probe_http_status"].last_value == 200

    def test_probe_series_expect_a_sample_per_target_interval(self, server: HTTPServer) -> None:
        from monitoring import collectors

        server.expect_request("/").respond_with_data("ok")
        t = target(server.url_for("/"), name="slow-schedule", interval=dt.timedelta(minutes=5))
        collectors.run("probes")
        series = Series.objects.filter(labels__target="slow-schedule")
        assert set(series.values_list("interval_seconds", flat=True)) == {300}, "not stale between two probes"
        Target.objects.filter(pk=t.pk).update(interval=dt.timedelta(minutes=1))
        collectors.run("probes", only_due=False)
        assert set(series.values_list("interval_seconds", flat=True)) == {60}


class TestValidation:
    def errors(self, **fields: object) -> dict[str, list[str]]:
        values: dict[str, object] = {
            "name": "x",
            "kind": Target.Kind.HTTP,
            "address": "https://example.com/health",
            "interval": dt.timedelta(seconds=60),
            "timeout": dt.timedelta(seconds=5),
            **fields,
        }
        try:
            Target(**values).full_clean()
        except ValidationError as error:
            return error.message_dict
        return {}

    def test_valid_targets(self) -> None:
        assert self.errors() == {}
        assert self.errors(address="http://grafana:3000/api/health") == {}
        assert self.errors(kind=Target.Kind.TCP, address="db.internal:5432", expected_status=None) == {}
        assert self.errors(kind=Target.Kind.TCP, address="[::1]:6379") == {}

    def test_http_needs_a_url(self) -> None:
        assert set(self.errors(address="example.com/health")) == {"address"}
        assert set(self.errors(address="ftp://example.com/")) == {"address"}
        assert set(self.errors(address="http://example.com:99999/")) == {"address"}

    def test_tcp_needs_host_and_port(self) -> None:
        assert set(self.errors(kind=Target.Kind.TCP, address="db.internal")) == {"address"}
        assert set(self.errors(kind=Target.Kind.TCP, address="db.internal:0")) == {"address"}
        assert set(self.errors(kind=Target.Kind.TCP, address="https://db:5432")) == {"address"}
        assert set(self.errors(kind=Target.Kind.TCP, address="db:5432", keyword="OK")) == {"keyword"}

    def test_interval_and_timeout(self) -> None:
        assert set(self.errors(interval=dt.timedelta(seconds=-10))) >= {"interval"}
        assert set(self.errors(timeout=dt.timedelta(0))) >= {"timeout"}
        assert set(self.errors(timeout=dt.timedelta(seconds=60))) == {"timeout"}
        assert set(self.errors(timeout=dt.timedelta(minutes=5), interval=dt.timedelta(hours=1))) == {"timeout"}

    def test_database_refuses_a_timeout_not_below_the_interval(self) -> None:
        with pytest.raises(IntegrityError), transaction.atomic():
            target("http://example.com/", timeout=dt.timedelta(seconds=60), interval=dt.timedelta(seconds=60))


class TestAdmin:
    def test_list_shows_last_result_and_probe_now_reports(self, staff_client: Client, server: HTTPServer) -> None:
        server.expect_request("/up").respond_with_data("ok")
        server.expect_request("/down").respond_with_data("nope", status=500)
        up = target(server.url_for("/up"), name="shop")
        down = target(server.url_for("/down"), name="billing")
        url = reverse("admin:monitoring_target_changelist")
        page = staff_client.get(url)
        assert page.status_code == 200 and "never probed" in page.content.decode()

        response = staff_client.post(url, {"action": "probe_now", "_selected_action": [up.pk, down.pk]}, follow=True)
        text = response.content.decode()
        assert "2 targets probed: 1 up, 1 down (billing: status 500, expected 200)." in text
        up.refresh_from_db()
        down.refresh_from_db()
        assert up.last_success is True and down.last_success is False
        assert Series.objects.get(name="probe_success", labels__target="billing").last_value == 0

        page = staff_client.get(url + "?result=down").content.decode()
        assert "billing" in page and "shop" not in page

    def test_add_form_names_the_bad_field(self, staff_client: Client) -> None:
        response = staff_client.post(
            reverse("admin:monitoring_target_add"),
            {
                "name": "db",
                "kind": "tcp",
                "address": "db.internal",
                "interval": "00:01:00",
                "timeout": "00:00:05",
                "enabled": "on",
            },
        )
        assert response.status_code == 200
        assert "Enter host:port" in response.content.decode()
        assert not Target.objects.filter(name="db").exists()

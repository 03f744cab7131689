"""Headers through the server: SHOW gives a job's headers after Disque's 15 fields (only for a
job that has some), and the ``disque://`` store reads them back; what Disque clients read
of a job without headers is unchanged."""

from __future__ import annotations

from pathlib import Path

from disquette import connect
from disquette.disque import parse_show, show_fields
from disquette.job import Job, new_job_id
from disquette.server.commands.jobs import encode_show
from tests.servers.disque import DisqueServer, command

from .test_vocabulary import NOW, _read

HEADERS = {"traceparent": "00-abc-01", "clé": "é 日本"}


def test_show_adds_headers_only_for_a_job_that_has_some() -> None:
    plain = Job(new_job_id(3600, 30), "q", b"body", created_at=NOW, run_at=NOW)
    reply = _read(encode_show(plain, NOW, "a" * 40))
    assert len(reply) == 30  # Disque's fields exactly
    assert parse_show(reply, NOW).headers == {}
    carrying = Job(plain.id, "q", b"body", created_at=NOW, run_at=NOW, headers=HEADERS)
    reply = _read(encode_show(carrying, NOW, "a" * 40))
    assert len(reply) == 32
    flat = [text.encode() for pair in HEADERS.items() for text in pair]
    assert show_fields(reply)["headers"] == flat  # names and values in turn, as HGETALL
    assert parse_show(reply, NOW).headers == HEADERS


def test_jobs_added_to_the_store_show_their_headers_through_the_server(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with connect(store_url) as direct:
        carrying = direct.add(b"raw", "q", headers=HEADERS)
        plain = direct.add(b"raw", "q")
    server = DisqueServer(store_url).start()
    try:
        with connect(server.url) as remote:
            assert remote.show(carrying).headers == HEADERS
            assert remote.show(plain).headers == {}
        # A Disque client still reads the body's bytes, exactly.
        reply = command(server.port, "GETJOB", "NOHANG", "COUNT", "2", "FROM", "q")
        assert [item[2] for item in reply] == [b"raw", b"raw"]
    finally:
        server.stop()

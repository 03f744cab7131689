"""OpenTelemetry tracing: spans per the messaging conventions, the producer's context carried
in the job's headers to the worker, in one process and across processes, and nothing
imported from opentelemetry until tracing is turned on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import disquette
from disquette import Job, Worker, tracing

from .server.conftest import ServerProcess
from .worker.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for the duration of the test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(provider)
    try:
        yield exporter
    finally:
        tracing.uninstrument()
        provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def traceparent(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def test_add_get_ack_make_send_receive_settle_spans(spans: InMemorySpanExporter) -> None:
    with disquette.connect("memory://tracing-basic") as client:
        job_id = client.add({"n": 1}, "mail", headers={"tenant": "t1"})
        job = client.get("mail", timeout=0)
        client.ack(job)
    (send,) = named(spans, "send mail")
    assert send.kind is SpanKind.PRODUCER
    assert send.attributes is not None
    assert send.attributes["messaging.system"] == "disquette"
    assert send.attributes["messaging.destination.name"] == "mail"
    assert send.attributes["messaging.message.id"] == job_id
    assert send.attributes["messaging.operation.type"] == "send"
    # The producer's context travels in the headers, beside the caller's own.
    assert job.headers == {"tenant": "t1", "traceparent": traceparent(send)}
    (receive,) = named(spans, "receive mail")
    assert receive.kind is SpanKind.CLIENT
    assert receive.attributes is not None
    assert receive.attributes["messaging.message.id"] == job_id
    assert [link.context.span_id for link in receive.links] == [
        send.get_span_context().span_id  # type: ignore[union-attr]
    ]
    (settle,) = named(spans, "settle mail")
    assert settle.attributes is not None
    assert settle.attributes["messaging.operation.name"] == "ack"


def test_add_many_opens_a_create_span_per_job(spans: InMemorySpanExporter) -> None:
    with disquette.connect("memory://tracing-many") as client:
        ids = client.add_many(["a", "b", "c"], "q")
        jobs = client.get_many("q", count=3, timeout=0)
    (send,) = named(spans, "send q")
    assert send.attributes is not None
    assert send.attributes["messaging.batch.message_count"] == 3
    creates = named(spans, "create q")
    assert [span.attributes["messaging.message.id"] for span in creates] == ids  # type: ignore[index]
    assert all(span.parent is not None for span in creates)
    assert {span.parent.span_id for span in creates} == {  # type: ignore[union-attr]
        send.get_span_context().span_id  # type: ignore[union-attr]
    }
    # Each job carries its own create span, not one shared context.
    by_id = {job.id: job.headers["traceparent"] for job in jobs}
    assert by_id == {
        span.attributes["messaging.message.id"]: traceparent(span)  # type: ignore[index]
        for span in creates
    }
    (receive,) = named(spans, "receive q")
    assert receive.attributes is not None
    assert receive.attributes["messaging.batch.message_count"] == 3


async def test_worker_process_span_is_the_producers_child_and_records_errors(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    def works(job: Job) -> str:
        return "ok"

    async def breaks(job: Job) -> None:
        raise ValueError("no such customer")

    async with disquette.connect_async(f"sqlite:///{tmp_path / 'jobs.db'}") as client:
        worker = Worker(client, {"works": works, "breaks": breaks}, queues=["q"])
        await worker.start_async()
        try:
            good = await client.type("works").add(1, "q")
            bad = await client.type("breaks").max_attempts(1).add(2, "q")
            assert await client.wait(good, timeout=20) == "ok"
            with pytest.raises(disquette.errors.JobFailed):
                await client.wait(bad, timeout=20)
        finally:
            await worker.stop_async()
    sends = {span.attributes["messaging.message.id"]: span for span in named(spans, "send q")}  # type: ignore[index]
    processes = {
        span.attributes["messaging.message.id"]: span  # type: ignore[index]
        for span in named(spans, "process q")
    }
    assert set(processes) == {good, bad}
    for job_id, process in processes.items():
        producer = sends[job_id].get_span_context()
        assert process.kind is SpanKind.CONSUMER
        assert process.parent is not None
        assert producer is not None
        assert process.parent.span_id == producer.span_id
        assert process.get_span_context().trace_id == producer.trace_id  # type: ignore[union-attr]
        assert [link.context.span_id for link in process.links] == [producer.span_id]
        assert process.attributes is not None
        assert process.attributes["messaging.disquette.attempt"] == 1
    assert processes[good].status.status_code is StatusCode.UNSET
    assert processes[bad].status.status_code is StatusCode.ERROR
    assert [event.name for event in processes[bad].events] == ["exception"]
    settles = {
        span.attributes["messaging.operation.name"]  # type: ignore[index]
        for span in spans.get_finished_spans()
        if span.name.startswith("settle")
    }
    assert settles == {"ack", "fail"}


def is_done(client: disquette.Client, job_id: str) -> bool:
    """Done, or gone (a Disque server forgets an acked job)."""
    try:
        return client.show(job_id).state is disquette.JobState.DONE
    except disquette.errors.JobNotFound:
        return True


def worker_spans(url: str, app: str, tmp_path: Path, job_ids: list[str]) -> list[dict[str, object]]:
    """Run ``disquette worker`` under ``opentelemetry-instrument`` (the entry point turns
    tracing on), wait for ``job_ids`` to be done, stop it, and return the spans it printed."""
    output = tmp_path / "spans.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "worker",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            [str(instrument), sys.executable, "-m", "disquette", "worker", app, "--url", url],
            env=env,
            stdout=sink,
            stderr=subprocess.PIPE,
        )
        try:
            with disquette.connect(url) as client:
                for job_id in job_ids:
                    wait_until(partial(is_done, client, job_id), 60, job_id)
        finally:
            process.terminate()
            _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors.decode()
    decoder = json.JSONDecoder()
    text, position = output.read_text(), 0
    found: list[dict[str, object]] = []
    while True:  # the console exporter prints one indented JSON object per span
        start = text.find("{", position)
        if start < 0:
            return found
        span, position = decoder.raw_decode(text, start)
        found.append(span)


def check_one_trace(sends: list[ReadableSpan], printed: list[dict[str, object]]) -> None:
    processes = {
        span["attributes"]["messaging.message.id"]: span  # type: ignore[index]
        for span in printed
        if str(span["name"]).startswith("process ")
    }
    assert len(processes) == len(sends)
    for send in sends:
        context = send.get_span_context()
        assert context is not None
        assert send.attributes is not None
        process = processes[send.attributes["messaging.message.id"]]
        assert process["kind"] == "SpanKind.CONSUMER"
        assert process["context"]["trace_id"] == f"0x{context.trace_id:032x}"  # type: ignore[index]
        assert process["parent_id"] == f"0x{context.span_id:016x}"


def test_producer_and_worker_processes_share_one_trace(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with disquette.connect(url) as client:
        ids = [client.type("quick").add({"n": n}, "default") for n in range(3)]
    printed = worker_spans(url, "tests.worker.apps:handlers", tmp_path, ids)
    check_one_trace(named(spans, "send default"), printed)


def test_trace_crosses_the_server_through_disque_urls(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        url = f"disque://{server.address}"
        with disquette.connect(url) as client:
            ids = [client.type("quick").add({"n": n}, "default") for n in range(2)]
        printed = worker_spans(url, "tests.worker.apps:handlers", tmp_path, ids)
    finally:
        server.stop()
    check_one_trace(named(spans, "send default"), printed)


def test_no_opentelemetry_nor_prometheus_import_until_turned_on(
    tmp_path: Path,
) -> None:
    script = f"""
import asyncio, sys
import disquette
from disquette import Worker

async def main():
    async with disquette.connect_async("sqlite:///{tmp_path / "jobs.db"}") as client:
        worker = Worker(client, {{"quick": lambda job: job.body}}, queues=["q"])
        await worker.start_async()
        job_id = await client.type("quick").add(1, "q")
        assert await client.wait(job_id, timeout=20) == 1
        await worker.stop_async()

asyncio.run(main())
loaded = sorted(
    name for name in sys.modules if name.startswith(("opentelemetry", "prometheus_client"))
)
assert not loaded, loaded
import disquette.tracing
disquette.tracing.instrument()
assert "opentelemetry.trace" in sys.modules
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

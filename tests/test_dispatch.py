"""run_embed_job end to end on real Ray: the per-replica workers read their own index chunks, and what lands in the
cache is bit for bit what reading, sending and averaging each batch in this process gives; bad records
(unreadable, rejected by the server, over the message limit) cost only themselves, are reported once, and no
embedding is dropped or duplicated.
"""
from __future__ import annotations

from concurrent import futures

import grpc
import numpy as np
import pytest

from orchestrator.cache import EmbeddingCache
from orchestrator.datasets.base import DatasetSpec, open_dataset
from orchestrator.dispatch import EmbedJob, average_windows, read_records, run_embed_job
from orchestrator.preprocess import PreprocessSpec, spec_from_card
from orchestrator.stages.embed import _unique_indices
from protos.ecglens.v1 import embedding_pb2, embedding_pb2_grpc
from services.common.process import start_server
from services.common.tensors import from_tensor, to_tensor
from services.embedding.client import EmbeddingClient
from wfdb_fixture import MISMATCH, NAN_RECORD, TRUNCATED, write_wfdb_folder


def _run(job: EmbedJob, indices: list[int], ids: list[str]) -> tuple[list, list[int]]:
    counted: list[int] = []
    return run_embed_job(job, indices, ids, counted.append), counted


@pytest.mark.parametrize("window,readers", [("start", 0), ("average", 1)])
def test_cached_embeddings_equal_reading_and_sending_each_batch_here(ray_session, random_resnet_pkg, tmp_path,
                                                                     window, readers):
    spec = DatasetSpec("synthetic", {"sites": ["eu"], "records_per_site": 37, "seed": 3})
    dataset = open_dataset(spec)
    ids = [dataset.meta(i).record_id for i in range(len(dataset))]
    with start_server("services.embedding", ["--model", str(random_resnet_pkg)], name="dispatch") as server:
        with EmbeddingClient(server.address) as client:
            prep = spec_from_card(client.card(), {"window": window, "max_windows": 2})
            job = EmbedJob("m", [server.address], spec, dataset.name, prep, EmbeddingCache(tmp_path, "m", "d"),
                           batch_size=8, in_flight=2, readers=readers)
            problems, counted = _run(job, list(range(len(dataset))), ids)
            assert problems == [] and sum(counted) == len(dataset)
            expected = []
            for k in range(0, len(dataset), 8):  # the old path: read_batch, then the endpoint, then averaging
                meta, x = read_records(dataset, list(range(k, k + 8))[:len(dataset) - k], prep)
                expected.append(average_windows(client.embed(x), meta["counts"]))
    got = job.cache.get(ids)
    assert np.array_equal(got, np.concatenate(expected))  # bit for bit, not close
    assert sorted(job.cache.done_ids()) == sorted(ids)


class _Picky(embedding_pb2_grpc.EmbeddingServiceServicer):
    """A fake endpoint: refuses batches over `limit` records as too large, rejects any batch holding `poison`,
    and embeds each record as its per-lead means (independent of the batch it came in)."""

    def __init__(self, card: embedding_pb2.ModelCard, limit: int, poison: np.ndarray) -> None:
        self.card, self.limit, self.poison, self.sizes = card, limit, poison, []

    def GetModelCard(self, request, context):  # noqa: N802
        return self.card

    def Embed(self, request, context):  # noqa: N802
        x = from_tensor(request.ecg, "ecg")
        self.sizes.append(len(x))
        if len(x) > self.limit:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"Received message larger than max ({len(x)} rows)")
        if any(np.array_equal(row, self.poison) for row in x):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ecg contains a poisoned record")
        return embedding_pb2.EmbedResponse(request_id=request.request_id, embedding=to_tensor(x.mean(axis=2)))


def test_bad_records_cost_only_themselves_and_are_reported_once(ray_session, tmp_path):
    root = write_wfdb_folder(tmp_path / "folder", n=24, corrupt=True)
    spec = DatasetSpec("wfdb", {"path": str(root)})
    dataset = open_dataset(spec)
    listed: list = []
    keep, ids = _unique_indices(dataset, listed)
    # "V7" is in no record: every readable record is zero-filled there and warned about, once.
    leads = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "V7")
    prep = PreprocessSpec(500.0, leads, 5000, missing_leads="zero")
    poison_id = ids[5]
    poison = read_records(dataset, [keep[5]], prep)[1][0]
    card = embedding_pb2.ModelCard(name="picky", version="1", embedding_dim=len(leads), sampling_rate_hz=500.0,
                                   leads=list(leads), num_samples=5000, max_batch_size=64, input_units="mV",
                                   kind="foundation", fingerprint="0" * 64)
    servicer = _Picky(card, limit=3, poison=poison)
    server = grpc.server(futures.ThreadPoolExecutor(4), options=[("grpc.max_receive_message_length", 64 << 20)])
    embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        job = EmbedJob("picky", [f"127.0.0.1:{port}"], spec, dataset.name, prep,
                       EmbeddingCache(tmp_path / "cache", "m", "d"), batch_size=8, in_flight=2)
        problems, counted = _run(job, keep, ids)
    finally:
        server.stop(0)
    failed = sorted(p.record for p in problems if p.stage != "warning")
    unreadable = sorted({TRUNCATED, MISMATCH, NAN_RECORD} | {p.record for p in problems if p.stage == "read"})
    assert {TRUNCATED, MISMATCH, NAN_RECORD} <= set(unreadable)
    assert failed == sorted([*unreadable, poison_id])  # each bad record exactly once
    assert [p.stage for p in problems if p.record == poison_id] == ["warning", "embed"]
    assert "INVALID_ARGUMENT" in next(p.reason for p in problems if p.stage == "embed")
    warned = [p.record for p in problems if p.stage == "warning"]
    readable = [rid for rid in ids if rid not in unreadable]
    assert sorted(warned) == sorted(readable)  # one warning per readable record, however often it was re-read
    assert sum(counted) == len(ids)  # every record counted once: embedded or failed
    embedded = sorted(set(readable) - {poison_id})
    assert sorted(job.cache.done_ids()) == embedded
    got = job.cache.get(embedded)
    for rid, row in zip(embedded, got):
        x = read_records(dataset, [keep[ids.index(rid)]], prep)[1]
        assert np.array_equal(row, x.mean(axis=2)[0])
    assert max(servicer.sizes) == 8 and 3 in servicer.sizes  # halved past the size limit, then bisected

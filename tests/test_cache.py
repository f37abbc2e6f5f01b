"""The embedding cache cannot be fooled: content tokens per record, a verified manifest, notes for what it drops."""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from orchestrator.cache import CACHE_FORMAT, CacheError, EmbeddingCache
from orchestrator.datasets.base import DatasetSpec, open_dataset
from orchestrator.stages.assemble import fingerprint_basis

MANIFEST = {"model": "m", "version": "1", "fingerprint": "f" * 64, "dataset": "d", "preprocessing": {"a": [1]}}


def stored(cache_dir: Path) -> dict[str, list[str]]:
    """record id -> the tokens stored for it, over every shard on disk."""
    out: dict[str, list[str]] = {}
    for shard in sorted(cache_dir.glob("shard-*.npz")):
        with np.load(shard) as data:
            for rid, token in zip(data["ids"].tolist(), data["tokens"].tolist()):
                out.setdefault(rid, []).append(token)
    return out


def emb(*values: float) -> np.ndarray:
    return np.array([[v, v + 1] for v in values], np.float32)


def test_a_changed_record_is_dropped_alone_and_noted(tmp_path):
    tokens = {"a": "1", "b": "1", "c": "1"}
    cache = EmbeddingCache(tmp_path, "m", "d", MANIFEST, tokens)
    cache.write(["a", "b"], emb(1, 2))
    cache.write(["c"], emb(3))
    assert stored(cache.dir) == {"a": ["1"], "b": ["1"], "c": ["1"]}
    mtimes = {p: p.stat().st_mtime_ns for p in cache.dir.glob("shard-*.npz")}

    same = EmbeddingCache(tmp_path, "m", "d", MANIFEST, dict(tokens))
    assert same.done_ids() == {"a", "b", "c"} and same.check.notes() == []
    assert {p: p.stat().st_mtime_ns for p in cache.dir.glob("shard-*.npz")} == mtimes, "a clean open rewrote shards"

    changed = EmbeddingCache(tmp_path, "m", "d", MANIFEST, {**tokens, "b": "2"})
    assert changed.done_ids() == {"a", "c"}
    assert changed.check.notes() == ["1 record(s) changed since they were cached; re-embedded"]
    assert stored(cache.dir) == {"a": ["1"], "c": ["1"]}, "the stale row of b is still on disk"
    changed.write(["b"], emb(9))
    again = EmbeddingCache(tmp_path, "m", "d", MANIFEST, {**tokens, "b": "2"})
    assert again.check.notes() == [] and stored(cache.dir) == {"a": ["1"], "b": ["2"], "c": ["1"]}
    np.testing.assert_array_equal(again.get(["b", "a"]), emb(9, 1))


def test_rows_without_tokens_and_records_gone_from_the_dataset_are_dropped(tmp_path):
    legacy = EmbeddingCache(tmp_path, "m", "d")  # no tokens: a benchmark's cache, stored with empty tokens
    legacy.write(["a", "b", "c"], emb(1, 2, 3))
    assert EmbeddingCache.open(legacy.dir).done_ids() == {"a", "b", "c"}
    cache = EmbeddingCache(tmp_path, "m", "d", tokens={"a": "1", "b": "1"})
    assert cache.done_ids() == set() and not list(cache.dir.glob("shard-*.npz"))
    assert cache.check.notes() == ["2 record(s) cached without a content token (an older cache); re-embedded",
                                   "1 cached record(s) no longer in the dataset; dropped from the cache"]


def test_a_manifest_of_another_model_drops_every_shard_and_says_what_differs(tmp_path):
    first = EmbeddingCache(tmp_path, "m", "d", MANIFEST, {"a": "1", "b": "1"})
    first.write(["a", "b"], emb(1, 2))
    assert json.loads((first.dir / "manifest.json").read_text())["format"] == CACHE_FORMAT
    other = EmbeddingCache(tmp_path, "m", "d", {**MANIFEST, "fingerprint": "e" * 64, "version": "2"},
                           {"a": "1", "b": "1"})
    assert other.done_ids() == set() and not list(other.dir.glob("shard-*.npz"))
    [note] = other.check.notes()
    assert note == ("cache manifest.json differs from this run's in fingerprint, version ('1' cached, '2' now): "
                    "2 cached record(s) dropped; re-embedded")
    assert json.loads((other.dir / "manifest.json").read_text())["version"] == "2"


def test_a_cache_from_before_content_tokens_is_redone(tmp_path):
    cache = EmbeddingCache(tmp_path, "m", "d")
    cache.write(["a"], emb(1))
    (cache.dir / "manifest.json").write_text(json.dumps(MANIFEST))  # format-1 manifest: no "format" key
    reopened = EmbeddingCache(tmp_path, "m", "d", MANIFEST, {"a": "1"})
    assert reopened.done_ids() == set()
    assert reopened.check.notes() == ["cache format 1 is not the current 2: 1 cached record(s) dropped; re-embedded"]
    (cache.dir / "manifest.json").unlink()
    reopened.write(["a"], emb(1))
    assert EmbeddingCache(tmp_path, "m", "d", MANIFEST, {"a": "1"}).check.notes() == [
        "cache has no manifest.json: 1 cached record(s) dropped; re-embedded"]


def test_two_current_embeddings_of_one_record_are_still_a_conflict(tmp_path):
    cache = EmbeddingCache(tmp_path, "m", "d", MANIFEST, {"a": "1", "b": "1"})
    cache.write(["a", "b"], emb(1, 2))
    cache.write(["b"], emb(5))
    with pytest.raises(CacheError, match="record b has two different embeddings"):
        EmbeddingCache(tmp_path, "m", "d", MANIFEST, {"a": "1", "b": "1"})


def test_fingerprint_basis_says_what_the_fingerprint_covers():
    ecglens, v2 = SimpleNamespace(connection={}), SimpleNamespace(connection={"protocol": "v2"})
    assert fingerprint_basis(ecglens, SimpleNamespace(backend="onnxruntime")) == "weights"
    assert fingerprint_basis(ecglens, SimpleNamespace(backend="torch")) == "weights"
    assert fingerprint_basis(ecglens, SimpleNamespace(backend="python")) == "card"
    assert fingerprint_basis(v2, SimpleNamespace(backend="remote-v2")) == "metadata"


# --------------------------------------------------------------------------------- adapters' content tokens


def touch(path: Path) -> None:
    """Move a file's mtime one second on (as an edit would), keeping its bytes."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def tokens_of(spec: DatasetSpec) -> dict[str, str]:
    dataset = open_dataset(spec)  # a fresh adapter each time, as each run opens its own
    return {dataset.meta(i).record_id: dataset.content_token(i) for i in range(len(dataset))}


def changed_ids(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {rid for rid in before if before[rid] != after.get(rid)}


def test_synthetic_tokens_follow_generator_spec_and_index():
    spec = DatasetSpec("synthetic", {"sites": ["eu"], "records_per_site": 4, "seed": 0})
    first = tokens_of(spec)
    assert first == tokens_of(spec) and len(set(first.values())) == 4
    other = tokens_of(DatasetSpec("synthetic", {"sites": ["eu"], "records_per_site": 4, "seed": 1}))
    assert not set(first.values()) & set(other.values())


def test_wfdb_tokens_change_with_the_record_files_only(tmp_path):
    from wfdb_fixture import record_name, write_wfdb_folder

    folder = write_wfdb_folder(tmp_path / "wfdb", n=4)
    spec = DatasetSpec("wfdb", {"path": str(folder)})
    before = tokens_of(spec)
    assert before == tokens_of(spec) and len(set(before.values())) == 4
    touch(folder / f"{record_name(1)}.dat")
    assert changed_ids(before, tokens_of(spec)) == {record_name(1)}
    middle = tokens_of(spec)
    touch(folder / f"{record_name(3)}.hea")  # a sub-folder record; its header alone
    assert changed_ids(middle, tokens_of(spec)) == {record_name(3)}


def test_ptbxl_challenge_and_code15_tokens_follow_their_files(tmp_path):
    from challenge_fixture import plan, record_folder, write_challenge
    from code15_fixture import write_code15
    from ptbxl_fixture import write_ptbxl

    ptbxl = write_ptbxl(tmp_path / "ptbxl", n_records=6)
    spec = DatasetSpec("ptbxl", {"path": str(ptbxl)})
    before = tokens_of(spec)
    dataset = open_dataset(spec)
    touch(dataset.record_path(2).with_name(dataset.record_path(2).name + ".dat"))
    assert changed_ids(before, tokens_of(spec)) == {dataset.meta(2).record_id}

    root = write_challenge(tmp_path / "challenge", per_source={"cpsc2018": 3})
    spec = DatasetSpec("challenge", {"path": str(root)})
    before = tokens_of(spec)
    rec = plan({"cpsc2018": 3})[1]
    touch(record_folder(root, rec.folder) / f"{rec.name}.mat")
    assert changed_ids(before, tokens_of(spec)) == {f"cpsc2018-{rec.name}"}

    root = write_code15(tmp_path / "code15", n_exams=6, parts=2)
    spec = DatasetSpec("code15", {"path": str(root)})
    before = tokens_of(spec)
    dataset = open_dataset(spec)
    part = dataset.meta(0).extra["trace_file"]
    touch(root / part)
    in_part = {dataset.meta(i).record_id for i in range(len(dataset)) if dataset.meta(i).extra["trace_file"] == part}
    assert changed_ids(before, tokens_of(spec)) == in_part and len(in_part) < len(dataset)


# --------------------------------------------------------------------------- the embed stage, real server and Ray




def test_the_embed_stage_re_embeds_exactly_the_changed_records_and_says_so(ray_session, handcrafted_pkg, tmp_path,
                                                                            monkeypatch):
    from orchestrator.dispatch import RecordProblem
    from orchestrator.endpoints import open_client
    from orchestrator.experiment import parse_experiment
    from orchestrator.stages.embed import embed
    from orchestrator.stages.types import Hooks, Launched
    from services.common.process import start_server
    from wfdb_fixture import record_name, signal_mv, write_record, write_wfdb_folder

    folder = write_wfdb_folder(tmp_path / "wfdb", n=6)
    exp = parse_experiment({"name": "cache", "datasets": [{"kind": "wfdb", "path": str(folder)}],
                            "models": ["handcrafted"], "runtime": {"batch_size": 4}}, "test")
    written: list[list[str]] = []
    original = EmbeddingCache.write

    def counting(self, record_ids, embeddings):
        written.append(list(record_ids))
        return original(self, record_ids, embeddings)

    monkeypatch.setattr(EmbeddingCache, "write", counting)
    with start_server("services.embedding", ["--model", str(handcrafted_pkg)], name="handcrafted",
                      log_dir=tmp_path / "logs") as server:
        client, card = open_client(server.address, {}, 60.0)
        client.close()
        launched = Launched({"handcrafted": [server.address]}, {"handcrafted": card})

        def run():
            written.clear()
            out = embed(exp, launched, tmp_path / "cache", Hooks(), show_progress=False)
            [embedding_set] = out.sets.values()
            return out.problems, embedding_set

        problems, first = run()
        names = [record_name(k) for k in range(6)]
        assert problems == [] and sorted(r for batch in written for r in batch) == sorted(names)
        before = first.cache().get(names)

        problems, _ = run()
        assert problems == [] and written == [], "an unchanged dataset was embedded again"

        touch(folder / f"{record_name(1)}.dat")  # same bytes, new mtime: embedded again, to the same vector
        write_record(folder, record_name(2), signal_mv(2, seed=7))  # new samples at the same path
        problems, again = run()
        assert sorted(r for batch in written for r in batch) == [record_name(1), record_name(2)]
        note = "2 record(s) changed since they were cached; re-embedded"
        assert problems == [RecordProblem(first.dataset, "*", "warning", note, "handcrafted")]
        assert all(len(tokens) == 1 for tokens in stored(again.cache_dir).values()), "a record is stored twice"
        after = again.cache().get(names)
        np.testing.assert_array_equal(np.delete(after, 2, axis=0), np.delete(before, 2, axis=0))
        assert not np.allclose(after[2], before[2]), "the rewritten record kept its stale embedding"


def test_the_schema_documents_every_models_field():
    from orchestrator.results import ModelInfo

    text = (Path(__file__).resolve().parents[1] / "docs" / "results-schema.md").read_text()
    table = text.split("## `models[]`", 1)[1].split("\n## ", 1)[0]
    documented = {key for line in table.splitlines() if line.startswith("| `")
                  for key in line.split("|")[1].replace("`", "").replace(",", " ").split()}
    assert documented == set(ModelInfo._declared())

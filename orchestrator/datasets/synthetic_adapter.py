"""The synthetic generator as a Dataset: task `condition` (six classes), sources = simulated sites."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from orchestrator.datasets.base import COARSE_CLASSES, DatasetSpec, Record, RecordMeta, file_token
from orchestrator.datasets.synthetic import CONDITIONS, GENERATOR_VERSION, SITES, SyntheticDataset

# shuffle_labels: a negative control; labels are permuted across records (signals keep their true condition),
# so any probe must fall to chance. A pipeline that still "learns" then has a leak.
DEFAULTS = {"sites": ["eu", "sa"], "records_per_site": 200, "seed": 0, "duration_s": 10.0, "shuffle_labels": False}


class SyntheticAdapter:
    """Adapter over SyntheticDataset."""

    # The generator's bundle-branch block is RBBB-like (rSR' in V1), hence BBB -> RBBB in the coarse space.
    COARSE = {"NSR": "NSR", "AF": "AF", "SB": "SB", "STach": "STach", "BBB": "RBBB", "STE": "STE"}
    tasks = {"condition": CONDITIONS, "coarse": COARSE_CLASSES}
    multi_label = {"condition": False, "coarse": True}

    def __init__(self, spec: DatasetSpec) -> None:
        unknown = set(spec.params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"synthetic dataset: unknown parameter(s) {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
        params = {**DEFAULTS, **spec.params}
        bad = [s for s in params["sites"] if s not in SITES]
        if bad:
            raise ValueError(f"synthetic dataset: unknown site(s) {bad}; known: {sorted(SITES)}")
        self.spec = DatasetSpec("synthetic", params)
        self.name = "synthetic[" + ",".join(params["sites"]) + "]"
        self._data = SyntheticDataset(params["sites"], params["records_per_site"], params["seed"], params["duration_s"])
        self.meta = lru_cache(maxsize=None)(self._meta)
        n = len(self._data)
        self._label_of = (np.random.default_rng([params["seed"], 7919]).permutation(n) if params["shuffle_labels"]
                          else np.arange(n))

    def __len__(self) -> int:
        return len(self._data)

    def _meta(self, i: int) -> RecordMeta:
        m = self._data.metadata(i)
        site = SITES[m["site"]]
        condition = self._data.metadata(int(self._label_of[i]))["condition"]
        return RecordMeta(m["record_id"], m["patient_id"], m["site"],
                          {"condition": (condition,), "coarse": (self.COARSE[condition],)},
                          {"age": m["age"], "sex": m["sex"], "region": site.region})

    def record_ids(self) -> list[str]:
        """Record ids in index order, without building any record's metadata."""
        return self._data.record_ids()

    def load(self, i: int) -> Record:
        """Generate record i."""
        r = self._data.load(i)
        return Record(r.record_id, r.signal, r.sampling_rate_hz, tuple(r.leads), "mV")

    def content_token(self, i: int) -> str:
        """The generator's version, the spec and the index: together they fix every sample of record i."""
        return file_token(GENERATOR_VERSION, (), self.spec.key, str(i))

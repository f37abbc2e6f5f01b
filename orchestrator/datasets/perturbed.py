"""Perturbed copies of some records of another dataset, as a dataset, so they travel the ordinary embed path.

Params: `base` ({kind, params} of the dataset perturbed), `indices` (its records to copy), `perturbations`
([[name, grade], ...], orchestrator/perturbations.py) and `seed`. Record j * len(perturbations) + k is copy k
of base record indices[j]; its id is
`<base id>|<name>@<grade>`: the base record's signal under that perturbation, seeded by the record id, so
the same copy comes out of any Ray task. The robustness stage embeds this dataset through each served model
(EndpointWorker actors read and send, as in the embed stage), into a cache of its own.
"""
from __future__ import annotations

from functools import lru_cache

from orchestrator.datasets.base import DatasetSpec, Record, RecordMeta, file_token, open_dataset
from orchestrator.perturbations import PERTURBATIONS, PERTURBATIONS_VERSION, perturb

SEPARATOR = "|"


def copy_id(record_id: str, name: str, grade: int) -> str:
    """The record id of a perturbed copy."""
    return f"{record_id}{SEPARATOR}{name}@{grade}"


class PerturbedDataset:
    """len(indices) x len(perturbations) records, record-major: a batch perturbs few base records many ways, and
    each base record is read once per batch (load keeps the last few)."""

    def __init__(self, spec: DatasetSpec) -> None:
        missing = {"base", "indices", "perturbations"} - set(spec.params)
        if missing:
            raise ValueError(f"perturbed dataset: missing parameter(s) {sorted(missing)}")
        self.spec = spec
        self.base = open_dataset(DatasetSpec(spec.params["base"]["kind"], spec.params["base"]["params"]))
        self.indices = [int(i) for i in spec.params["indices"]]
        self.copies = [(str(name), int(grade)) for name, grade in spec.params["perturbations"]]
        for name, grade in self.copies:
            if name not in PERTURBATIONS:
                raise ValueError(f"perturbed dataset: unknown perturbation {name!r}")
            PERTURBATIONS[name].value(grade)  # raises on a grade the perturbation does not have
        self.seed = int(spec.params.get("seed", 0))
        self.name = f"{self.base.name}~perturbed"
        self.tasks, self.multi_label = self.base.tasks, self.base.multi_label
        self.meta = lru_cache(maxsize=None)(self._meta)
        self._base_load = lru_cache(maxsize=4)(self.base.load)

    def __len__(self) -> int:
        return len(self.indices) * len(self.copies)

    def _where(self, i: int) -> tuple[int, str, int]:
        """(base index, perturbation, grade) of record i."""
        name, grade = self.copies[i % len(self.copies)]
        return self.indices[i // len(self.copies)], name, grade

    def _meta(self, i: int) -> RecordMeta:
        base, name, grade = self._where(i)
        m = self.base.meta(base)
        return RecordMeta(copy_id(m.record_id, name, grade), m.patient_id, m.source, m.labels, m.extra)

    def load(self, i: int) -> Record:
        """The base record's signal under its copy's perturbation."""
        base, name, grade = self._where(i)
        record = self._base_load(base)
        signal = perturb(record.signal, record.sampling_rate_hz, record.leads, name, grade, self.seed,
                         record.record_id)
        return Record(copy_id(record.record_id, name, grade), signal.astype(record.signal.dtype, copy=False),
                      record.sampling_rate_hz, record.leads, record.units)

    def content_token(self, i: int) -> str:
        """The base record's token, the perturbation, its parameter, the seed and the formulas' version."""
        base, name, grade = self._where(i)
        return file_token(PERTURBATIONS_VERSION, (), self.base.content_token(base), name,
                          repr(PERTURBATIONS[name].value(grade)), str(self.seed))

"""A loaded model package: validates wire ECGs, runs the backend, returns [batch, dim] embeddings."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.text import first_line
from services.embedding import adapt
from services.embedding.backends import Backend, BackendError, create_backend
from services.embedding.card import CardError, ModelCard, fingerprint, load_card

log = logging.getLogger(__name__)


class InputError(ValueError):
    """A wire ECG batch that does not fit the card; the text is returned to the client as is."""


@dataclass
class EmbeddingModel:
    """One model package, loaded and warmed up."""

    card: ModelCard
    package_dir: Path
    backend: Backend
    fingerprint: str
    params: int

    @classmethod
    def load(cls, package_dir: Path | str, warmup: bool = True) -> "EmbeddingModel":
        """Load card and weights, then run one warm-up batch so the first request pays nothing extra."""
        package_dir = Path(package_dir)
        card = load_card(package_dir)
        backend = create_backend(card.backend)
        started = time.perf_counter()
        backend.load(card, package_dir)
        model = cls(card, package_dir, backend, fingerprint(card, package_dir), card.params or backend.param_count())
        if warmup:
            probe = np.zeros((1, len(card.input.leads), card.input.num_samples), np.float32)
            out = model.embed(probe)
            model.verify_max_batch()
            log.info("loaded %s %s (%s) in %.2fs; warm-up output %s, batch of %d verified", card.name, card.version,
                     backend.description, time.perf_counter() - started, list(out.shape),
                     card.serving.max_batch_size)
        return model

    def verify_max_batch(self) -> None:
        """Run one batch of serving.max_batch_size zeros; a card whose model cannot is refused (CardError).

        A graph exported at batch 1 can keep a symbolic batch axis yet fail on any larger batch; serving it
        under a larger max_batch_size would fail every real batch, so it is caught here, at load.
        """
        size = self.card.serving.max_batch_size
        if size <= 1:
            return
        try:
            self.embed(np.zeros((size, len(self.card.input.leads), self.card.input.num_samples), np.float32))
        except Exception as err:  # runtimes raise their own types; the first line says what broke
            raise CardError(f"{self.card.name}: serving.max_batch_size is {size}, but the model fails on a batch of "
                            f"{size} zeros ({first_line(err)}) while a batch of 1 runs; set "
                            f"serving.max_batch_size to a batch the model runs (1 for a graph exported at batch 1)"
                            ) from None

    def validate(self, x: np.ndarray) -> np.ndarray:
        """Check a wire batch against the card and return it as float32; raise InputError."""
        spec = self.card.input
        if x.ndim != 3:
            raise InputError(f"ecg must have rank 3 [batch, leads, samples], got shape {list(x.shape)}")
        batch, leads, samples = x.shape
        if batch == 0:
            raise InputError("ecg batch is empty (shape[0] == 0)")
        if leads != len(spec.leads):
            raise InputError(f"ecg has {leads} leads but {self.card.name} expects {len(spec.leads)} "
                             f"({', '.join(spec.leads)})")
        if samples != spec.num_samples:
            raise InputError(f"ecg has {samples} samples per lead but {self.card.name} expects "
                             f"{spec.num_samples} ({spec.num_samples / spec.sampling_rate_hz:g} s at "
                             f"{spec.sampling_rate_hz:g} Hz)")
        x = x.astype(np.float32, copy=False)
        finite = np.isfinite(x)
        if not finite.all():
            bad_rec, bad_lead, bad_t = np.argwhere(~finite)[0]
            count = int(x.size - finite.sum())
            raise InputError(f"ecg contains {count} NaN/Inf value(s); first at record {bad_rec}, lead "
                             f"{spec.leads[bad_lead]}, sample {bad_t}")
        return x

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Embed a validated [B, L, T] float32 batch in the card's spec: normalise, lay out, run, pool."""
        spec, out_spec = self.card.input, self.card.output
        model_in = adapt.to_layout(adapt.normalize(x, spec.normalization), spec.layout)
        raw = self.backend.run(model_in)
        emb = adapt.pool(np.asarray(raw), out_spec.pooling, out_spec.pool_axis)
        if emb.shape != (x.shape[0], out_spec.embedding_dim):
            raise BackendError(f"{self.card.name}: model produced embedding shape {list(emb.shape)}, card says "
                               f"[{x.shape[0]}, {out_spec.embedding_dim}] (check output.name/pooling/embedding_dim)")
        return emb

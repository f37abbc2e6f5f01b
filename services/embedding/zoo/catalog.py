"""The zoo's catalogue: which built-in models exist (by name) and where packages live on disk."""
from __future__ import annotations

import os
from pathlib import Path

# name -> module with build(out_dir) -> card dict, and describe() -> listing entry.
BUILDERS = {
    "random-resnet": "services.embedding.zoo.random_resnet",
    "handcrafted": "services.embedding.zoo.handcrafted",
    "cmsc-ecg-small": "services.embedding.zoo.pretrained_cmsc",
    "msm-ecg-small": "services.embedding.zoo.pretrained_msm",
}


def zoo_dir() -> Path:
    """Where built packages live: $ECGLENS_ZOO, else ~/.cache/ecglens/zoo."""
    return Path(os.environ.get("ECGLENS_ZOO") or Path.home() / ".cache" / "ecglens" / "zoo")

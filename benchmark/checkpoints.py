"""Per-epoch training state of a job, so that a killed or pre-empted job resumes from its last epoch.

The file ``<run folder>/checkpoints/<job key>.pt`` holds the model and optimiser state, the epochs
done and their logged loss means. It is written atomically (a kill while writing leaves the previous
checkpoint) and deleted once the job's run is FINISHED. The job key covers everything the training
depends on, so a checkpoint is never resumed under another config.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ssl_medbench.core.atomic import atomic_path, remove_temporaries


class Checkpoint:
    def __init__(self, path: Path, every: int):
        """Save after every ``every``-th epoch and after the last one; ``every`` = 0 never saves (nor resumes)."""
        self.path = path
        self.every = every

    def restore(self, model: nn.Module, optimiser: torch.optim.Optimizer) -> list[dict[str, float]]:
        """Load the saved state into ``model`` and ``optimiser``; returns the loss means of the epochs done (none if no checkpoint)."""
        if self.every == 0 or not self.path.is_file():
            return []
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
        except (RuntimeError, KeyError, EOFError, ValueError, pickle.UnpicklingError) as error:
            tqdm.write(
                f"checkpoint {self.path} could not be read ({type(error).__name__}: {error}); training this job from the start"
            )
            return []
        history = state["history"]
        tqdm.write(f"resuming from {self.path} after epoch {len(history)}")
        return history

    def save(
        self, model: nn.Module, optimiser: torch.optim.Optimizer, history: list[dict[str, float]], last_epoch: bool
    ) -> None:
        if self.every == 0 or (len(history) % self.every and not last_epoch):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as temporary:
            torch.save(
                {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "history": history}, temporary
            )

    def discard(self) -> None:
        """Delete the checkpoint and any half-written one a killed attempt left (the job is FINISHED)."""
        self.path.unlink(missing_ok=True)
        remove_temporaries(self.path)

"""A resumable, seeded stream of mini-batches over one client's sample indices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def collate(dataset, indices: Sequence[int], device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """Stack ``dataset[i]`` dicts (input_ids, attention_mask, labels; each (L,)) into (B, L) tensors."""
    items = [dataset[int(i)] for i in indices]
    return {
        key: torch.stack([item[key] for item in items]).to(device)
        for key in ("input_ids", "attention_mask", "labels")
    }


class BatchStream:
    """Endless epochs over ``indices``, reshuffled each epoch; the tail that does not fill a batch wraps into
    the next epoch. Its whole state (permutation, position, generator) is two ints plus the seed, so a
    checkpoint restores the exact data order."""

    def __init__(
        self,
        dataset,
        indices: Sequence[int],
        batch_size: int,
        seed: Sequence[int],
        device: torch.device | None = None,
    ):
        if len(indices) == 0:
            raise ValueError("BatchStream needs at least one sample index")
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.device = device
        self.seed = [int(s) for s in seed]  # e.g. (run seed, client index): independent streams per client
        self.epoch = 0
        self.position = 0  # samples consumed in total
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([*self.seed, epoch])
        return self.indices[rng.permutation(len(self.indices))]

    def next_indices(self) -> np.ndarray:
        """The next ``batch_size`` sample indices."""
        out = []
        n = len(self.indices)
        for _ in range(self.batch_size):
            epoch, offset = divmod(self.position, n)
            if epoch != self.epoch:
                self.epoch, self._order = epoch, self._permutation(epoch)
            out.append(self._order[offset])
            self.position += 1
        return np.asarray(out)

    def next_batch(self) -> dict[str, torch.Tensor]:
        """The next mini-batch as (B, L) tensors."""
        return collate(self.dataset, self.next_indices(), self.device)

    def state_dict(self) -> dict:
        return {"seed": list(self.seed), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.position = [int(s) for s in state["seed"]], int(state["position"])
        self.epoch = self.position // len(self.indices)
        self._order = self._permutation(self.epoch)

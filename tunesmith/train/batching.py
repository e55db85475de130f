"""How rows become batches: right-padded rows, or padding-free rows laid end to end in one sequence.

Padding-free batches carry `position_ids` that restart at 0 for every row and no attention mask;
transformers then builds a block-diagonal causal mask from the positions (sdpa and eager attention),
so no row attends to another and no compute is spent on pad tokens. Rows are length-grouped in an order that a
run resumed in any epoch replays exactly (`EpochSeededLengthSampler`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from tunesmith.chat import IGNORE_INDEX


class EpochSeededLengthSampler(LengthGroupedSampler):
    """transformers' length-grouped order, with the order of every epoch after the first drawn from (seed, epoch).

    The stock sampler draws an epoch's order from the global RNG as it stands when the epoch begins. For the
    first epoch that is the RNG the Trainer seeds with the run's seed when it is built (nothing draws from it
    before the first batch), which a resumed run reproduces, so that draw is kept; a run resumed in a later epoch
    skips the epochs before it and would draw a different order. The Trainer (through accelerate's loader) calls
    `set_epoch` before every epoch, resumed or not.
    """

    def __init__(self, batch_size: int, dataset, seed: int):
        super().__init__(batch_size, dataset=dataset)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if self.epoch == 0:
            return super().__iter__()
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


@dataclass
class PadCollator:
    """Right-pad a batch: pad id in input_ids, IGNORE_INDEX in labels, zeros in the attention mask."""

    pad_id: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[i, :n] = torch.tensor(feature["input_ids"])
            labels[i, :n] = torch.tensor(feature["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@dataclass
class PaddingFreeCollator:
    """Concatenate a batch into one row of shape [1, total tokens] with per-row position ids.

    The first label of every row is ignored, so no row learns to predict its first token from the
    previous row's last one.
    """

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        ids, labels, positions = [], [], []
        for feature in features:
            n = len(feature["input_ids"])
            ids.extend(feature["input_ids"])
            labels.append(IGNORE_INDEX)
            labels.extend(feature["labels"][1:])
            positions.extend(range(n))
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([positions])}


def collator_for(batching: str, pad_id: int | None):
    if batching == "padding_free":
        return PaddingFreeCollator()
    return PadCollator(pad_id if pad_id is not None else 0)

"""ConfusionMatrix builds its flat index in the narrowest integer type that holds it (int16 for VOC's 21
classes with void 255, int32 beyond): both paths must count exactly what torchmetrics counts."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from segkit.metrics import ConfusionMatrix


@pytest.mark.parametrize(("num_classes", "ignore_index"), [(21, 255), (150, 255), (300, 65535)])
def test_matrix_equals_torchmetrics_for_narrow_and_wide_indices(num_classes, ignore_index):
    generator = torch.Generator().manual_seed(num_classes)
    target = torch.randint(0, num_classes, (3, 40, 50), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.1] = ignore_index
    pred = torch.randint(0, num_classes, (3, 40, 50), generator=generator)
    for dtype in (torch.uint8, torch.int32, torch.int64):
        if dtype == torch.uint8 and (num_classes > 255 or ignore_index > 255):
            continue
        matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index)
        matrix.update(pred.to(dtype), target.to(dtype))
        reference = MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index)(pred, target)
        assert torch.equal(matrix.matrix, reference.to(torch.int64)), dtype

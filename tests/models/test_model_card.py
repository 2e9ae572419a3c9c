"""The model card from numbers alone: the model sits beside the gray baseline and the truth, a model that
does not beat gray (or whose colors are washed out) says so among its limitations, and the registry's
description fits MLflow's limit in whole lines, losing the training configuration first. The card a real
registration writes is tested in `test_registry`."""

from __future__ import annotations

import numpy as np

from models.metrics import BaselineComparison, compare_with_gray
from models.model_card import DESCRIPTION_LIMIT, model_card, version_description
from pipelines.lab import AB_OFFSET

MANIFEST = {"version": "0123456789abcdef", "sample_count": 12, "splits": {"train": 10, "val": 1, "test": 1}}
MANIFEST["source_mix"] = {"flickr": 7, "coco": 5}


def metrics(psnr: float, colorfulness: float, truth: float = 40.0) -> dict[str, float]:
    return {
        "l1_ab": 10.0,
        "psnr": psnr,
        "ssim": 0.8,
        "colorfulness": colorfulness,
        "colorfulness_truth": truth,
        "colorfulness_ratio": colorfulness / truth,
    }


def card_for(comparison: BaselineComparison, dataset_limitations: tuple[str, ...] = ()) -> str:
    return model_card(
        model="colorizer",
        version="7",
        run_id="run-1",
        config={"crop_size": 256, "resume": ""},
        steps=2000,
        manifest=MANIFEST,
        dataset_card="s3://lake/datasets/0123456789abcdef/card.md",
        dataset_limitations=dataset_limitations,
        comparisons=[comparison],
        metrics={"eval_psnr": 23.0},
    )


def test_the_gray_baseline_of_a_photo_is_its_lightness_alone() -> None:
    truth = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    swapped = compare_with_gray("test", truth[::-1], truth)  # each image guessed with the other's colors

    assert swapped.images == 2 and swapped.name == "test"
    assert swapped.gray["l1_ab"] == np.abs(truth[..., 1:].astype(np.float32) - AB_OFFSET).mean()
    assert swapped.gray["colorfulness_truth"] == swapped.model["colorfulness_truth"] > 10
    assert swapped.gray["colorfulness"] < 1 < swapped.model["colorfulness"]


def test_a_model_that_beats_gray_shows_it_beside_gray_and_the_truth() -> None:
    card = card_for(BaselineComparison("test", 64, metrics(psnr=24.0, colorfulness=30.0), metrics(22.0, 0.2)))

    assert "| test | 64 | model | 10.00 | 24.00 | 0.800 | 30.0 |" in card
    assert "| test | 64 | gray baseline | 10.00 | 22.00 | 0.800 | 0.2 |" in card
    assert "| test | 64 | truth | – | – | – | 40.0 |" in card
    assert "s3://lake/datasets/0123456789abcdef/card.md" in card and "| resume | – |" in card
    assert "gray baseline's" not in card and "Washed-out" not in card and "no test split" not in card


def test_a_model_no_better_than_gray_says_so() -> None:
    card = card_for(BaselineComparison("val", 8, metrics(psnr=21.0, colorfulness=8.0), metrics(22.0, 0.2)))

    assert "does not beat the gray baseline's (22.00 dB)" in card
    assert "Washed-out colors on the val set: 20%" in card and "no test split" in card


def test_a_long_card_keeps_its_evaluation_and_limitations_in_the_description() -> None:
    comparison = BaselineComparison("test", 64, metrics(24.0, 30.0), metrics(22.0, 0.2))
    card = card_for(comparison, dataset_limitations=("a limitation of the data " * 10,) * 14)
    assert len(card) > DESCRIPTION_LIMIT

    description = version_description(card, "runs:/run-1/model_card.md")

    assert len(description) <= DESCRIPTION_LIMIT and description.endswith(
        "(The whole card: runs:/run-1/model_card.md.)\n"
    )
    assert "## Evaluation" in description and "## Limitations" in description
    assert "## Training configuration" not in description
    assert version_description(card_for(comparison), "runs:/run-1/model_card.md") == card_for(comparison)

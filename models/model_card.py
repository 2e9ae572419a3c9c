"""A registered model version's card: what it learned from, how it was trained, how well it colorizes next
to doing nothing (the gray baseline: the lightness alone, which already scores well on PSNR), and what it is
for and not for. `models.registry.register_run` logs it as the run's `model_card.md` and makes it the model
version's description, so the registry's page for the version shows it.

Text from numbers only: no MLflow, no lake, no Airflow here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.metrics import BaselineComparison

MODEL_CARD_ARTIFACT = "model_card.md"
# MLflow's SQL registry keeps a model version's description in a VARCHAR(5000).
DESCRIPTION_LIMIT = 5000
# Below this share of the truth's colorfulness, colors read as washed out to a person.
DULL_RATIO = 0.5
METRIC_COLUMNS = (("l1_ab", "L1 a/b ↓", ".2f"), ("psnr", "PSNR dB ↑", ".2f"), ("ssim", "SSIM ↑", ".3f"))


def model_card(
    *,
    model: str,
    version: str,
    run_id: str,
    config: dict[str, Any],
    steps: int,
    manifest: dict[str, Any],
    dataset_card: str | None,
    dataset_limitations: Sequence[str],
    comparisons: Sequence[BaselineComparison],
    metrics: dict[str, float],
) -> str:
    """The card as Markdown. `dataset_card` is where the dataset's card is (None for a version published
    before cards existed), `dataset_limitations` what that card says the data cannot be trusted for."""
    splits = ", ".join(f"{split} {count}" for split, count in manifest["splits"].items())
    sources = ", ".join(f"{source} {count}" for source, count in sorted(manifest["source_mix"].items()))
    where = (
        f"Its card (sources, licenses, the credit they require, quality): {dataset_card}, also this run's"
        " artifact `dataset/card.md`."
        if dataset_card
        else f"It has no card yet (published before cards existed): `colorflow dataset card {manifest['version']}`"
        " writes one."
    )
    lines = [
        f"# Model card: {model} version {version}",
        "",
        f"Pix2pix colorizer (U-Net generator, PatchGAN discriminator) from MLflow run `{run_id}`, trained"
        f" {steps} steps. It predicts the a/b (color) channels of CIE Lab from the L (lightness) channel.",
        "",
        "## Data",
        "",
        f"Dataset version `{manifest['version']}`: {manifest['sample_count']} samples ({splits}); sources: {sources}.",
        where,
        "",
        "## Evaluation",
        "",
        "Each set colorized by the model, and by the gray baseline (the lightness alone, a/b neutral), against"
        " the real colors. A model worth having beats gray on PSNR and comes near the truth's colorfulness.",
        "",
        "| set | images | colorizer | " + " | ".join(label for _, label, _ in METRIC_COLUMNS) + " | colorfulness |",
        "|---|---:|---|" + "---:|" * (len(METRIC_COLUMNS) + 1),
    ]
    for comparison in comparisons:
        for who, values in (("model", comparison.model), ("gray baseline", comparison.gray)):
            cells = " | ".join(f"{values[name]:{style}}" for name, _, style in METRIC_COLUMNS)
            lines.append(
                f"| {comparison.name} | {comparison.images} | {who} | {cells} | {values['colorfulness']:.1f} |"
            )
        dashes = " | ".join("–" for _ in METRIC_COLUMNS)
        truth = comparison.model["colorfulness_truth"]
        lines.append(f"| {comparison.name} | {comparison.images} | truth | {dashes} | {truth:.1f} |")
    lines += [
        "",
        "Promotion compares these over every evaluated image: "
        + ", ".join(f"`{name}` {value:.3f}" for name, value in sorted(metrics.items()))
        + ".",
        "",
        "## Intended use",
        "",
        "Suggesting plausible colors for black-and-white photographs: previews, restoration drafts, demos. The"
        " model guesses the colors typical of its training photos; it does not know a scene's real colors, so"
        " its output is no evidence of them (historical, forensic or medical use is out of scope).",
        "",
        "## Limitations",
        "",
        *(f"- {limitation}" for limitation in limitations(config, comparisons)),
        *(f"- From its data: {limitation}" for limitation in dataset_limitations),
        # Last, so that a description cut to the registry's limit loses only what the run's params hold too.
        "",
        "## Training configuration",
        "",
        "| setting | value |",
        "|---|---|",
        *(f"| {name} | {f'`{value}`' if value != '' else '–'} |" for name, value in config.items()),
    ]
    return "\n".join(lines) + "\n"


def limitations(config: dict[str, Any], comparisons: Sequence[BaselineComparison]) -> list[str]:
    """What the evaluation itself says the model falls short in, and what follows from how it was trained."""
    found = []
    for comparison in comparisons:
        ours, gray = comparison.model["psnr"], comparison.gray["psnr"]
        if ours <= gray:
            found.append(
                f"On the {comparison.name} set its PSNR ({ours:.2f} dB) does not beat the gray baseline's"
                f" ({gray:.2f} dB): its colors are further from the truth than no color at all."
            )
        if comparison.model["colorfulness_ratio"] < DULL_RATIO:
            found.append(
                f"Washed-out colors on the {comparison.name} set: {comparison.model['colorfulness_ratio']:.0%}"
                " of the truth's colorfulness."
            )
    if comparisons and comparisons[0].name != "test":
        found.append(
            f"The dataset has no test split: it was measured on the {comparisons[0].name} split, which training"
            " did not fit but reported on, so a person tuning runs may have tuned against it."
        )
    found += [
        f"Colors are predicted at {config['crop_size']} px and scaled to the photo's size: small colored"
        " details (signs, clothing patterns) blur or take their surroundings' color.",
        "The panel's photographs are well-known samples; where the training data holds them too (the sandbox"
        " serves them), the panel's scores are optimistic.",
    ]
    return found


def version_description(card: str, card_uri: str) -> str:
    """The card as a model version's description: whole when it fits the registry, else the whole lines
    that fit (the training configuration goes first, being last) and where the whole card is."""
    if len(card) <= DESCRIPTION_LIMIT:
        return card
    pointer = f"\n(The whole card: {card_uri}.)\n"
    shortened = card[: DESCRIPTION_LIMIT - len(pointer)]
    return shortened[: shortened.rfind("\n") + 1] + pointer

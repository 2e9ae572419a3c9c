"""Stitch every accepted image, from every source, into one immutable dataset version of CIE Lab samples in
WebDataset tar shards: `datasets/<version>/<split>/<split>-NNNNN.tar` plus `datasets/<version>/manifest.json`.

A build has three steps, so an orchestrator can fan the middle one out over workers:

1. `plan_build`: select accepted images (optionally by source and fetch date), drop copies of the same
   photo that reached the lake from different sources, give each image its split by hashing its content,
   and cut the members into shards, each shard's member list written to `datasets/<version>/members/`
   (tasks pass shard keys, never member lists). The version is a hash of the member list and the
   transform parameters, so planning the same data twice names the same version, and an already published
   version is a no-op.
2. `write_shard`: for each shard, decode, orient, crop, resize and convert its images, writing the tar
   atomically. Shard bytes are reproducible (fixed tar metadata, sorted members), so rewriting one after a
   crash gives the same object.
3. `publish`: check every shard is in the lake, record membership in the catalog (a shard at a time,
   from its member list less what its writer left out), write the version's card (sources, licenses and
   the credit they require, quality, splits, limitations: `datasets/<version>/card.md` and `card.json`),
   then write the manifest. The manifest is the version's only mark of existence and goes last: a build
   killed at any point leaves no visible version, and its rerun completes it.

Samples are keyed by the image's sha256 and hold `lab.npy` (uint8, `load_size` square, encoding in
`pipelines.lab`) and `json` (sources, split, raw key). Training crops and flips at random, so shards keep a
margin (286 for 256 crops) and no augmentation.

Each step has its file:

| file | step |
|---|---|
| `params.py` | what a version is made of: filters, splits, shard size, transform (`ShardParams`) |
| `select.py` | the accepted images, one per photo, streamed with their splits (`stream_members`) |
| `plan.py` | the version and its shards, each shard's members in the lake (`plan_build`, `load_shard`) |
| `transform.py` | one image's bytes to a square of 8-bit Lab (`transform_image`) |
| `webdataset.py` | a shard's tar written to the lake and streamed back (`write_shard`, `iter_samples`) |
| `layout.py` | every key of a version in the lake (`manifest_key`, `card_keys`, `members_key`) |
| `card.py` | the version's dataset card, from the catalog (`write_card`, `load_card`) |
| `publish.py` | the version made visible, found and described (`publish`, `load_manifest`, `latest_version`) |
| `build.py` | the three steps in one process (`stitch_dataset`) |
| `cli.py` | the commands `colorflow dataset build`, `show` and `card`, also `python -m pipelines.stitch` |

    colorflow dataset build --source unsplash --source flickr --workers 2
    colorflow dataset show <version>
    colorflow dataset card <version>
"""

from __future__ import annotations

from pipelines.stitch.build import stitch_dataset
from pipelines.stitch.card import load_card, write_card
from pipelines.stitch.layout import card_keys, manifest_key
from pipelines.stitch.params import ShardParams
from pipelines.stitch.plan import ShardSpec, group_shards, load_shard, plan_build, save_shard
from pipelines.stitch.publish import describe, latest_version, load_manifest, publish
from pipelines.stitch.select import DatasetImage
from pipelines.stitch.transform import transform_image
from pipelines.stitch.webdataset import iter_samples, write_shard

__all__ = [
    "DatasetImage",
    "ShardParams",
    "ShardSpec",
    "card_keys",
    "describe",
    "group_shards",
    "iter_samples",
    "latest_version",
    "load_card",
    "load_manifest",
    "load_shard",
    "manifest_key",
    "plan_build",
    "publish",
    "save_shard",
    "stitch_dataset",
    "transform_image",
    "write_card",
    "write_shard",
]

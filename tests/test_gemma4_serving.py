"""The prediction server (Vertex AI's contract) serving a tiny Gemma 4 from a transformers folder.

In-process on every backend: the FastAPI app (``create_app``) loads the model from the folder
``gemma4_tiny.save_hf`` writes (the ``moe`` variant: experts, keys = values), the health route
says 503 "loading" until the model is in and 200 "ready" after; a prediction request returns
what ``model.generate`` gives for each instance, greedy and sampled. Once (JAX pass): the
real ``gemma-kit serve`` process started on the same folder, as Vertex AI starts the container.
"""

import time

import pytest
from fastapi.testclient import TestClient

from gemma_kit.models.gemma4 import Gemma4Backbone
from gemma_kit.serving import LocalServer, Settings, create_app
from gemma4_tiny import save_hf

INSTANCES = [{"prompt": "hello world", "max_tokens": 6},
             {"prompt": "the quick brown fox", "max_tokens": 4, "temperature": 0.8, "top_k": 20, "seed": 3}]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("gemma4_moe"))
    save_hf(path, "moe", seed=2)
    return path


def expected(model, instance):
    sampled = instance.get("temperature")
    return model.generate(instance["prompt"], max_new_tokens=instance["max_tokens"],
                          sampler="top_k" if sampled else "greedy", temperature=sampled or 1.0,
                          top_k=instance.get("top_k"), seed=instance.get("seed"))


def test_the_app_loads_gemma4_from_a_folder_and_predicts(folder):
    settings = Settings.from_env({}, model=folder, warmup="1", max_batch=2)
    app = create_app(settings)                                      # no engine: it loads in a thread
    with TestClient(app) as client:
        loading = client.get("/health")                             # the loader thread has only just started
        assert (loading.status_code, loading.json()) == (503, {"status": "loading"})
        early = client.post("/predict", json={"instances": INSTANCES[:1]})
        assert early.status_code == 503 and "still loading" in early.json()["error"]
        deadline = time.monotonic() + 300
        while client.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("/health").json() == {"status": "ready"}
        model = app.state.engine.model
        assert isinstance(model.backbone, Gemma4Backbone) and model.config.num_experts == 4

        response = client.post("/predict", json={"instances": INSTANCES})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert [p["text"] for p in predictions] == [expected(model, i) for i in INSTANCES]
        assert all(isinstance(p["text"], str) and p["text"] for p in predictions)
        assert [p["prompt_tokens"] for p in predictions] == [len(model.encode_prompt(i["prompt"])) for i in INSTANCES]
        assert [p["generated_tokens"] <= i["max_tokens"] for p, i in zip(predictions, INSTANCES)] == [True, True]
        bad = client.post("/predict", json={"instances": [{"prompt": "hi", "max_tokens": 0}]})
        assert bad.status_code == 400 and "greater than or equal to 1" in bad.json()["error"]


@pytest.mark.once
def test_the_serve_command_serves_gemma4(folder):
    with LocalServer("--model", folder, "--warmup", "1", "--max-batch", "2") as server:
        assert server.request("GET", "/health") == (200, {"status": "ready"})
        predictions = server.predict(INSTANCES)
        loaded = [line for line in server.log() if line.get("event") == "model_loaded"]
    from gemma_kit import load
    model = load(folder)
    assert [p["text"] for p in predictions] == [expected(model, i) for i in INSTANCES]
    assert [line["source"] for line in loaded] == [folder]

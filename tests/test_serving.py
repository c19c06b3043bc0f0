"""The prediction server (gemma_kit/serving): Vertex AI's contract, robustness, batching, shutdown.

The server tests start the real command (the Dockerfile's CMD) as a subprocess on
127.0.0.1, like Vertex AI starts the container, and always stop it. A tiny random
Gemma 3 written as a GGUF file serves the hostile-request, load and SIGTERM tests;
the real Gemma 3 270M checks that predictions equal ``model.generate``, and a LoRA
adapter saved with ``gemma_kit.tuning`` is loaded at start. The parts
that need no process (batcher, schema, settings, the gs:// download) are tested
in-process, on every backend.
"""

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import gemma_kit
from gemma_kit.serving import SERVE_COMMAND, Batcher, Job, Limits, LocalServer, QueueFull, RequestError, Settings
from gemma_kit.serving import parse_request
from gemma_kit.serving.batcher import padded_size
from gemma_kit.serving.source import choose_source, local_model_path
from conftest import randomize, tiny_gemma3_config
from tiny_gguf import backbone_tensors, write_gguf

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["hello world", "abc", "the quick brown fox jumps", "z", "serve me well", "one two three four five six",
           "gemma", "x y z"]


# -- in-process parts (every backend) ------------------------------------------------------------------

def _job(sampler="greedy", seed=None, tag=0):
    sampling = dict(sampler=sampler) if sampler == "greedy" else dict(sampler=sampler, temperature=0.7, top_k=None,
                                                                       top_p=None, seed=seed)
    return Job([tag], 4, sampling)


def test_batcher_groups_compatible_jobs_and_runs_seeded_samples_alone():
    batches = []

    def run(jobs):
        batches.append([(j.sampling["sampler"], j.prompt_ids[0]) for j in jobs])
        return [j.prompt_ids[0] * 10 for j in jobs]

    batcher = Batcher(run, max_batch=3, max_wait_s=0.05, max_queue=16)
    jobs = [_job(tag=0), _job("temperature", seed=1, tag=1), _job(tag=2), _job("temperature", tag=3),
            _job(tag=4), _job(tag=5), _job("temperature", seed=1, tag=6), _job("temperature", tag=7)]
    batcher.submit(jobs)
    assert [j.future.result(10) for j in jobs] == [0, 10, 20, 30, 40, 50, 60, 70]   # each job gets its own row
    batcher.close()
    assert batches == [[("greedy", 0), ("greedy", 2), ("greedy", 4)],      # at most max_batch, oldest first
                       [("temperature", 1)],                               # seeded: alone
                       [("temperature", 3), ("temperature", 7)],           # unseeded samples with equal settings
                       [("greedy", 5)],
                       [("temperature", 6)]]
    assert (batcher.accepted, batcher.completed, batcher.batches) == (8, 8, 5)


def test_batch_sizes_round_up_to_few_shapes():
    assert [padded_size(n, 16) for n in range(1, 17)] == [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16]
    assert sorted({padded_size(n, 32) for n in range(1, 33)}) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
    assert padded_size(10, 10) == 10 and padded_size(1, 1) == 1


def test_batcher_refuses_work_beyond_its_queue_and_drains_on_close():
    release = threading.Event()
    batcher = Batcher(lambda jobs: [release.wait(10) for _ in jobs], max_batch=1, max_wait_s=0, max_queue=2)
    first = [_job()]
    batcher.submit(first)                      # taken by the worker, which blocks
    time.sleep(0.2)
    queued = [_job(), _job()]
    batcher.submit(queued)
    with pytest.raises(QueueFull, match="queue is full"):
        batcher.submit([_job()])
    release.set()
    batcher.close()
    assert all(j.future.result(0) for j in first + queued)
    with pytest.raises(QueueFull, match="shutting down"):
        batcher.submit([_job()])


def test_batcher_passes_a_failure_to_every_waiting_job_and_keeps_working():
    calls = []

    def run(jobs):
        calls.append(len(jobs))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return ["ok" for _ in jobs]

    batcher = Batcher(run, max_batch=4, max_wait_s=0.01)
    failing = [_job(), _job()]
    batcher.submit(failing)
    for job in failing:
        with pytest.raises(RuntimeError, match="boom"):
            job.future.result(10)
    later = _job()
    batcher.submit([later])
    assert later.future.result(10) == "ok"
    batcher.close()


def test_instances_choose_the_sampler_and_take_defaults_from_parameters():
    limits = Limits(max_instances=4, max_tokens=100)
    body = {"instances": [{"prompt": "a"}, {"prompt": "b", "temperature": 0.5, "top_k": 5, "seed": 3},
                          {"prompt": "c", "temperature": 0.5, "top_p": 0.8, "max_tokens": 7},
                          {"prompt": "d", "temperature": 2, "max_tokens": 5.0}],      # protobuf numbers are doubles
            "parameters": {"max_tokens": 9}}
    a, b, c, d = parse_request(body, limits)
    assert a.sampling() == {"sampler": "greedy"} and a.max_tokens == 9
    assert b.sampling() == dict(sampler="top_k", temperature=0.5, top_k=5, top_p=None, seed=3)
    assert c.sampling()["sampler"] == "top_p" and c.max_tokens == 7
    assert d.sampling()["sampler"] == "temperature" and d.temperature == 2.0
    assert d.max_tokens == 5 and isinstance(d.max_tokens, int)


@pytest.mark.parametrize("body, message", [
    ([], "JSON object"),
    ({"instances": [{"prompt": "a", "max_tokens": 101}]}, "instances[0].max_tokens: 101 is above"),
    ({"instances": [{"prompt": "a"}] * 5}, "Too many instances: 5 > 4"),
    ({"instances": [{"prompt": "a"}, {"prompt": "b", "top_k": 3}]}, "instances[1]: Value error, top_k"),
    ({"instances": [{"prompt": "a"}], "parameters": {"max_tokens": "9"}}, "instances[0].max_tokens"),
])
def test_request_errors_name_the_field(body, message):
    with pytest.raises(RequestError) as error:
        parse_request(body, Limits(max_instances=4, max_tokens=100))
    assert message in str(error.value)


def test_settings_read_vertex_variables_and_flags_win():
    env = {"AIP_HTTP_PORT": "9001", "AIP_PREDICT_ROUTE": "/v1/predict", "AIP_STORAGE_URI": "gs://bucket/model",
           "GEMMA_KIT_MODEL": "ignored.gguf", "GEMMA_KIT_MAX_BATCH": "4", "GEMMA_KIT_MAX_WAIT_MS": "2.5"}
    settings = Settings.from_env(env)
    assert (settings.port, settings.predict_route, settings.model, settings.max_batch, settings.max_wait_ms) == \
        (9001, "/v1/predict", "gs://bucket/model", 4, 2.5)
    assert settings.health_route == "/health" and settings.host == "0.0.0.0"
    flags = Settings.from_env(env, model="local.gguf", port=1234, max_batch=None)
    assert (flags.model, flags.port, flags.max_batch) == ("local.gguf", 1234, 4)
    assert choose_source(None, {}) == "gemma3_270m"
    with pytest.raises(ValueError, match="GEMMA_KIT_MAX_BATCH='many'"):
        Settings.from_env({"GEMMA_KIT_MAX_BATCH": "many"})
    with pytest.raises(ValueError, match="max_queue must be at least 1"):
        Settings.from_env({}, max_queue=0)


@pytest.mark.parametrize("args, message", [
    (["--max-batch", "0"], "max_batch must be at least 1"),
    (["--port", "8080", "--max-tokens", "-3"], "max_tokens must be at least 1"),
])
def test_serve_command_checks_its_settings_before_loading(capsys, args, message):
    from gemma_kit.cli import main
    assert main(["serve", "--model", "no/such/model.gguf", *args]) == 2
    assert message in capsys.readouterr().err


class _Blob:
    def __init__(self, name, data):
        self.name, self.data = name, data

    def download_to_filename(self, path):
        Path(path).write_bytes(self.data)


class _StorageClient:
    """Stands in for google.cloud.storage.Client: list_blobs and download_to_filename."""

    def __init__(self, blobs):
        self.blobs, self.calls = blobs, []

    def list_blobs(self, bucket, prefix):
        self.calls.append((bucket, prefix))
        return [b for b in self.blobs if b.name.startswith(prefix)]


def test_storage_uri_is_downloaded_and_a_single_gguf_is_chosen():
    client = _StorageClient([_Blob("models/v1/", b""), _Blob("models/v1/gemma.gguf", b"GGUF"),
                             _Blob("models/v1/notes/readme.txt", b"hi"), _Blob("models/v2/other.gguf", b"x")])
    path = local_model_path("gs://my-bucket/models/v1", client=client)
    assert client.calls == [("my-bucket", "models/v1/")]
    assert Path(path).name == "gemma.gguf" and Path(path).read_bytes() == b"GGUF"
    assert (Path(path).parent / "notes" / "readme.txt").read_bytes() == b"hi"
    assert local_model_path("some/local/folder") == "some/local/folder"
    with pytest.raises(FileNotFoundError, match="No files under gs://my-bucket/empty"):
        local_model_path("gs://my-bucket/empty", client=client)


def _dockerfile(name):
    """[(INSTRUCTION, arguments)] of a Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / name).read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(word.upper(), rest) for word, rest in (line.split(None, 1) for line in lines)]


@pytest.mark.parametrize("name, base", [("Dockerfile", "python:3.11-slim"), ("Dockerfile.gpu", "nvidia/cuda:")])
def test_dockerfiles_run_the_tested_command_as_a_user(name, base):
    instructions = _dockerfile(name)
    words = [w for w, _ in instructions]
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith(base)
    cmd = [rest for word, rest in instructions if word == "CMD"]
    assert len(cmd) == 1 and json.loads(cmd[0]) == SERVE_COMMAND        # the exec form the tests start
    users = [rest.strip() for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0") and words.index("USER") < words.index("CMD")
    assert any(word == "EXPOSE" and rest.strip() == "8080" for word, rest in instructions)
    assert any(word == "COPY" and "gemma_kit" in rest for word, rest in instructions)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


# -- a real server process --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    config = tiny_gemma3_config()
    path = tmp_path_factory.mktemp("serving") / "tiny.gguf"
    return write_gguf(path, config, backbone_tensors(randomize(gemma_kit.GemmaBackbone(config), seed=3)))


@pytest.fixture(scope="module")
def tiny_model(tiny_gguf):
    return gemma_kit.load(tiny_gguf)


@pytest.fixture(scope="module")
def tiny_server(tiny_gguf):
    server = LocalServer("--model", tiny_gguf, "--max-prompt-tokens", "64", "--max-wait-ms", "20")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.mark.once
def test_health_and_predictions_equal_generate(tiny_server, tiny_model):
    assert tiny_server.request("GET", "/health") == (200, {"status": "ready"})
    instances = [{"prompt": "hello world"}, {"prompt": "the quick brown fox jumps", "max_tokens": 3},
                 {"prompt": "abc", "temperature": 0.8, "top_k": 20, "seed": 7},
                 {"prompt": "abc", "temperature": 0.9, "top_p": 0.7, "seed": 8, "max_tokens": 9},
                 {"prompt": "gemma", "temperature": 1.3, "seed": 9}]
    predictions = tiny_server.predict(instances, parameters={"max_tokens": 12})
    assert len(predictions) == len(instances)
    for instance, prediction in zip(instances, predictions):
        instance = {"max_tokens": 12, "temperature": 0.0, **instance}
        sampler = "greedy" if not instance["temperature"] else "top_k" if "top_k" in instance else \
            "top_p" if "top_p" in instance else "temperature"
        expected = tiny_model.generate(instance["prompt"], max_new_tokens=instance["max_tokens"], sampler=sampler,
                                       temperature=instance["temperature"] or 1.0, top_k=instance.get("top_k"),
                                       top_p=instance.get("top_p"), seed=instance.get("seed"))
        assert prediction["text"] == expected, instance
        ids = tiny_model.encode_prompt(instance["prompt"])
        assert prediction["prompt_tokens"] == len(ids)
        assert prediction["generated_tokens"] <= instance["max_tokens"]
        assert prediction["finish_reason"] == ("length" if prediction["generated_tokens"] == instance["max_tokens"]
                                               else "stop")


def _hostile_requests():
    """(what, method, path, body, headers, expected status, words in the error)."""
    def post(what, body, status, words, headers=None):
        raw = body if isinstance(body, bytes) or hasattr(body, "__next__") else json.dumps(body).encode()
        return (what, "POST", "/predict", raw, headers or {}, status, words)

    ok = {"prompt": "hello"}
    return [
        post("not JSON", b"{not json", 400, "not valid JSON"),
        post("empty body", b"", 400, "not valid JSON"),
        post("invalid UTF-8", b"\xff\xfe\x00", 400, "not valid JSON"),
        post("nested 100,000 deep", b"[" * 100_000, 400, "not valid JSON"),
        post("a list", [ok], 400, "JSON object"),
        post("a string", "instances", 400, "JSON object"),
        post("no instances", {}, 400, "instances: Field required"),
        post("empty instances", {"instances": []}, 400, "instances: List should have at least 1 item"),
        post("instances not a list", {"instances": "hello"}, 400, "instances: Input should be a valid list"),
        post("instance not an object", {"instances": [1]}, 400, "instances[0]: Input should be a valid dictionary"),
        post("no prompt", {"instances": [{}]}, 400, "instances[0].prompt: Field required"),
        post("prompt a number", {"instances": [{"prompt": 5}]}, 400, "prompt: Input should be a valid string"),
        post("prompt null", {"instances": [{"prompt": None}]}, 400, "prompt: Input should be a valid string"),
        post("empty prompt", {"instances": [{"prompt": ""}]}, 400, "prompt: String should have at least 1"),
        post("prompt too long", {"instances": [{"prompt": "a " * 200}]}, 400, "tokens is above this server's limit"),
        post("max_tokens a string", {"instances": [{**ok, "max_tokens": "10"}]}, 400, "max_tokens: Input should be"),
        post("max_tokens a float", {"instances": [{**ok, "max_tokens": 10.5}]}, 400, "max_tokens: Input should be"),
        post("max_tokens true", {"instances": [{**ok, "max_tokens": True}]}, 400, "max_tokens: Input should be"),
        post("max_tokens 0", {"instances": [{**ok, "max_tokens": 0}]}, 400, "greater than or equal to 1"),
        post("max_tokens negative", {"instances": [{**ok, "max_tokens": -5}]}, 400, "greater than or equal to 1"),
        post("max_tokens huge", {"instances": [{**ok, "max_tokens": 10**30}]}, 400, "above this server's limit"),
        post("temperature negative", {"instances": [{**ok, "temperature": -1}]}, 400, "temperature"),
        post("temperature a word", {"instances": [{**ok, "temperature": "hot"}]}, 400, "temperature"),
        post("temperature NaN", b'{"instances": [{"prompt": "a", "temperature": NaN}]}', 400, "finite number"),
        post("top_k 0", {"instances": [{**ok, "temperature": 1, "top_k": 0}]}, 400, "top_k"),
        post("top_p 1.5", {"instances": [{**ok, "temperature": 1, "top_p": 1.5}]}, 400, "top_p"),
        post("top_k and top_p", {"instances": [{**ok, "temperature": 1, "top_k": 4, "top_p": 0.5}]}, 400, "not both"),
        post("top_k when greedy", {"instances": [{**ok, "top_k": 4}]}, 400, "need temperature > 0"),
        post("seed negative", {"instances": [{**ok, "temperature": 1, "seed": -1}]}, 400, "seed"),
        post("unknown field", {"instances": [{**ok, "promt": "x"}]}, 400, "promt: Extra inputs are not permitted"),
        post("parameters not an object", {"instances": [ok], "parameters": [1]}, 400, "parameters"),
        post("bad default in parameters", {"instances": [ok], "parameters": {"top_p": "x"}}, 400, "top_p"),
        post("17 instances", {"instances": [ok] * 17}, 400, "Too many instances: 17 > 16"),
        post("oversize body", {"instances": [{"prompt": "a" * 1_600_000}]}, 413, "limit is 1,572,864"),
        post("oversize chunked body", (b"x" * 65536 for _ in range(30)), 413, "above the limit"),   # no length
        ("unknown route", "POST", "/v1/models/gemma:predict", b"{}", {}, 404, "Not Found"),
        ("unknown GET route", "GET", "/admin", None, {}, 404, "Not Found"),
        ("GET on predict", "GET", "/predict", None, {}, 405, "Method Not Allowed"),
        ("DELETE on health", "DELETE", "/health", None, {}, 405, "Method Not Allowed"),
    ]


@pytest.mark.once
def test_malformed_and_hostile_requests_get_4xx_and_the_server_keeps_serving(tiny_server, tiny_model):
    cases = _hostile_requests()
    assert len(cases) >= 25
    failures = []
    for what, method, path, body, headers, status, words in cases:
        try:
            got, answer = tiny_server.request(method, path, body, headers, timeout=60)
        except OSError as error:                    # the server closed on us after answering an oversize body
            got, answer = None, repr(error)
        if got != status or words not in str(answer.get("error") if isinstance(answer, dict) else answer):
            failures.append((what, got, answer))
        assert tiny_server.request("GET", "/health")[0] == 200, f"not healthy after {what}"
    assert not failures, failures
    print(f"\n{len(cases)} malformed or hostile requests, each answered with its 4xx")
    assert tiny_server.predict([{"prompt": "hello world", "max_tokens": 5}])[0]["text"] == \
        tiny_model.generate("hello world", max_new_tokens=5)
    predict_lines = [line for line in tiny_server.log() if line.get("path") == "/predict"]
    assert all(set(line) >= {"time", "method", "status", "ms"} for line in predict_lines)
    assert sum(line["status"] >= 400 for line in predict_lines) >= len(cases) - 4


def _load(server, clients, requests_each, prompts, max_tokens):
    """Every client sends its requests one after the other; returns [(prompt, status, answer, seconds)]."""
    def client(index):
        results = []
        for i in range(requests_each):
            prompt = prompts[(index + i) % len(prompts)]
            start = time.perf_counter()
            body = json.dumps({"instances": [{"prompt": prompt, "max_tokens": max_tokens}]}).encode()
            try:
                status, answer = server.request("POST", "/predict", body, timeout=120)
            except OSError as error:
                status, answer = None, error
            results.append((prompt, status, answer, time.perf_counter() - start))
        return results

    with ThreadPoolExecutor(clients) as pool:
        return [r for rs in pool.map(client, range(clients)) for r in rs]


@pytest.mark.once
def test_load_32_clients_by_10_requests_has_no_errors(tiny_server, tiny_model):
    expected = dict(zip(PROMPTS, tiny_model.generate(PROMPTS, max_new_tokens=8)))
    logged_before = sum(1 for line in tiny_server.log() if line.get("path") == "/predict")
    start = time.perf_counter()
    results = _load(tiny_server, clients=32, requests_each=10, prompts=PROMPTS, max_tokens=8)
    wall = time.perf_counter() - start
    assert len(results) == 320
    errors = [(p, s, a) for p, s, a, _ in results if s != 200]
    assert not errors, errors[:3]
    assert all(a["predictions"][0]["text"] == expected[p] for p, _, a, _ in results)
    latencies = np.array([t for *_, t in results]) * 1000
    print(f"\nload: 32 clients x 10 requests (tiny model, 8 tokens) in {wall:.1f} s, {320 / wall:.1f} requests/s; "
          f"latency p50 {np.percentile(latencies, 50):.0f} ms, p99 {np.percentile(latencies, 99):.0f} ms")
    lines = [line for line in tiny_server.log() if line.get("path") == "/predict"][logged_before:]
    assert len(lines) == 320                                        # one log line per request
    sizes = [size for line in lines for size in line["batch_sizes"]]
    assert max(sizes) > 1                                           # concurrent requests shared batches
    print(f"mean batch size {np.mean(sizes):.1f}, largest {max(sizes)}")


@pytest.mark.once
def test_full_queue_answers_503_and_sigterm_loses_no_accepted_request(tiny_gguf, tiny_model):
    expected = dict(zip(PROMPTS, tiny_model.generate(PROMPTS, max_new_tokens=48)))
    server = LocalServer("--model", tiny_gguf, "--max-queue", "12", "--max-batch", "4", "--warmup", "1")
    try:
        server.start()
        status, answer = server.request("POST", "/predict", json.dumps({"instances": [{"prompt": "a"}] * 13}).encode())
        assert status == 503 and "queue is full" in answer["error"]

        outcomes, stop_sending = [], threading.Event()

        def client(index):
            i = 0
            while not stop_sending.is_set():
                prompt = PROMPTS[(index + i) % len(PROMPTS)]
                body = json.dumps({"instances": [{"prompt": prompt, "max_tokens": 48}]}).encode()
                try:
                    status, answer = server.request("POST", "/predict", body, timeout=120)
                except OSError as error:                # refused: the server no longer listens
                    status, answer = None, error
                outcomes.append((prompt, status, answer))
                if status is None:
                    return
                i += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while sum(1 for _, s, _ in outcomes if s == 200) < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        exit_status = server.process.wait(120)
        stop_sending.set()
        for thread in threads:
            thread.join(120)
    finally:
        server.stop()
    assert exit_status in (0, -signal.SIGTERM)
    log = server.log()
    shutdown = [line for line in log if line.get("event") == "shutdown"]
    assert shutdown and shutdown[0]["accepted"] == shutdown[0]["completed"]
    answered = [(p, a) for p, s, a in outcomes if s == 200]
    assert all(a["predictions"][0]["text"] == expected[p] for p, a in answered)
    assert {s for _, s, _ in outcomes} <= {200, 503, None}
    assert all(isinstance(a, ConnectionError) for _, s, a in outcomes if s is None)   # refused, never accepted
    # Every instance the server accepted came back to a client as a 200 (13 were refused whole).
    assert shutdown[0]["accepted"] == len(answered)
    signal_time = next(line["time"] for line in log if line.get("event") == "signal")
    finished_after_signal = [line for line in log if line.get("path") == "/predict" and line["status"] == 200
                             and line["time"] > signal_time]
    assert finished_after_signal, "no request was in flight at SIGTERM: the test did not test the drain"
    print(f"\nSIGTERM with 8 clients: {len(answered)} answered, {len(finished_after_signal)} of them finished "
          f"after the signal; {sum(s == 503 for _, s, _ in outcomes)} got 503, the rest were refused")


@pytest.mark.once
def test_real_gemma_270m_server_equals_generate(gemma_270m):
    prompts = ["The capital of France is", "def fibonacci(n):"]
    with LocalServer("--model", "gemma3_270m", "--warmup", "1", "--max-batch", "2", "--max-wait-ms", "200") as server:
        with ThreadPoolExecutor(2) as pool:               # two clients at once: one batch of 2
            greedy = list(pool.map(lambda p: server.predict([{"prompt": p, "max_tokens": 10}])[0], prompts))
        sampled = server.predict([{"prompt": prompts[0], "max_tokens": 10, "temperature": 0.8, "top_p": 0.9,
                                   "seed": 11}])[0]
        predict_lines = [line for line in server.log() if line.get("path") == "/predict"]
    for prompt, prediction in zip(prompts, greedy):
        assert prediction["text"] == gemma_270m.generate(prompt, max_new_tokens=10)
    assert "France" in greedy[0]["text"]
    assert sampled["text"] == gemma_270m.generate(prompts[0], max_new_tokens=10, sampler="top_p", top_p=0.9,
                                                  temperature=0.8, seed=11)
    assert [line["batch_sizes"] for line in predict_lines] == [[2], [2], [1]]   # the two clients shared a batch


@pytest.mark.once
def test_a_lora_adapter_loaded_at_start_changes_the_predictions_like_load_adapter_does(tiny_gguf, tiny_model,
                                                                                      tmp_path):
    from gemma_kit import tuning

    tuned = gemma_kit.load(tiny_gguf)
    tuning.enable_lora(tuned, rank=2, targets=("query", "value"), verbose=False)
    rng = np.random.default_rng(0)
    for layer in tuning.lora_layers(tuned):                 # B starts at 0 (a no-op adapter): make it matter
        layer.lora_kernel_b.assign(rng.normal(0, 1.0, layer.lora_kernel_b.shape).astype("float32"))
    adapter = tuning.save_adapter(tuned, tmp_path / "tiny.lora.safetensors")
    prompts = ["hello world", "the quick brown fox jumps"]
    with LocalServer("--model", tiny_gguf, "--lora", adapter, "--warmup", "1") as server:
        served = [p["text"] for p in server.predict([{"prompt": p, "max_tokens": 10} for p in prompts])]
        loaded = [line for line in server.log() if line.get("event") == "model_loaded"]
    assert served == tuned.generate(prompts, max_new_tokens=10)
    assert served != tiny_model.generate(prompts, max_new_tokens=10)    # the adapter is really in use
    assert loaded[0]["lora"] == adapter


def test_a_missing_model_is_named(tmp_path):
    from gemma_kit.serving import Engine
    with pytest.raises(ValueError, match="missing.gguf.: not a known name and no such file"):
        Engine.load(Settings.from_env({}, model=str(tmp_path / "missing.gguf")))


@pytest.mark.once
def test_a_bad_adapter_stops_the_server_with_the_reason(tiny_gguf, tmp_path):
    bogus = tmp_path / "not_an_adapter.safetensors"
    bogus.write_bytes(b"nonsense")
    with pytest.raises(RuntimeError, match="exited with status 1") as error:
        LocalServer("--model", tiny_gguf, "--lora", str(bogus), "--warmup", "none").start()
    assert "load_failed" in str(error.value) and "not_an_adapter" in str(error.value)

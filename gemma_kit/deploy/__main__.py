"""``python -m gemma_kit.deploy``: upload, deploy, call and clean up, or print it all with ``--dry-run``.

    python -m gemma_kit.deploy --project my-project --region us-central1 \\
        --image us-central1-docker.pkg.dev/my-project/gemma/gemma-kit:latest --dry-run
    python -m gemma_kit.deploy ... --machine-type g2-standard-8 --accelerator NVIDIA_L4:1 --env GEMMA_KIT_MAX_BATCH=32

A real run needs Google Cloud credentials (``gcloud auth application-default login``),
the Vertex AI API enabled, and the image pushed to Artifact Registry. It deletes the
endpoint and the model at the end unless ``--keep`` (an idle endpoint still bills).
"""

import argparse
import json
import sys

from .vertex import VertexConfig, describe, plan, run


def _parser():
    parser = argparse.ArgumentParser(prog="python -m gemma_kit.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--image", required=True, help="the pushed serving image")
    parser.add_argument("--name", default="gemma-kit", help="ID of the model and of the endpoint")
    parser.add_argument("--artifact-uri", default=None, help="gs:// folder with the model (else the image's 270M)")
    parser.add_argument("--machine-type", default="n1-standard-4")
    parser.add_argument("--accelerator", default=None, help="TYPE:COUNT, e.g. NVIDIA_L4:1")
    parser.add_argument("--replicas", default="1:1", help="MIN:MAX")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the container (repeatable)")
    parser.add_argument("--prompt", default="The capital of France is")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--keep", action="store_true", help="leave the endpoint deployed (it bills while it exists)")
    parser.add_argument("--dry-run", action="store_true", help="print the requests; send nothing")
    return parser


def _pair(text, sep, what):
    if sep not in text:
        raise ValueError(f"{what} must look like A{sep}B, got {text!r}")
    return text.split(sep, 1)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        accelerator, count = _pair(args.accelerator, ":", "--accelerator") if args.accelerator else (None, "0")
        low, high = _pair(args.replicas, ":", "--replicas")
        env = dict(_pair(item, "=", "--env") for item in args.env)
        config = VertexConfig(project=args.project, region=args.region, image_uri=args.image, name=args.name,
                              artifact_uri=args.artifact_uri, machine_type=args.machine_type,
                              accelerator_type=accelerator, accelerator_count=int(count), min_replicas=int(low),
                              max_replicas=int(high), env=env)
    except ValueError as error:
        print(f"gemma_kit.deploy: error: {error}", file=sys.stderr)
        return 2
    instances = [{"prompt": args.prompt, "max_tokens": args.max_tokens}]
    if args.dry_run:
        print(describe(plan(config, instances)))
        return 0
    predictions = run(config, instances, keep=args.keep)
    print(json.dumps(predictions, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

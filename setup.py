"""Packaging that pyproject.toml cannot say: the lessons' data sets ride in the wheel.

The repository keeps its data sets in ``data/``, beside their provenance; the wheel maps that
folder to ``gemma_kit/datasets/`` so ``gemma_kit.data.load("stdlib_fim")`` works wherever the
kit is installed (Colab, Kaggle, a bare folder). Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["gemma_kit*"]) + ["gemma_kit.datasets"],
    package_dir={"gemma_kit.datasets": "data"},
    package_data={"gemma_kit.datasets": ["*.jsonl", "*.md", "*.py", "*.json", "*.model", "*.safetensors"]},
)

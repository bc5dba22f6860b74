"""xtra: model-based cross-task transfer (XTRA) on EfficientZero, trained with PyTorch Lightning."""

__version__ = "0.1.0"

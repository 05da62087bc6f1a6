"""Backbones by name. Every model takes float clips in [0, 1] shaped (B, 3, T, H, W) and normalises them itself with
the statistics its weights were trained with (:func:`preprocessing`: torchvision's weight transforms per arch), so a
checkpoint is self-contained: callers never need to know the mean/std it was trained with.

Input constraints (checked by :func:`check_input`, one-line error otherwise):
- ``tiny3d``, ``r3d_18``, ``mc3_18``, ``r2plus1d_18``: any T ≥ 1, H = W ≥ 16 (global pooling).
- ``s3d``: T ≥ 8, H = W ≥ 32; torchvision's fixed (2, 7, 7) average pool is replaced by an adaptive one so 112×112
  (and the 64×64 CPU default) work; the pooled features are the same at 224×224.
- ``swin3d_t``: any size (windows adapt and inputs are padded), H = W ≥ 32.
- ``mvit_v1_b``: exactly T = 16, H = W = 224 (its positional embedding is fixed to that grid).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dlkdd.torch_file import load_weights_only
from dlkdd.models.tiny import Tiny3DNet

# Kinetics-400 statistics of torchvision's ResNet-3D weights: what tiny3d has always been trained with (kept so its
# checkpoints and training numerics do not change); the torchvision archs take their own weights' (see preprocessing)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
# torchvision's builders by name, imported only when one is asked for: `import torchvision` pulls torch._dynamo in
# (about 1.1 s), paid by every stage and every `dlkdd predict` although the default arch is tiny3d
TORCHVISION_ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "swin3d_t")
ARCHS = ("tiny3d", *TORCHVISION_ARCHS)
# (exact T or None, exact size or None, minimum T, minimum size)
INPUT_RULES: dict[str, tuple[int | None, int | None, int, int]] = {
    "tiny3d": (None, None, 1, 16), "r3d_18": (None, None, 1, 16), "mc3_18": (None, None, 1, 16),
    "r2plus1d_18": (None, None, 1, 16), "s3d": (None, None, 8, 32), "swin3d_t": (None, None, 1, 32),
    "mvit_v1_b": (16, 224, 16, 224),
}


@dataclass(frozen=True)
class Preprocessing:
    """How a backbone's weights expect their input: ``(x / 255 - mean) / std`` per RGB channel.

    ``resize_size`` / ``crop_size`` are what torchvision's weight transforms do (resize the short side, centre crop),
    recorded for reference only: the pipeline feeds every arch squared ``frames.size`` frames, in training and at
    inference alike, so the model sees at inference what it saw in training.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_size: tuple[int, ...] | None = None
    crop_size: tuple[int, ...] | None = None


def preprocessing(arch: str) -> Preprocessing:
    """The input statistics of ``arch``: torchvision's own weight transforms (attributes only; nothing downloads);
    tiny3d keeps the Kinetics statistics it has always been trained with."""
    if arch == "tiny3d":
        return Preprocessing(KINETICS_MEAN, KINETICS_STD)
    if arch not in TORCHVISION_ARCHS:
        raise ValueError(f"unknown arch '{arch}'; choose one of {', '.join(ARCHS)}")
    import torchvision.models as tvm

    t = tvm.get_model_weights(arch).DEFAULT.transforms()  # a VideoClassification preset: plain attributes
    return Preprocessing(tuple(t.mean), tuple(t.std), tuple(t.resize_size), tuple(t.crop_size))


class Normalized(nn.Module):
    """Wraps a backbone with per-channel input normalisation: (B, 3, T, H, W) in [0, 1] → logits (B, K).

    ``mean``/``std`` are buffers, so a checkpoint carries the statistics it was trained with.
    """

    def __init__(self, backbone: nn.Module, mean: tuple[float, ...] = KINETICS_MEAN,
                 std: tuple[float, ...] = KINETICS_STD) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - self.mean) / self.std)


def check_input(arch: str, num_frames: int, size: int) -> None:
    """Raise ValueError (one line) if ``arch`` cannot take clips of ``num_frames`` × ``size``²."""
    if arch not in INPUT_RULES:
        raise ValueError(f"unknown arch '{arch}'; choose one of {', '.join(ARCHS)}")
    t, s, min_t, min_size = INPUT_RULES[arch]
    if (t is not None and num_frames != t) or (s is not None and size != s):
        raise ValueError(f"arch '{arch}' needs clips of exactly {t} frames x {s}x{s} pixels "
                         f"(set frames.num_frames={t}, frames.size={s}); got {num_frames}x{size}x{size}")
    if size < min_size or num_frames < min_t:
        raise ValueError(f"arch '{arch}' needs frames.num_frames >= {min_t} and frames.size >= {min_size}; "
                         f"got {num_frames}x{size}x{size}")


def _replace_head(arch: str, net: nn.Module, num_classes: int, dropout: float) -> None:
    """Swap the torchvision classifier for a ``num_classes`` one (and make S3D's pooling size-agnostic)."""
    if arch == "s3d":
        net.avgpool = nn.AdaptiveAvgPool3d(1)  # (B, 1024, 1, 1, 1) at any input size
        net.classifier = nn.Sequential(nn.Dropout(dropout), nn.Conv3d(1024, num_classes, kernel_size=1))
    elif arch == "mvit_v1_b":
        net.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.head[-1].in_features, num_classes))
    elif arch == "swin3d_t":
        net.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.head.in_features, num_classes))
    else:  # ResNet family
        net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.fc.in_features, num_classes))


def build_model(arch: str, num_classes: int, dropout: float = 0.3, pretrained: str | Path = "",
                width: int = 24) -> Normalized:
    """A classifier by name, randomly initialised or from a local weights file (nothing is ever downloaded).

    ``pretrained``: path to a state dict of the bare torchvision backbone (e.g. Kinetics weights saved with
    ``torch.save(model.state_dict())``) or of a dlkdd model / checkpoint. Keys and shapes are checked; only the
    classifier head may differ (it is re-initialised for ``num_classes``). ``width`` sizes ``tiny3d`` only; the
    torchvision backbones keep their published widths (so switching ``arch`` needs no other change).
    """
    prep = preprocessing(arch)  # ValueError for an unknown arch
    if arch == "tiny3d":
        model = Normalized(Tiny3DNet(num_classes, width=width, dropout=dropout), prep.mean, prep.std)
    else:
        from torchvision.models import video as tvv

        net = getattr(tvv, arch)(weights=None)
        _replace_head(arch, net, num_classes, dropout)
        model = Normalized(net, prep.mean, prep.std)
    if pretrained:
        load_pretrained(model, pretrained)
    return model


HEAD_PREFIXES = ("fc.", "head.", "classifier.")


def load_pretrained(model: Normalized, path: str | Path) -> None:
    """Load backbone weights from ``path`` into ``model`` (in place); ValueError with one line on any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"pretrained weights {path}: no such file (give a local path; nothing is downloaded)")
    state = load_weights_only(path, "pretrained state dict")
    if isinstance(state, dict) and "state_dict" in state:  # a dlkdd checkpoint
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"pretrained weights {path}: expected a dict of tensors (a state_dict)")
    own = model.state_dict()
    # accept bare-backbone keys ("layer1.0...") as well as wrapped ones ("backbone.layer1.0...")
    state = {(k if k in own or k in ("mean", "std") else f"backbone.{k}"): v for k, v in state.items()}
    is_head = lambda k: k.removeprefix("backbone.").startswith(HEAD_PREFIXES)  # noqa: E731
    body = {k: v for k, v in state.items() if not is_head(k) and k not in ("mean", "std")}
    missing = [k for k in own if k not in body and not is_head(k) and k not in ("mean", "std")]
    unexpected = [k for k in body if k not in own]
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise ValueError(f"pretrained weights {path}: {len(missing)} missing / {len(unexpected)} unexpected keys "
                         f"(e.g. '{first}'); are they for this arch?")
    bad = [k for k, v in body.items() if v.shape != own[k].shape]
    if bad:
        raise ValueError(f"pretrained weights {path}: shape mismatch for '{bad[0]}' "
                         f"{tuple(body[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}")
    heads = {k: v for k, v in state.items() if is_head(k) and k in own and v.shape == own[k].shape}
    model.load_state_dict({**own, **body, **heads})  # head kept only if it already fits num_classes


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

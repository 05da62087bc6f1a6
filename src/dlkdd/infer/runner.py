"""One interface over the deployable model formats: ``load_runner(path)`` → a :class:`Runner` that maps raw uint8 RGB
clips (B, T, H, W, 3) to class probabilities (B, K), doing the model's own normalisation inside.

- a dlkdd checkpoint (``.pt``): rebuilt with dlkdd's model code and run by PyTorch, on exactly the training path
  (``to_float`` then the model, whose ``Normalized`` wrapper holds the mean/std it was trained with);
- an ONNX export (``.onnx``, :func:`dlkdd.distill.export.export_onnx`): run by ONNX Runtime with no dlkdd model code
  and no torch import; classes, input geometry and mean/std come from the file's ``metadata_props`` (:data:`META`).

Every failure to load is a ``FileNotFoundError`` or ``ValueError`` with one line naming the file and what to do.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

META_PREFIX = "dlkdd."  # metadata_props keys of an ONNX export: dlkdd.classes, dlkdd.num_frames, ...
META_FIELDS = ("arch", "classes", "num_frames", "size", "mean", "std")
INPUT_NAME, OUTPUT_NAME = "clips", "logits"
# what the ONNX graph takes, written into the file so any consumer (not only this runner) can feed it
INPUT_CONTRACT = "float32 (B, 3, T, H, W) = (uint8 RGB / 255 - mean) / std per channel; output logits (B, K)"


@dataclass(frozen=True)
class ModelInfo:
    """What a deployed model needs around it: class names, input geometry (T frames of size x size) and mean/std."""

    arch: str
    classes: list[str]
    num_frames: int
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_metadata(self) -> dict[str, str]:
        """String key/values for ONNX ``metadata_props`` (JSON values, ``dlkdd.`` keys)."""
        meta = {f"{META_PREFIX}{k}": json.dumps(v) for k, v in asdict(self).items()}
        return {**meta, f"{META_PREFIX}input": json.dumps(INPUT_CONTRACT)}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], path: Path) -> ModelInfo:
        missing = [k for k in META_FIELDS if f"{META_PREFIX}{k}" not in meta]
        if missing:
            raise ValueError(f"{path}: no dlkdd metadata ({', '.join(missing)} missing): re-export it with "
                             "`dlkdd export --format onnx`")
        try:
            v = {k: json.loads(meta[f"{META_PREFIX}{k}"]) for k in META_FIELDS}
            return cls(str(v["arch"]), [str(c) for c in v["classes"]], int(v["num_frames"]), int(v["size"]),
                       _triple(v["mean"]), _triple(v["std"]))
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{path}: unreadable dlkdd metadata ({err}): re-export it with "
                             "`dlkdd export --format onnx`") from None


def _triple(v: Any) -> tuple[float, float, float]:
    t = tuple(float(x) for x in v)
    if len(t) != 3:
        raise ValueError(f"expected 3 channel values, got {len(t)}")
    return t  # type: ignore[return-value]


def check_clips(clips: np.ndarray, info: ModelInfo) -> None:
    """ValueError (one line) unless ``clips`` is uint8 (B, T, size, size, 3) with T = the model's num_frames."""
    want = (info.num_frames, info.size, info.size, 3)
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[1:] != want:
        raise ValueError(f"the model takes uint8 RGB clips (B, {', '.join(map(str, want))}); "
                         f"got {clips.dtype} {tuple(clips.shape)}")


def normalize(clips: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 (B, T, H, W, 3) RGB → float32 (B, 3, T, H, W) = (x / 255 - mean) / std, the ONNX graph's input.

    The same float32 operations, in the same order, as training's ``to_float`` + ``Normalized``.
    """
    x = np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3)).astype(np.float32) / np.float32(255.0)
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1, 1)
    return (x - m) / s


def softmax(logits: np.ndarray) -> np.ndarray:
    """(B, K) logits → (B, K) probabilities, float32, stable for large logits."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Runner:
    """A loaded model: ``runner(clips uint8 (B, T, H, W, 3) RGB) -> probs float32 (B, K)``."""

    backend = ""

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    @property
    def num_frames(self) -> int:
        return self.info.num_frames

    @property
    def size(self) -> int:
        return self.info.size

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        check_clips(clips, self.info)
        return softmax(self.logits(clips))

    def logits(self, clips: np.ndarray) -> np.ndarray:  # (B, T, H, W, 3) uint8 → (B, K) float32
        raise NotImplementedError


class TorchRunner(Runner):
    """A dlkdd checkpoint run by PyTorch on the training path (``to_float`` → model with its own normalisation)."""

    backend = "pytorch"

    def __init__(self, path: Path, device: str = "cpu") -> None:
        import torch

        from dlkdd.distill.checkpoint import load_checkpoint
        from dlkdd.models.build import build_model

        ckpt = load_checkpoint(path)  # FileNotFoundError / ValueError with one line
        try:
            if not isinstance(ckpt, dict):
                raise TypeError(f"a {type(ckpt).__name__}, not a dict")
            arch, classes = str(ckpt["arch"]), [str(c) for c in ckpt["classes"]]
            num_frames, size, state = int(ckpt["num_frames"]), int(ckpt["size"]), dict(ckpt["state_dict"])
            width = int(ckpt.get("width", 24))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{path}: not a dlkdd model checkpoint ({type(err).__name__}: {err}); pass "
                             "models/student.pt or an .onnx export") from None
        try:
            model = build_model(arch, len(classes), width=width)
        except ValueError as err:  # an arch this version does not know
            raise ValueError(f"{path}: {err}") from None
        _load_state(model, state, path, arch, len(classes))
        self.model = model.eval().to(device)
        self.device = device
        self._torch = torch
        mean = tuple(float(v) for v in model.mean.flatten())  # the statistics this checkpoint was trained with
        std = tuple(float(v) for v in model.std.flatten())
        super().__init__(ModelInfo(arch, classes, num_frames, size, mean, std))  # type: ignore[arg-type]

    def logits(self, clips: np.ndarray) -> np.ndarray:
        from dlkdd.data.dataset import to_float

        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).to(self.device)
        with torch.inference_mode():
            return self.model(to_float(x)).float().cpu().numpy()


def _load_state(model: Any, state: dict, path: Path, arch: str, num_classes: int) -> None:
    """Load ``state`` into ``model``; ValueError naming the first key that does not fit (no torch traceback)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        what = (f"'{bad[0]}' is {tuple(state[bad[0]].shape)}, the arch needs {tuple(own[bad[0]].shape)}" if bad
                else f"{len(missing)} missing / {len(unexpected)} unexpected weights, e.g. "
                     f"'{(missing or unexpected)[0]}'")
        raise ValueError(f"{path}: weights do not fit arch '{arch}' with {num_classes} classes ({what}); "
                         "the checkpoint is damaged or was edited")
    model.load_state_dict(state)


class OnnxRunner(Runner):
    """An ONNX export run by ONNX Runtime; everything around the graph comes from its metadata (no dlkdd model code)."""

    backend = "onnxruntime"

    def __init__(self, path: Path, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        available = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types for a damaged or foreign file
            raise ValueError(f"{path}: not a readable ONNX model ({type(err).__name__}); export one with "
                             "`dlkdd export --format onnx`") from None
        info = ModelInfo.from_metadata(self.session.get_modelmeta().custom_metadata_map, path)
        self.input_name = self.session.get_inputs()[0].name
        super().__init__(info)

    def logits(self, clips: np.ndarray) -> np.ndarray:
        x = normalize(clips, self.info.mean, self.info.std)
        return np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)


def load_runner(path: str | Path, device: str = "cpu") -> Runner:
    """The runner for ``path``: ``.onnx`` → ONNX Runtime, anything else → a dlkdd checkpoint run by PyTorch.

    ``device`` applies to checkpoints (e.g. ``"cuda"``); ONNX Runtime picks CUDA when its GPU build is installed.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxRunner(path)
    return TorchRunner(path, device)

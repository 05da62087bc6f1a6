"""One interface over the deployable model formats: ``load_runner(path)`` → a :class:`Runner` that maps raw uint8 RGB
clips (B, T, H, W, 3) to class probabilities (B, K), doing the model's own normalisation inside.

- a dlkdd checkpoint (``.pt``): rebuilt with dlkdd's model code and run by PyTorch, on exactly the training path
  (``to_float`` then the model, whose ``Normalized`` wrapper holds the mean/std it was trained with);
- an ONNX export (``.onnx``, :func:`dlkdd.distill.export.export_onnx`): run by ONNX Runtime with no dlkdd model code
  and no torch import; classes, input geometry and mean/std come from the file's ``metadata_props`` (:data:`META`).

Every failure to load is a ``FileNotFoundError`` or ``ValueError`` with one line naming the file and what to do.
What travels around the weights (class names, input geometry, mean/std) can be edited or damaged without the weights
changing, so it is checked on load against the weights or the graph (:meth:`ModelInfo.check`, :func:`check_graph`):
a model whose metadata does not fit is refused, never run to a wrong label.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

META_PREFIX = "dlkdd."  # metadata_props keys of an ONNX export: dlkdd.classes, dlkdd.num_frames, ...
META_FIELDS = ("arch", "classes", "num_frames", "size", "mean", "std")
INPUT_NAME, OUTPUT_NAME = "clips", "logits"
# what the ONNX graph takes, written into the file so any consumer (not only this runner) can feed it
INPUT_CONTRACT = "float32 (B, 3, T, H, W) = (uint8 RGB / 255 - mean) / std per channel; output logits (B, K)"
REEXPORT = "re-export it with `dlkdd export --format onnx`"
# Bounds on the input geometry a model may ask for. Published video backbones take 8-128 frames of 112-448 px; these
# leave room for any real model yet refuse an edited value (100000 frames) before it asks for gigabytes per clip.
# 8 px: below that a stride-2 stem and a pooling leave nothing to classify.
NUM_FRAMES_RANGE = (1, 512)
SIZE_RANGE = (8, 1024)
# mean and std are statistics of pixels scaled to [0, 1] (0 and 1: no normalisation). A std under one 8-bit grey level
# (1/255) means pixels that never changed: no real model; it scales the input by > 255 and the network saturates to
# confident garbage (an export edited to std 1e-37 gave one class at 1.000), and 0 divides by zero.
STD_RANGE = (1 / 255, 1.0)


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
            raise ValueError(f"{path}: no dlkdd metadata ({', '.join(missing)} missing): {REEXPORT}")
        try:
            v = {k: json.loads(meta[f"{META_PREFIX}{k}"]) for k in META_FIELDS}
            return cls(str(v["arch"]), class_list(v["classes"]), whole(v["num_frames"], "num_frames"),
                       whole(v["size"], "size"), _triple(v["mean"]), _triple(v["std"]))
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{path}: unreadable dlkdd metadata ({err}): {REEXPORT}") from None

    def problem(self) -> str | None:
        """What makes this metadata unusable whatever the weights, or None: class names (non-empty, unique, no
        control or other non-printable characters: each is printed on one line and is a JSON key), num_frames and
        size within :data:`NUM_FRAMES_RANGE` / :data:`SIZE_RANGE`, mean in [0, 1] and std in :data:`STD_RANGE`."""
        if not self.classes:
            return "no class names"
        bad = next((c for c in self.classes if not c.strip() or not c.isprintable()), None)
        if bad is not None:
            return f"class name {bad!r} is empty or holds control characters (non-printable)"
        seen: set[str] = set()
        dup = next((c for c in self.classes if c in seen or seen.add(c)), None)  # type: ignore[func-returns-value]
        if dup is not None:
            return f"class name {dup!r} is listed twice"
        for name, value, (lo, hi) in (("num_frames", self.num_frames, NUM_FRAMES_RANGE),
                                      ("size", self.size, SIZE_RANGE)):
            if not lo <= value <= hi:
                return f"{name} {value} is outside {lo}..{hi}"
        if not all(math.isfinite(m) and 0.0 <= m <= 1.0 for m in self.mean):
            return f"mean {list(self.mean)} is not 3 numbers in [0, 1]"
        lo, hi = STD_RANGE
        if not all(math.isfinite(s) and lo <= s <= hi for s in self.std):
            return f"std {list(self.std)} is not 3 numbers in [1/255, 1]"
        return None

    def check(self, path: Path | str, fix: str) -> None:
        """ValueError (one line naming ``path``, ending with ``fix``) when :meth:`problem` finds one."""
        problem = self.problem()
        if problem:
            raise ValueError(f"{path}: model metadata does not fit ({problem}); {fix}")


def whole(v: Any, name: str) -> int:
    """``v`` as an int; ValueError for anything else (a float such as 4.7, a bool, a string): never rounded."""
    if isinstance(v, bool) or not isinstance(v, Integral):
        raise ValueError(f"{name} {v!r} is not a whole number")
    return int(v)


def class_list(v: Any) -> list[str]:
    """``v`` as a list of class names; ValueError unless it is a list of strings (a string is not split into
    characters, a dict not read for its keys)."""
    if not isinstance(v, (list, tuple)) or not all(isinstance(c, str) for c in v):
        raise ValueError(f"classes must be a list of strings, not {type(v).__name__}")
    return list(v)


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

    def __init__(self, info: ModelInfo, path: Path | str = "the model") -> None:
        self.info = info
        self.path = path

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
        """Probabilities (B, K); ValueError (one line) rather than a wrong answer when the model gives the wrong
        number of outputs or a NaN/inf (weights or metadata damaged in a way the load-time checks could not see)."""
        check_clips(clips, self.info)
        logits = self.logits(clips)
        want = (len(clips), len(self.classes))
        if logits.shape != want:
            raise ValueError(f"{self.path}: the model gave outputs {tuple(logits.shape)}, its metadata says {want} "
                             f"(B, classes); the file is damaged or was edited")
        probs = softmax(logits)
        if not np.isfinite(probs).all():
            raise ValueError(f"{self.path}: the model's output is not finite (NaN or inf); its weights or mean/std "
                             "are damaged")
        return probs

    def logits(self, clips: np.ndarray) -> np.ndarray:  # (B, T, H, W, 3) uint8 → (B, K) float32
        raise NotImplementedError


class TorchRunner(Runner):
    """A dlkdd checkpoint run by PyTorch on the training path (``to_float`` → model with its own normalisation)."""

    backend = "pytorch"

    def __init__(self, path: Path, device: str = "cpu") -> None:
        import torch

        from dlkdd.checkpoint import load_checkpoint, model_from_checkpoint
        from dlkdd.data.dataset import to_float
        from dlkdd.models.build import check_input

        ckpt = load_checkpoint(path)  # FileNotFoundError / ValueError with one line
        try:
            if not isinstance(ckpt, dict):
                raise TypeError(f"a {type(ckpt).__name__}, not a dict")
            arch, classes = str(ckpt["arch"]), class_list(ckpt["classes"])
            num_frames, size = whole(ckpt["num_frames"], "num_frames"), whole(ckpt["size"], "size")
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a dlkdd model checkpoint ({type(err).__name__}: {err}); pass "
                             "models/student.pt or an .onnx export") from None
        model = model_from_checkpoint(ckpt, path)  # ValueError with one line: unknown arch, weights that do not fit
        self.model = model.to(device)
        self.device = device
        self._torch = torch
        # imported here, not on the first batch: a Ctrl-C that lands inside an import leaves a half-initialised module
        # behind, and the windows already read could then not be predicted
        self._to_float = to_float
        mean = tuple(float(v) for v in model.mean.flatten())  # the statistics this checkpoint was trained with
        std = tuple(float(v) for v in model.std.flatten())
        info = ModelInfo(arch, classes, num_frames, size, mean, std)  # type: ignore[arg-type]
        info.check(path, "the checkpoint is damaged or was edited")
        try:
            check_input(arch, num_frames, size)
        except ValueError as err:
            raise ValueError(f"{path}: {err}; the checkpoint is damaged or was edited") from None
        super().__init__(info, path)

    def logits(self, clips: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).to(self.device)
        with torch.inference_mode():
            return self.model(self._to_float(x)).float().cpu().numpy()


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
        info.check(path, REEXPORT)
        self.input_name = self.session.get_inputs()[0].name
        super().__init__(info, path)
        check_graph(self)

    def logits(self, clips: np.ndarray) -> np.ndarray:
        x = normalize(clips, self.info.mean, self.info.std)
        return np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)


def check_graph(runner: OnnxRunner) -> None:
    """ValueError (one line) unless the graph takes what the metadata says and gives one output per class name.

    The export has fixed (3, T, size, size) input and K output dims and a dynamic batch: they are read from the
    graph; a dim the graph leaves open is checked by running one black clip (bounded by :data:`NUM_FRAMES_RANGE`)."""
    info, path = runner.info, runner.path
    inputs, outputs = runner.session.get_inputs(), runner.session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 5 or len(outputs) < 1 or len(outputs[0].shape) != 2:
        raise ValueError(f"{path}: the graph does not take one (B, 3, T, H, W) input to (B, K) logits; {REEXPORT}")
    want = (3, info.num_frames, info.size, info.size)
    fixed = [(d, w) for d, w in zip(inputs[0].shape[1:], want) if isinstance(d, int)]
    if any(d != w for d, w in fixed):
        raise ValueError(f"{path}: metadata says clips of {info.num_frames} frames x {info.size}x{info.size}, the "
                         f"graph takes {tuple(inputs[0].shape[1:])}; {REEXPORT}")
    k = outputs[0].shape[1]
    if not isinstance(k, int):
        try:
            k = runner.logits(np.zeros((1, *want[1:], 3), np.uint8)).shape[-1]
        except Exception as err:  # onnxruntime's own exception types: the graph cannot run on that input
            raise ValueError(f"{path}: the graph does not run on a clip its metadata describes "
                             f"({type(err).__name__}); {REEXPORT}") from None
    if k != len(info.classes):
        raise ValueError(f"{path}: metadata names {len(info.classes)} classes, the graph gives {k} outputs; "
                         f"{REEXPORT}")


def load_runner(path: str | Path, device: str = "cpu") -> Runner:
    """The runner for ``path``: ``.onnx`` → ONNX Runtime, anything else → a dlkdd checkpoint run by PyTorch.

    ``device`` applies to checkpoints (e.g. ``"cuda"``); ONNX Runtime picks CUDA when its GPU build is installed.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxRunner(path)
    return TorchRunner(path, device)

"""Typed schema for ``params.yaml``.

``params.yaml`` is the one source of parameters (DVC reads it for ``-S`` overrides and dependency tracking); this module
validates it against dataclasses with OmegaConf, so an unknown key or a wrong type fails with one line naming the key,
and ``-S kd.temperature=4`` arrives as the float ``4.0``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

ARID_CLASSES = ["Drink", "Jump", "Pick", "Pour", "Push", "Run", "Sit", "Stand", "Turn", "Walk", "Wave"]


ENHANCE_METHODS = ("gamma", "hist_eq", "clahe", "lime", "zerodce")
# models/build.py builds exactly these (tests/test_config.py checks the two lists agree)
ARCHS = ("tiny3d", "r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "swin3d_t")


class ConfigError(ValueError):
    """A params file that does not match the schema; the message is one line naming the key."""


# Field constructors carrying each value's allowed range or choices in the dataclass metadata; parse_params checks
# them after OmegaConf's type check, so a bad value fails once here instead of at (or never at) its use site.
# Every number has an upper bound (a typo of a few zeros must not write gigabytes or run for days; params.yaml says
# why each bound is where it is), and no float may be NaN or infinite (every comparison with NaN is False, so a NaN
# would pass any range and then decide nothing: see _field_error).
def between(default: float, low: float | None = None, high: float | None = None, low_open: bool = False) -> Any:
    """A number in [low, high] (either side open-ended when None; ``low_open``: low itself excluded)."""
    return field(default=default, metadata={"low": low, "high": high, "low_open": low_open})


def fraction(default: float) -> Any:
    """A share in [0, 1]."""
    return between(default, 0, 1)


def count(default: int, high: int) -> Any:
    """A count in [1, high]."""
    return between(default, 1, high)


def nonneg(default: float, high: float) -> Any:
    """A time, weight or count that may be 0: in [0, high]."""
    return between(default, 0, high)


def positive(default: float, high: float) -> Any:
    """A scale, rate or time that must be > 0: in (0, high]."""
    return between(default, 0, high, low_open=True)


def rng_seed(default: int = 0) -> Any:
    """A random seed: numpy's range."""
    return between(default, 0, 2**32 - 1)


def choice(*options: str) -> Any:
    """A string that must be one of ``options``; the first is the default."""
    return field(default=options[0], metadata={"choices": options})


def names(default: list[str], known: tuple[str, ...], min_len: int = 1) -> Any:
    """A list of distinct names, each one of ``known``, at least ``min_len`` of them."""
    return field(default_factory=lambda: list(default), metadata={"items": known, "min_len": min_len})


@dataclass
class GenerateConfig:
    """Synthetic dark footage (the embedded default dataset)."""

    seed: int = rng_seed(0)  # the data's seed, apart from the training seed so seed sweeps retrain on the same footage
    # the actions rendered (synthetic.action_pose draws exactly these); two at least: one class is no classifier
    classes: list[str] = names(ARID_CLASSES, tuple(ARID_CLASSES), min_len=2)
    train_per_class: int = count(30, 1000)
    val_per_class: int = count(8, 1000)
    test_per_class: int = count(10, 1000)
    # unlabelled pool: clips per class rendered like the others, listed in the manifest's ``unlabeled`` split with no
    # label (their true classes go to unlabeled_truth.csv, read only to score the teacher's pseudo-labels); 0 = none
    unlabeled_per_class: int = nonneg(0, 10000)
    num_frames: int = count(32, 128)  # frames per written video
    width: int = count(160, 640)
    height: int = count(120, 480)
    fps: float = positive(15.0, 240)
    container: str = choice("avi", "mp4")  # avi (MJPG) or mp4 (mp4v)
    luma_min: float = between(5.0, 0, 255)  # target mean luma range of a dark clip, 0..255
    luma_max: float = between(30.0, 0, 255)
    read_noise: float = nonneg(2.0, 255)  # sensor read noise, digital numbers
    gain: float = positive(0.8, 32)  # digital numbers per photo-electron: higher = noisier


@dataclass
class FramesConfig:
    num_frames: int = count(8, 128)  # frames sampled per clip (uniform segments)
    size: int = count(64, 512)  # frames are resized to size x size
    workers: int = count(1, 64)  # decoding processes (results keep the manifest order)
    clips_per_video: int = count(1, 64)  # clips cut from each val/test video for video-level evaluation
    # uniform (segment centres) | random (seeded random frame per segment)
    train_sampling: str = choice("uniform", "random")
    # 0 = segments over the whole video; > 0 = a window of num_frames this many frames apart
    stride: int = nonneg(0, 100)
    # quarantine files decoding fewer than this share of their reported frames
    min_decoded_fraction: float = fraction(0.9)
    # an isolated decoder with no decoded frame this long is stuck: quarantined
    decode_timeout_s: float = positive(120.0, 3600)


@dataclass
class DataConfig:
    """Where the frames stage reads footage: the embedded default, or an imported dataset (README)."""

    manifest: str = "data/raw/manifest.csv"  # manifest.csv written by `generate` or `dlkdd import-*`
    root: str = "data/raw"  # folder the manifest's paths are relative to


@dataclass
class ClaheConfig:
    clip_limit: float = positive(2.0, 100)  # contrast limit per tile histogram (OpenCV clipLimit)
    tile: int = count(8, 64)  # tile grid is tile x tile per frame


@dataclass
class LimeConfig:
    gamma: float = nonneg(0.8, 10)  # illumination map is raised to this power before dividing; < 1 keeps some darkness
    sigma: float = nonneg(2.0, 100)  # Gaussian smoothing of the max-RGB illumination map, in pixels
    # floor of the illumination map (0..1): caps the gain in pure-black regions
    eps: float = between(0.02, 0, 1, low_open=True)


@dataclass
class ZeroDCEConfig:
    """Training of Zero-DCE on the dataset's own dark train frames (zero-reference: no labels, no bright pairs)."""

    epochs: int = count(10, 1000)
    lr: float = positive(1e-3, 1)
    weight_decay: float = nonneg(1e-4, 1)
    batch_size: int = count(32, 1024)
    crop: int = count(32, 512)  # random square crop per training frame, pixels (the net is fully convolutional)
    frames_per_clip: int = count(2, 128)  # train frames drawn from each cached train clip
    exposure: float = fraction(0.6)  # target mean level E of 16x16 patches, 0..1
    w_spa: float = nonneg(1.0, 10000)  # spatial consistency
    w_exp: float = nonneg(10.0, 10000)  # exposure control
    w_col: float = nonneg(5.0, 10000)  # colour constancy
    w_tv: float = nonneg(200.0, 10000)  # illumination smoothness of the curve maps


@dataclass
class EnhanceConfig:
    # gamma | hist_eq | clahe | lime | zerodce (params.yaml ships clahe: see the KD study)
    method: str = choice(*ENHANCE_METHODS)
    gamma: float = positive(0.4, 10)  # out = in ** gamma on [0, 1]; < 1 brightens
    clahe: ClaheConfig = field(default_factory=ClaheConfig)
    lime: LimeConfig = field(default_factory=LimeConfig)
    zerodce: ZeroDCEConfig = field(default_factory=ZeroDCEConfig)


@dataclass
class ModelConfig:
    arch: str = choice(*ARCHS)  # tiny3d | r3d_18 | mc3_18 | r2plus1d_18 | s3d | swin3d_t | mvit_v1_b (16x224x224 only)
    dropout: float = fraction(0.3)
    pretrained: str = ""  # local state-dict file to start from ("" = random init); never downloaded
    # tiny3d only: first block's channels (params ~ width²: 12 ≈ 0.13M, 24 ≈ 0.53M, 48 ≈ 2.1M)
    width: int = count(24, 256)


@dataclass
class TrainConfig:
    epochs: int = count(30, 1000)
    batch_size: int = count(16, 1024)
    lr: float = positive(3e-3, 10)
    weight_decay: float = nonneg(1e-2, 1)
    label_smoothing: float = fraction(0.0)
    hflip: bool = True  # random horizontal flip, applied identically to the teacher's and student's view
    threads: int = count(2, 256)  # torch CPU threads; fixed so runs reproduce on this machine kind
    optimizer: str = choice("adamw", "sgd")  # adamw | sgd (momentum 0.9, nesterov)
    schedule: str = choice("onecycle", "cosine", "step")  # onecycle | cosine | step (cosine/step: linear warm-up first)
    warmup_epochs: float = nonneg(0.0, 1000)  # linear warm-up length for cosine/step
    step_size: int = count(10, 1000)  # step schedule: multiply lr by step_gamma every step_size epochs
    step_gamma: float = positive(0.1, 1)
    grad_clip: float = nonneg(0.0, 1_000_000)  # max gradient L2 norm; 0 = off
    # gradient accumulation steps (effective batch = batch_size * accumulate * world size)
    accumulate: int = count(1, 1024)
    amp: str = choice("bf16", "fp16", "off")  # CUDA autocast dtype: bf16 | fp16 (+GradScaler) | off; ignored on CPU
    channels_last: bool = True  # channels_last_3d memory format on CUDA
    compile: bool = False  # torch.compile the model
    patience: int = nonneg(0, 1000)  # early stopping: stop after this many epochs without a better val top-1; 0 = off
    deterministic: bool = True  # deterministic kernels (torch.use_deterministic_algorithms)
    num_workers: int = nonneg(0, 64)  # DataLoader worker processes (0 = in the main process; clips are in memory)
    resume_dir: str = ".dlkdd_resume"  # per-epoch checkpoints for resuming a killed run (outside DVC outs); "" = off


@dataclass
class KDConfig:
    temperature: float = positive(4.0, 100)
    alpha: float = fraction(0.5)  # weight of the KD term; 0 = plain cross-entropy
    # cached: read the teacher_logits stage's artifact | online: run the teacher
    teacher_logits: str = choice("cached", "online")
    # The levers of the KD study (issue 15); at their defaults the student trains exactly as before they existed.
    # enhanced: the teacher alone | dual_light: the two-stream model (teacher on enhanced + baseline on dark, softmax
    # at T averaged) as the soft target
    teacher: str = choice("enhanced", "dual_light")
    epochs: int = nonneg(0, 1000)  # the student's schedule length alone; 0 = train.epochs
    # function-matching mixup: Beta(a, a) concentration, the same λ and pairs for the student's and the teacher's views
    # (needs teacher_logits=online); 0 = off
    mixup: float = nonneg(0.0, 100)
    # weight of a FitNets hint: MSE between a learned linear map of the student's pooled last-block features and the
    # teacher's (needs teacher_logits=online); 0 = off
    hint: float = nonneg(0.0, 1000)
    # the unlabelled pool (data/pool: manifest split ``unlabeled``, landed footage without a label): its clips join the
    # student's training set with the KD term only, weighted this much against a labelled clip's KD term; an epoch
    # stays len(train split) clips drawn from labelled + pool, so kd.epochs is the same budget with or without a pool
    unlabeled_weight: float = nonneg(1.0, 100)
    use_pool: bool = True  # false: the student ignores the pool (the teacher, baseline and two-stream always do)


# kd keys added after checkpoints already recorded the kd section: left out of the record at their defaults (kd_record)
KD_LEVERS = ("teacher", "epochs", "mixup", "hint", "unlabeled_weight", "use_pool")


def kd_record(kd: KDConfig) -> dict[str, Any]:
    """The kd section as a checkpoint records it: each lever only when set away from its default.

    A default run's checkpoint then holds exactly the bytes it held before the levers existed (dvc.lock's md5 of
    models/student.pt stays), while a lever's run still says what it used.
    """
    record, default = to_dict(kd), to_dict(KDConfig())
    return {k: v for k, v in record.items() if k not in KD_LEVERS or v != default[k]}


def student_train(train: TrainConfig, kd: KDConfig) -> TrainConfig:
    """The student's train section: ``train`` with ``kd.epochs`` as its length when set (teacher/baseline keep
    theirs)."""
    return replace(train, epochs=kd.epochs) if kd.epochs > 0 else train


@dataclass
class EvaluateConfig:
    latency_clips: int = count(20, 1000)  # clips timed for the inference-cost figure


BRIGHTNESS_COLUMNS = ["luma_mean", "luma_p05", "luma_p50", "luma_p95", "dark_fraction"]
# the numeric columns of the per-clip statistics (data/clipstats.LumaStats.result; tests/test_config.py checks)
STATS_COLUMNS = ("frames", "fps", "height", "width", "duration_s", *BRIGHTNESS_COLUMNS, "noise")
# the quality gate's check names (quality/gate.CHECKS; tests/test_config.py checks the two agree)
QUALITY_CHECKS = ("row_count", "not_null", "luma_mean", "dark_fraction", "noise", "frames", "fps", "resolution",
                  "class_balance", "drift")


@dataclass
class ValidateConfig:
    """Data-quality gate on the per-clip statistics (src/dlkdd/quality); every bound of every check lives here."""

    # mean luma of every clip must lie in [min, max] of 255: dark, but not black
    luma_mean_min: float = between(2.0, 0, 255)
    luma_mean_max: float = between(45.0, 0, 255)
    dark_fraction_mean_min: float = fraction(0.2)  # batch mean of the share of pixels with luma < 16
    dark_fraction_mean_max: float = fraction(1.0)
    noise_min: float = nonneg(0.05, 255)  # sensor noise (luma DN) of every clip; a frozen or blank feed has none
    fps_min: float = nonneg(5.0, 1000)
    fps_max: float = nonneg(120.0, 1000)
    side_min: int = count(16, 16384)  # clip height and width in pixels
    side_max: int = count(4096, 16384)
    min_clips: int = count(1, 1_000_000)  # row count of the batch
    class_share_ratio_min: float = nonneg(0.5, 100)  # each class's share of the train split / (1 / num_classes)
    class_share_ratio_max: float = nonneg(2.0, 100)
    mostly: float = fraction(1.0)  # share of clips that must pass each per-clip check (GX `mostly`)
    drift_columns: list[str] = names(BRIGHTNESS_COLUMNS, STATS_COLUMNS)  # numeric columns of the clip statistics
    drift_method: str = "ks"  # Evidently stattest per column (ks, wasserstein, psi, ...)
    drift_threshold: float = nonneg(0.05, 100)  # the method's threshold (p-value for ks, distance for wasserstein)
    drift_share: float = fraction(0.5)  # the drift check fails when this share of drift_columns (or more) drifted
    worst: int = nonneg(5, 1000)  # worst offending clips named in the summary per failed check
    # check names downgraded to warnings (printed + recorded)
    warn_only: list[str] = names([], QUALITY_CHECKS, min_len=0)


@dataclass
class CIConfig:
    """The CI metric gate (.ci/metrics_gate.py); read by no stage, so changing it re-runs nothing."""

    model: str = choice("student", "teacher", "baseline", "two_stream")  # the predictions.csv column judged
    # fail when McNemar's exact one-sided p (new worse than committed, same clips) < alpha
    alpha: float = fraction(0.05)
    floor: float = fraction(0.5)  # ... or when the new top-1 falls below this, whatever the test says
    baseline_rev: str = "HEAD"  # the committed metrics/predictions to compare with


@dataclass
class RetrainConfig:
    """The retrain-on-landing flows (flows/): where footage lands, when to look, when a new student is promoted."""

    inbox: str = "inbox"  # folder polled for new clips: <inbox>/<Class>/*.mp4|avi (labelled) or <inbox>/*.mp4
    quarantine: str = "quarantine"  # rejected clips + <clip>.reason.txt
    poll_interval_s: int = count(300, 86400)  # how often the watch deployment looks at the inbox
    settle_s: float = nonneg(10.0, 86400)  # a clip must be unmodified this long (still being copied otherwise)
    metric: str = "student.top1"  # key in metrics/evaluate.json compared against production
    alpha: float = fraction(0.05)  # keep production when the candidate is significantly worse on the same test clips
    # ... or when its top-1 is below production - tolerance (< 0: it must beat production); top-1 differences are in
    # [-1, 1]
    tolerance: float = between(0.05, -1, 1)
    push_retries: int = nonneg(3, 100)  # `dvc push` attempts after the first
    push_retry_delay_s: float = nonneg(10.0, 3600)
    # a landing of unlabelled clips only retrains once this many wait untrained (landed since production's model was
    # trained); fewer land and wait for the next retrain. Labelled clips always retrain.
    min_unlabeled: int = count(20, 1_000_000)


@dataclass
class Params:
    seed: int = rng_seed(0)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    data: DataConfig = field(default_factory=DataConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    teacher: ModelConfig = field(default_factory=ModelConfig)
    student: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    ci: CIConfig = field(default_factory=CIConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)


def _one_line(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    msg = str(err).splitlines()[0]
    if "Key '" in msg and "not in" in msg:
        return f"unknown key '{key}' (not in the schema; check its spelling)"
    return f"bad value for '{key}': {msg}" if key else msg


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _list_error(key: str, value: list[Any], meta: Mapping[str, Any]) -> str | None:
    """Why the list ``value`` breaks ``meta``'s rule (distinct names of ``items``, at least ``min_len``), or None."""
    known, min_len = meta["items"], meta["min_len"]
    if len(value) < min_len:
        return f"{key}={value!r} needs at least {min_len} name(s) from: {', '.join(known)}"
    unknown = [v for v in value if v not in known]
    if unknown:
        return f"{key}: unknown name(s) {unknown}: must be among {', '.join(known)}"
    twice = sorted({v for v in value if value.count(v) > 1})
    if twice:
        return f"{key}: {twice} listed more than once"
    return None


def _number_error(key: str, value: float, meta: Mapping[str, Any]) -> str | None:
    """Why the number ``value`` breaks the range in ``meta`` (or is NaN/infinite), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{key}={value!r} is not a finite number"
    low, high, low_open = meta.get("low"), meta.get("high"), meta.get("low_open", False)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if not (too_low or too_high):
        return None
    if low is not None and high is not None:
        rule = f"in {'(' if low_open else '['}{_num(low)}, {_num(high)}]"
    elif low is not None:
        rule = f"{'>' if low_open else '>='} {_num(low)}"
    else:
        rule = f"<= {_num(high)}"
    return f"{key}={value!r} is out of range: must be {rule}"


def _field_error(key: str, value: Any, meta: Mapping[str, Any]) -> str | None:
    """Why ``value`` breaks the range, choices or list rule in ``meta`` (one line naming ``key``), or None.

    Every float is checked to be finite, with or without a range: NaN compares False with everything, so it would
    pass any bound and then silently decide nothing (a NaN alpha never finds a regression significant)."""
    if "choices" in meta:
        if value not in meta["choices"]:
            return f"{key}={value!r} is not a valid choice: must be one of {', '.join(meta['choices'])}"
        return None
    if "items" in meta:
        return _list_error(key, list(value), meta)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number_error(key, value, meta)
    return None


# (lower key, upper key) pairs that must be ordered, within their section
ORDERED = [("luma_min", "luma_max"), ("luma_mean_min", "luma_mean_max"),
           ("dark_fraction_mean_min", "dark_fraction_mean_max"), ("fps_min", "fps_max"), ("side_min", "side_max"),
           ("class_share_ratio_min", "class_share_ratio_max")]


def check_ranges(obj: Any, prefix: str = "") -> str | None:
    """The first range/choice violation in a (nested) config dataclass as one line, or None if all hold."""
    for f in fields(obj):
        key, value = f"{prefix}{f.name}", getattr(obj, f.name)
        if is_dataclass(value):
            err = check_ranges(value, f"{key}.")
        else:
            err = _field_error(key, value, f.metadata)
        if err:
            return err
    for lo, hi in ORDERED:
        if hasattr(obj, lo) and getattr(obj, lo) > getattr(obj, hi):
            return f"{prefix}{lo}={getattr(obj, lo)!r} is out of range: must be <= {prefix}{hi}={getattr(obj, hi)!r}"
    return None


def parse_params(raw: dict[str, Any] | None, source: str = "params") -> Params:
    """Validate a plain dict against :class:`Params` (keys, types, ranges, choices); raise :class:`ConfigError`."""
    schema = OmegaConf.structured(Params)
    try:
        merged = OmegaConf.merge(schema, OmegaConf.create(raw or {}))
        params = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{source}: {_one_line(err)}") from None
    assert isinstance(params, Params)
    err = check_ranges(params)
    if err:
        raise ConfigError(f"{source}: {err}")
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the repository root)")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as err:  # YAML syntax errors come in many types
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    return parse_params(raw, str(path))  # type: ignore[arg-type]


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass section as a plain dict (for checkpoints and reports)."""
    return OmegaConf.to_container(OmegaConf.structured(obj))  # type: ignore[return-value]

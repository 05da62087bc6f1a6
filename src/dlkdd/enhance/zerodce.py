"""Zero-DCE (Guo et al., CVPR 2020): a 79k-parameter net predicts per-pixel curves that brighten a dark image.

The net (DCE-Net) maps an image (B, 3, H, W) in [0, 1] to 8 curve maps A_n (B, 3, H, W) in [-1, 1]; the image is
enhanced by 8 iterations of the light-enhancement curve LE(x) = x + A_n * x * (1 - x), which keeps [0, 1] in [0, 1]
and is monotone in x. It is trained without references (no bright/dark pairs, no labels) by four losses:
spatial consistency, exposure control towards a level E, colour constancy and illumination smoothness of the maps.
Here it is trained from scratch on the dataset's own dark train frames; nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dlkdd.atomic import write_bytes_atomic
from dlkdd.config import ZeroDCEConfig
from dlkdd.torch_file import load_weights_only

ITERATIONS = 8


class DCENet(nn.Module):
    """7 conv layers of 32 channels with symmetric skip concatenations; (B, 3, H, W) → (B, 24, H, W) in [-1, 1]."""

    def __init__(self, width: int = 32, iterations: int = ITERATIONS) -> None:
        super().__init__()
        w = width
        self.iterations = iterations
        self.c1 = nn.Conv2d(3, w, 3, padding=1)
        self.c2 = nn.Conv2d(w, w, 3, padding=1)
        self.c3 = nn.Conv2d(w, w, 3, padding=1)
        self.c4 = nn.Conv2d(w, w, 3, padding=1)
        self.c5 = nn.Conv2d(2 * w, w, 3, padding=1)
        self.c6 = nn.Conv2d(2 * w, w, 3, padding=1)
        self.c7 = nn.Conv2d(2 * w, 3 * iterations, 3, padding=1)

    def curves(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] → curve parameters (B, 3 * iterations, H, W) in [-1, 1]."""
        x1 = F.relu(self.c1(x))
        x2 = F.relu(self.c2(x1))
        x3 = F.relu(self.c3(x2))
        x4 = F.relu(self.c4(x3))
        x5 = F.relu(self.c5(torch.cat([x3, x4], 1)))
        x6 = F.relu(self.c6(torch.cat([x2, x5], 1)))
        return torch.tanh(self.c7(torch.cat([x1, x6], 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] → (enhanced (B, 3, H, W) in [0, 1], curve maps (B, 3 * iterations, H, W))."""
        maps = self.curves(x)
        return apply_curves(x, maps), maps


def apply_curves(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Iterate LE(x) = x + a * x * (1 - x) with a = each 3-channel slice of ``maps`` (B, 3n, H, W) in [-1, 1]."""
    for a in torch.split(maps, 3, dim=1):
        x = x + a * x * (1 - x)
    return x


# ---- zero-reference losses; all take images (B, 3, H, W) in [0, 1] ----

def spatial_consistency_loss(enhanced: torch.Tensor, original: torch.Tensor, region: int = 4) -> torch.Tensor:
    """Keep the differences between neighbouring 4x4 regions (left, right, up, down) of the mean image."""
    def diffs(img: torch.Tensor) -> list[torch.Tensor]:
        y = F.avg_pool2d(img.mean(1, keepdim=True), region)  # (B, 1, H/4, W/4)
        p = F.pad(y, (1, 1, 1, 1), mode="replicate")
        c = p[..., 1:-1, 1:-1]
        return [c - p[..., 1:-1, :-2], c - p[..., 1:-1, 2:], c - p[..., :-2, 1:-1], c - p[..., 2:, 1:-1]]

    return sum(((de.abs() - do.abs()) ** 2).mean() for de, do in zip(diffs(enhanced), diffs(original))) / 4


def exposure_loss(enhanced: torch.Tensor, level: float = 0.6, patch: int = 16) -> torch.Tensor:
    """Mean distance |Y_k - E| of the mean level of each non-overlapping 16x16 patch to the target E."""
    y = F.avg_pool2d(enhanced.mean(1, keepdim=True), patch)
    return (y - level).abs().mean()


def colour_constancy_loss(enhanced: torch.Tensor) -> torch.Tensor:
    """Grey-world: the channel means of each image should agree; sum over pairs (R,G), (R,B), (G,B) of squared gaps."""
    m = enhanced.mean(dim=(2, 3))  # (B, 3)
    r, g, b = m[:, 0], m[:, 1], m[:, 2]
    return ((r - g) ** 2 + (r - b) ** 2 + (g - b) ** 2).mean()


def illumination_smoothness_loss(maps: torch.Tensor) -> torch.Tensor:
    """Total variation of the curve maps (B, 3n, H, W): squared horizontal + vertical gradients, averaged."""
    dh = (maps[..., 1:, :] - maps[..., :-1, :]) ** 2
    dw = (maps[..., :, 1:] - maps[..., :, :-1]) ** 2
    return dh.mean() + dw.mean()


def zero_reference_loss(original: torch.Tensor, enhanced: torch.Tensor, maps: torch.Tensor,
                        w: ZeroDCEConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum of the four losses, and each term as a float for logging; the weights and the exposure
    target are ``enhance.zerodce``'s (one schema, one set of defaults)."""
    terms = {"spa": spatial_consistency_loss(enhanced, original), "exp": exposure_loss(enhanced, w.exposure),
             "col": colour_constancy_loss(enhanced), "tv": illumination_smoothness_loss(maps)}
    total = w.w_spa * terms["spa"] + w.w_exp * terms["exp"] + w.w_col * terms["col"] + w.w_tv * terms["tv"]
    return total, {k: float(v.detach()) for k, v in terms.items()}


# ---- training and application ----

def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def train_zerodce(frames: np.ndarray, epochs: int, lr: float, batch_size: int, crop: int, weights: ZeroDCEConfig,
                  seed: int = 0, weight_decay: float = 0.0, device: str = "cpu",
                  model: DCENet | None = None) -> tuple[DCENet, list[dict[str, float]]]:
    """Train DCE-Net on dark frames (N, H, W, 3) uint8 with random crops and flips; returns the net and per-epoch
    mean losses. Deterministic for a given seed on one device."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"zerodce training needs frames (N, H, W, 3) with N > 0, got {frames.shape}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = (model or DCENet()).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    data = to_tensor(frames)  # (N, 3, H, W)
    n, _, h, w = data.shape
    crop = min(crop, h, w)
    history = []
    for epoch in tqdm(range(epochs), desc="train_zerodce", unit="epoch"):
        net.train()
        order = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            ys = torch.randint(0, h - crop + 1, (1,), generator=gen).item()  # one crop position per batch
            xs = torch.randint(0, w - crop + 1, (1,), generator=gen).item()
            x = data[idx, :, ys:ys + crop, xs:xs + crop]
            if torch.rand(1, generator=gen).item() < 0.5:
                x = x.flip(-1)
            x = x.to(device)
            enhanced, maps = net(x)
            loss, terms = zero_reference_loss(x, enhanced, maps, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # the original recipe clips gradients at 0.1: the tanh curves saturate easily otherwise
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.1)
            opt.step()
            for k, v in {"loss": float(loss.detach()), **terms}.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
        history.append({"epoch": epoch, **{k: v / n for k, v in sums.items()}})
    net.eval()
    return net, history


@torch.no_grad()
def zerodce_enhance(frames: np.ndarray, model: DCENet, batch_size: int = 64) -> np.ndarray:
    """Enhance uint8 (T, H, W, 3) RGB with a trained DCE-Net; same shape/dtype out. Runs on the model's device."""
    device = next(model.parameters()).device
    model.eval()
    out = np.empty_like(frames)
    for i in range(0, len(frames), batch_size):
        x = to_tensor(frames[i:i + batch_size]).to(device)
        y, _ = model(x)
        out[i:i + batch_size] = (y.clamp_(0, 1) * 255).round_().byte().permute(0, 2, 3, 1).cpu().numpy()
    return out


def save_zerodce(path, model: DCENet | None, **meta) -> None:
    """Write weights (or, with ``model=None``, a fixed 'unused' marker) atomically with ``torch.save``."""
    import io
    from pathlib import Path

    path = Path(path)
    payload = {"arch": "dcenet", "iterations": ITERATIONS, "state_dict": None if model is None else
               {k: v.detach().cpu() for k, v in model.state_dict().items()}, **meta}
    buf = io.BytesIO()  # not torch.save(path): the zip records the file name, and the marker's hash must not vary
    torch.save(payload, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_zerodce(path, device: str = "cpu") -> DCENet:
    """Load weights written by :func:`save_zerodce`; a one-line ValueError when the file holds no trained net."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: not found (run `dvc repro train_zerodce` with enhance.method=zerodce)")
    ckpt = load_weights_only(path, "Zero-DCE checkpoint")  # on the CPU; the net moves to ``device`` below
    if not isinstance(ckpt, dict) or ckpt.get("arch") != "dcenet":
        raise ValueError(f"{path}: not a Zero-DCE checkpoint")
    if ckpt["state_dict"] is None:
        raise ValueError(f"{path}: holds no trained Zero-DCE (trained only when enhance.method=zerodce; "
                         f"run `dvc repro` with that method)")
    net = DCENet(iterations=int(ckpt["iterations"]))
    net.load_state_dict(ckpt["state_dict"])
    return net.to(device).eval()

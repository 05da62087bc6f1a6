"""Every backbone by name: builds, runs forward/backward on a tiny clip; local pretrained weights are checked."""
import pytest
import torch

from dlkdd.models.build import build_model, check_input, load_pretrained

# (arch, smallest cheap legal clip (T, size)); big transformers get a forward+backward on a tiny legal clip too
CASES = [("tiny3d", 4, 32), ("r3d_18", 2, 16), ("mc3_18", 2, 16), ("r2plus1d_18", 2, 16), ("s3d", 8, 32),
         ("swin3d_t", 2, 32)]


@pytest.mark.parametrize("arch,t,size", CASES)
def test_backbone_forward_backward_on_tiny_clip(arch, t, size):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=3).train()
    check_input(arch, t, size)
    x = torch.rand(2, 3, t, size, size)  # batch 2: BatchNorm needs > 1 value per channel
    out = model(x)
    assert out.shape == (2, 3)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_s3d_works_at_112_not_only_224():
    """torchvision's S3D pools with a fixed (2, 7, 7) kernel, which fails below 224x224; ours is adaptive."""
    model = build_model("s3d", 5).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 8, 112, 112)).shape == (1, 5)


def test_mvit_needs_16x224_and_says_so():
    with pytest.raises(ValueError, match=r"s3d' needs frames.num_frames >= 8"):
        check_input("s3d", 4, 112)
    with pytest.raises(ValueError, match=r"exactly 16 frames x 224x224"):
        check_input("mvit_v1_b", 8, 112)
    check_input("mvit_v1_b", 16, 224)
    # a forward at its only legal size takes ~6 s on 2 CPU cores: build + head shape is checked instead
    model = build_model("mvit_v1_b", 4)
    assert model.backbone.head[-1].out_features == 4


def test_pretrained_from_local_backbone_state_dict_replaces_the_head(tmp_path):
    from torchvision.models.video import r3d_18

    src = r3d_18(weights=None, num_classes=400)  # a "Kinetics" checkpoint: bare backbone, 400-way head
    torch.save(src.state_dict(), tmp_path / "k400.pth")
    model = build_model("r3d_18", 3, pretrained=tmp_path / "k400.pth")
    assert torch.equal(model.backbone.layer1[0].conv1[0].weight, src.layer1[0].conv1[0].weight)
    assert model.backbone.fc[-1].out_features == 3


def test_pretrained_mismatch_is_one_line_error(tmp_path):
    torch.save(build_model("tiny3d", 3).state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="missing .* unexpected keys") as err:
        build_model("r3d_18", 3, pretrained=tmp_path / "tiny.pt")
    assert "\n" not in str(err.value)
    wide = build_model("tiny3d", 3).state_dict()
    wide["backbone.features.0.0.weight"] = torch.zeros(7, 3, 1, 3, 3)
    torch.save(wide, tmp_path / "wide.pt")
    with pytest.raises(ValueError, match="shape mismatch"):
        load_pretrained(build_model("tiny3d", 3), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match="no such file"):
        build_model("tiny3d", 3, pretrained=tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        build_model("tiny3d", 3, pretrained=tmp_path / "junk.pt")

"""One loader reads every torch file: weights only, onto the CPU, one ValueError line naming the file and its kind."""
import pytest
import torch

from dlkdd.torch_file import load_weights_only
from dlkdd.checkpoint import load_checkpoint, load_training_state
from dlkdd.distill.logit_cache import load_teacher_logits
from dlkdd.enhance.zerodce import load_zerodce
from dlkdd.models.build import build_model, load_pretrained


def test_reads_tensors_onto_the_cpu(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "w.pt")
    got = load_weights_only(tmp_path / "w.pt", "weights")
    assert got["w"].device.type == "cpu" and torch.equal(got["w"], torch.ones(2))


class Payload:  # any class: unpickling it would run its module's code, which weights_only refuses
    pass


def test_refuses_pickled_objects(tmp_path):
    torch.save(Payload(), tmp_path / "obj.pt")
    with pytest.raises(ValueError, match=r"obj\.pt: not a readable thing \(UnpicklingError\)$"):
        load_weights_only(tmp_path / "obj.pt", "thing")


@pytest.mark.parametrize("load, kind", [
    (load_checkpoint, "dlkdd checkpoint"),
    (lambda p: load_teacher_logits(p, ["a"]), "teacher-logit cache"),
    (lambda p: load_pretrained(build_model("tiny3d", 3, width=8), p), "pretrained state dict"),
    (load_zerodce, "Zero-DCE checkpoint"),
])
def test_each_reader_names_its_kind_on_a_torn_file(tmp_path, load, kind):
    torch.save({"w": torch.ones(100)}, tmp_path / "x.pt")
    data = (tmp_path / "x.pt").read_bytes()
    (tmp_path / "x.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as err:
        load(tmp_path / "x.pt")
    assert f"not a readable {kind}" in str(err.value) and "\n" not in str(err.value)


def test_a_torn_training_state_means_start_fresh(tmp_path):
    (tmp_path / "s.pt").write_bytes(b"torn")
    assert load_training_state(tmp_path / "s.pt") is None


def test_a_checkpoint_whose_weights_do_not_fit_is_one_line_naming_the_key(tmp_path):
    """Training and inference rebuild a checkpoint's model in one place: a mismatch is one ValueError line, not a
    torch traceback, whichever of them loads it."""
    from dlkdd.checkpoint import load_model, save_model

    save_model(tmp_path / "m.pt", build_model("tiny3d", 3, width=8), "tiny3d", ["a", "b", "c"], 4, 32, width=16)
    with pytest.raises(ValueError) as err:
        load_model(tmp_path / "m.pt")
    assert "m.pt: weights do not fit arch 'tiny3d' with 3 classes" in str(err.value) and "\n" not in str(err.value)
    save_model(tmp_path / "ok.pt", build_model("tiny3d", 3, width=8), "tiny3d", ["a", "b", "c"], 4, 32, width=8)
    model, ckpt = load_model(tmp_path / "ok.pt")
    assert not model.training and ckpt["classes"] == ["a", "b", "c"]


def test_inference_does_not_import_the_training_package():
    """The checkpoint module sits below both: infer/ reaches it without importing dlkdd.distill."""
    import ast
    from pathlib import Path

    infer = Path(__file__).parents[1] / "src" / "dlkdd" / "infer"
    for f in infer.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("dlkdd.distill"), f"{f.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("dlkdd.distill") for a in node.names), f.name

import numpy as np

from fetalhc.inference.segmenter import Segmenter
from fetalhc.io.images import read_gray
from fetalhc.model.export import export_onnx
from tests.conftest import run_cli


def test_export_checked_against_pytorch(tiny_run, tmp_path, sample):
    images = [read_gray(p) for p in sorted((sample / "training_set").glob("*HC.png"))[:3]]
    diff = export_onnx(tiny_run / "best.safetensors", tmp_path / "m.onnx", check_images=images)
    assert diff is not None and diff < 1e-3
    import onnx

    model = onnx.load(str(tmp_path / "m.onnx"))
    assert model.opset_import[0].version >= 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch


def test_backends_agree(tiny_run, sample):
    images = [read_gray(p) for p in sorted((sample / "test_set").glob("*.png"))]
    torch_probs = Segmenter(tiny_run / "best.safetensors", backend="torch").probabilities(images)
    onnx_probs = Segmenter(
        tiny_run / "best.safetensors", backend="onnx", batch_size=3
    ).probabilities(images)
    for a, b, im in zip(torch_probs, onnx_probs, images, strict=True):
        assert a.shape == im.shape
        assert np.abs(a - b).max() < 1e-3


def test_export_cli_with_int8(tiny_run, tmp_path, sample):
    r = run_cli("export", "--run", tiny_run, "--onnx", tmp_path / "x.onnx", "--int8")
    assert r.returncode == 0, r.stderr
    assert "largest |logit| difference" in r.stdout
    assert (tmp_path / "x.onnx").stat().st_size > 1_000_000
    int8 = tmp_path / "x_int8.onnx"
    assert 0 < int8.stat().st_size < 0.5 * (tmp_path / "x.onnx").stat().st_size
    # the .onnx files are self-contained: predict needs no config.json beside them
    for model in (tmp_path / "x.onnx", int8):
        out = tmp_path / model.stem
        r = run_cli(
            "predict",
            sample / "test_set",
            "--pixel-size",
            "0.1",
            "--checkpoint",
            model,
            "--out",
            out,
        )
        assert r.returncode in (0, 1), r.stderr  # an untrained model may find no head
        assert len((out / "predictions.csv").read_text().splitlines()) == 5


def test_an_exported_model_locates_at_its_graph_size(tmp_path, sample):
    """A two-pass model whose config asks for both passes at 192: its exported graph has
    one input size (256), so that graph's passes run at 256 instead of failing on every
    image, and measure what the checkpoint measures with both passes at 256."""
    import json
    import shutil

    import pytest

    from fetalhc.inference.measurer import HeadMeasurer
    from fetalhc.inference.segmenter import DEFAULT_MODEL

    checkpoint = tmp_path / "model.safetensors"
    shutil.copy(DEFAULT_MODEL, checkpoint)
    config = json.loads((DEFAULT_MODEL.parent / "config.json").read_text())
    config["model"].update(locate_side=192, crop_side=192)
    (tmp_path / "config.json").write_text(json.dumps(config))
    export_onnx(checkpoint, tmp_path / "m.onnx", verify=False)
    graph = Segmenter(tmp_path / "m.onnx")
    assert Segmenter(checkpoint, backend="torch").locate_side == 192
    assert graph.locate_side == graph.crop_side == graph.size[0] == 256
    from fetalhc.errors import FetalHCError

    for other in ({"locate_side": 192}, {"crop_side": 224}):  # at load, not per image
        with pytest.raises(FetalHCError, match="exported for 256x256, not"):
            Segmenter(tmp_path / "m.onnx", **other)
    for bad in (-0.1, 1.5, float("nan"), "0.3"):
        with pytest.raises(FetalHCError, match="relocate_below"):
            Segmenter(checkpoint, backend="torch", relocate_below=bad)
    images = sorted((sample / "test_set").glob("*.png"))[:2]
    got = list(HeadMeasurer.from_segmenter(graph).measure_many(images, 0.1))
    at_256 = Segmenter(checkpoint, backend="onnx", locate_side=256, crop_side=256)
    want = list(HeadMeasurer.from_segmenter(at_256).measure_many(images, 0.1))
    for a, b in zip(got, want, strict=True):
        assert a.ok and b.ok
        assert a.hc_mm == pytest.approx(b.hc_mm, abs=0.01)

"""Every user mistake is one line naming what to fix; a bug keeps its traceback (issue 28)."""

from __future__ import annotations

import pytest

from ssformer.cli.main import main
from ssformer.errors import UserError


def run_cli(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The error output, which must be one line and no traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- 16: user errors have their own type; a plain ValueError is a bug and shows as one ------------
def test_a_plain_value_error_inside_a_command_is_not_hidden(monkeypatch):
    import ssformer.cli.info as info

    def broken(args):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(info, "run", broken)
    with pytest.raises(ValueError, match="internal invariant"):
        main(["info", "ssformer_swin_t"])


def test_a_user_error_inside_a_command_is_one_line(monkeypatch, capsys):
    import ssformer.cli.info as info

    def refuse(args):
        raise UserError("model.embed_dim must be positive")

    monkeypatch.setattr(info, "run", refuse)
    code, _, err = run_cli(capsys, "info", "ssformer_swin_t")
    assert code == 2
    assert one_line(err) == "ssformer info: error: model.embed_dim must be positive"


def test_the_package_error_types_are_user_errors():
    from ssformer.checkpoints.io import CheckpointError
    from ssformer.data.io import DataError
    from ssformer.engine.checkpoint import CorruptCheckpoint
    from ssformer.inference.export import ExportError
    from ssformer.inference.images import ImageError
    from ssformer.inference.quantize import AccuracyError

    for kind in (CheckpointError, DataError, CorruptCheckpoint, ExportError, ImageError, AccuracyError):
        assert issubclass(kind, UserError), kind


def test_config_and_argument_mistakes_raise_user_errors():
    from ssformer.data.transforms import TrainTransform
    from ssformer.engine.config import load_config
    from ssformer.models.ssformer import SSformerConfig

    with pytest.raises(UserError, match="unknown config key"):
        load_config("camvid_cpu", ["train.no_such_key=1"])
    with pytest.raises(UserError, match="window_size"):
        SSformerConfig(num_classes=2, window_size=0)
    with pytest.raises(UserError, match="img_scale"):
        TrainTransform(img_scale=(0, 4), crop_size=(2, 2))


def test_permission_denied_is_one_line_naming_the_file(monkeypatch, capsys, tmp_path):
    import ssformer.cli.info as info

    def denied(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out.png"))

    monkeypatch.setattr(info, "run", denied)
    code, _, err = run_cli(capsys, "info", "ssformer_swin_t")
    assert code == 2 and str(tmp_path / "out.png") in one_line(err) and "Permission denied" in err

"""Progress output (issue 15): a redrawing bar only on a terminal; piped, a few plain lines."""

from convlens.pipelines import train_run
from convlens.train import TrainConfig


def test_piped_progress_is_plain_lines(tmp_path, capfd):
    cfg = TrainConfig(epochs=3, ood=["noise"], ood_size=4, snapshots=False, probes=False)
    train_run(cfg, tmp_path / "run", progress=True)
    err = capfd.readouterr().err
    assert "\r" not in err and "\x1b" not in err  # no bar redraws, no cursor codes
    lines = [line for line in err.splitlines() if line.startswith("train faces: epoch")]
    assert [line.split(",")[0] for line in lines] == [
        f"train faces: epoch {e}/3" for e in (1, 2, 3)
    ]
    assert len(err) < 2000

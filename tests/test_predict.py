"""``video-gn predict`` end to end: a tiny model trained one step on generated MP4s, then predicted (CPU).

The fit -> validate -> predict round trip on one run is in test_cli.py (test_fit_validate_predict_end_to_end).
"""

import json
from pathlib import Path

import pytest
import torch
from test_cli import _quick  # the tiny-data fit arguments test_cli.py builds every run from

from video_gn.cli import main, run_lightning_cli

REPO = Path(__file__).resolve().parent.parent


def test_predict_skips_unreadable_file(tiny_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", *_quick(tiny_root, run, "--trainer.limit_train_batches=1")]) == 0
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    good = next((tiny_root / "val").rglob("*.mp4"))
    capsys.readouterr()
    with pytest.warns(UserWarning, match="broken.mp4"):
        rc = main(
            ["predict", str(good), str(bad), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--json"]
        )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["predictions"]) == 1 and out["failed"][0]["path"].endswith("broken.mp4")


def test_predict_skips_files_that_are_not_videos_and_shows_progress_on_stderr(
    tiny_root, tiny_ckpt, tmp_path, capsys
):
    # FFmpeg's tty demuxer "decodes" a text file as a video: a .txt given by name was classified like a video.
    notes = tmp_path / "notes.txt"
    notes.write_text("training notes\n" * 200)
    good = next((tiny_root / "val").rglob("*.mp4"))
    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"Skipping .*notes\.txt: not a video file type \(\.txt") as record:
        rc = main(["predict", str(good), str(notes), "--ckpt_path", str(tiny_ckpt), "--json"])
    assert rc == 0
    # the warning points at predict's code, not into torch's inference_mode wrapper
    assert {Path(w.filename).name for w in record} == {"predict.py"}
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert [p["path"] for p in out["predictions"]] == [str(good)]
    assert [f["path"] for f in out["failed"]] == [str(notes)]
    # progress goes to stderr (stdout holds only the results), also when stderr is not a terminal
    assert captured.out.startswith("{")
    assert "predict (videos): 2/2 (100%)" in captured.err


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_root, tmp_path_factory) -> Path:
    """last.ckpt of a 4-class model trained one step on the tiny data (views: 4 frames x 2, side 40, crop 32)."""
    run = tmp_path_factory.mktemp("predict_run")
    run_lightning_cli(["fit", *_quick(tiny_root, run, "--trainer.limit_train_batches=1")])
    return run / "checkpoints" / "last.ckpt"


def _spy_views(monkeypatch) -> list[dict]:
    """Record the view settings predict decodes each video with."""
    import video_gn.data

    calls: list[dict] = []
    real = video_gn.data.load_video_views

    def spy(path, **kw):
        calls.append(kw)
        return real(path, **kw)

    monkeypatch.setattr(video_gn.data, "load_video_views", spy)
    return calls


def test_predict_view_settings_flags_over_config_over_checkpoint(
    tiny_root, tiny_ckpt, tmp_path, monkeypatch, capsys
):
    video = str(next((tiny_root / "val").rglob("*.mp4")))
    # An experiment config that includes quickstart.yaml (test_short_side 32, sampling_rate 2) and overrides some.
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"config: {REPO / 'configs' / 'quickstart.yaml'}\ndata:\n  num_frames: 6\n  num_clips: 3\n  crop_size: 28\n"
    )
    calls = _spy_views(monkeypatch)
    flags = ["--num_clips=1", "--mean", "0.5", "0.4", "0.3"]
    data_flags = ["--data.num_clips", "1", "--data.mean", "0.5", "0.4", "0.3"]  # fit's spelling works too
    for extra in ([], ["-c", str(exp)], ["-c", str(exp), *flags], ["-c", str(exp), *data_flags]):
        capsys.readouterr()
        assert main(["predict", video, "--ckpt_path", str(tiny_ckpt), "--json", *extra]) == 0
        assert len(json.loads(capsys.readouterr().out)["predictions"]) == 1
    pick = ("num_frames", "sampling_rate", "short_side", "crop_size", "num_clips", "num_crops", "mean")
    as_trained, from_config, with_flags, with_data_flags = [tuple(c[k] for k in pick) for c in calls]
    assert as_trained == (4, 2, 40, 32, 2, 1, (0.45, 0.45, 0.45))  # the checkpoint's (_tiny_overrides)
    assert from_config == (6, 2, 32, 28, 3, 1, (0.45, 0.45, 0.45))  # exp.yaml, side 32 from its include
    assert with_flags == with_data_flags == (6, 2, 32, 28, 1, 1, (0.5, 0.4, 0.3))


@pytest.mark.parametrize("what", ["video", "ckpt", "config"])
def test_predict_missing_path_is_a_one_line_error(what, tiny_root, tiny_ckpt, tmp_path, capsys):
    video, ckpt, cfg = str(next((tiny_root / "val").rglob("*.mp4"))), str(tiny_ckpt), None
    missing = str(tmp_path / f"no_such_{what}")
    if what == "video":
        video = missing
    elif what == "ckpt":
        ckpt = missing
    else:
        cfg = missing
    rc = main(["predict", video, "--ckpt_path", ckpt, *(["-c", cfg] if cfg else [])])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("video-gn predict: error:") and missing in err and "\n" not in err


@pytest.mark.parametrize(
    ("flag", "message"),
    [(["--num_clips", "0"], "num_clips must be an integer >= 1, got 0 (from --num_clips)"),
     (["--sampling_rate", "0"], "sampling_rate must be an integer >= 1, got 0 (from --sampling_rate)"),
     (["--std", "0.2", "0", "0.2"], "std must be positive")],
)  # fmt: skip
def test_predict_refuses_unusable_view_settings_at_start(flag, message, tiny_root, tiny_ckpt, capsys):
    video = str(next((tiny_root / "val").rglob("*.mp4")))
    assert main(["predict", video, "--ckpt_path", str(tiny_ckpt), *flag]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("video-gn predict: error:") and message in err and "\n" not in err


def test_predict_table_shows_top_k_up_to_the_number_of_classes(tiny_root, tiny_ckpt, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")  # rich: one header line per column
    video = str(next((tiny_root / "val").rglob("*.mp4")))
    assert main(["predict", video, "--ckpt_path", str(tiny_ckpt)]) == 0  # default --top_k 5, 4 classes
    header = next(
        line for line in capsys.readouterr().out.splitlines() if "video" in line and "top-1" in line
    )
    assert [c.strip() for c in header.strip("┃│ ").split("┃")][1:] == ["top-1", "top-2", "top-3", "top-4"]


def test_predict_on_class_folders_reports_top1_against_the_folder_names(tiny_root, tiny_ckpt, capsys):
    val = tiny_root / "val"
    assert main(["predict", str(val), "--ckpt_path", str(tiny_ckpt), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["predictions"]
    hits = sum(r["top"][0][0] == Path(r["path"]).parent.name for r in results)
    assert main(["predict", str(val), "--ckpt_path", str(tiny_ckpt)]) == 0
    out = capsys.readouterr().out
    assert f"top-1 against the folder names: {hits}/{len(results)} " in out
    # A path per row even when the output is not a terminal (no folding over several lines).
    assert sum(str(val) in line for line in out.splitlines()) == len(results)


def test_predict_averages_the_softmax_over_every_clip_and_crop(tiny_root, tiny_ckpt, tmp_path, capsys):
    # The expectation is computed here from the model and the views themselves: softmax per view, then the
    # mean over the 2 clips x 3 crops (not predict's own averaging code).
    from video_gn.data import load_video_views
    from video_gn.predict import load_classifier

    # After one training step the class probabilities are all near 1/4; a sharper classifier (its weights
    # x 30) makes the views disagree clearly, so that any other way of combining them gives other numbers.
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    (head,) = [k for k in ckpt["state_dict"] if k.endswith("proj.weight")]
    ckpt["state_dict"][head] *= 30
    sharp = tmp_path / "sharp.ckpt"
    torch.save(ckpt, sharp)

    video = next((tiny_root / "val").rglob("*.mp4"))
    model, _, names = load_classifier(str(sharp), "cpu")
    views = load_video_views(
        video,
        num_frames=4,  # the checkpoint's settings (see the test above) ...
        sampling_rate=2,
        short_side=40,
        crop_size=32,
        mean=(0.45, 0.45, 0.45),
        std=(0.225, 0.225, 0.225),
        num_clips=2,  # ... and the flags below
        num_crops=3,
    )
    assert views.shape[0] == 6
    with torch.inference_mode():
        logits = model(views).float()  # (6, num_classes)
    per_view = logits.softmax(dim=-1)
    expected = per_view.mean(dim=0)
    # The views really disagree, far beyond the tolerance below: no single view gives the mean, nor does the
    # softmax of the mean logits.
    assert (per_view - expected).abs().amax(dim=-1).min() > 1e-2, per_view
    assert (logits.mean(dim=0).softmax(dim=-1) - expected).abs().max() > 1e-4

    capsys.readouterr()
    args = ["predict", str(video), "--ckpt_path", str(sharp), "--json", "--device", "cpu"]
    assert main([*args, "--num_clips", "2", "--num_crops", "3", "--top_k", str(len(names))]) == 0
    (pred,) = json.loads(capsys.readouterr().out)["predictions"]
    got = dict(pred["top"])
    assert sorted(got) == sorted(names) and len(names) == 4
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
    for i, name in enumerate(names):
        assert got[name] == pytest.approx(float(expected[i]), abs=1e-5), (name, got, expected)


def test_predict_reads_the_config_a_run_saved(tiny_root, tiny_ckpt, capsys):
    # The config.yaml LightningCLI saves beside the logs holds fit's own keys (ckpt_path, weights_only) too.
    saved = next((tiny_ckpt.parent.parent / "logs").glob("version_*/config.yaml"))
    assert "ckpt_path" in saved.read_text()
    video = str(next((tiny_root / "val").rglob("*.mp4")))
    assert main(["predict", video, "--ckpt_path", str(tiny_ckpt), "-c", str(saved), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["path"] == video


def test_classes_txt_beside_an_old_checkpoint_is_used_only_when_it_matches(tmp_path) -> None:
    """A checkpoint without saved class names falls back to the classes.txt beside it, but only one with as
    many names as the model has outputs (another dataset's list would name classes wrongly, or run out)."""
    from video_gn.predict import _class_names_beside

    ckpt = tmp_path / "old.ckpt"
    assert _class_names_beside(ckpt, 3) is None  # no classes.txt
    (tmp_path / "classes.txt").write_text("jump\nrun\n\nswim\n")
    assert _class_names_beside(ckpt, 3) == ["jump", "run", "swim"]
    with pytest.warns(UserWarning, match="lists 3 classes but the model .* has 4"):
        assert _class_names_beside(ckpt, 4) is None


def test_predict_refuses_abbreviated_options_and_names_a_folder_given_as_checkpoint(
    tiny_root, tiny_ckpt, capsys
):
    good = next((tiny_root / "val").rglob("*.mp4"))
    with pytest.raises(SystemExit) as exit_info:  # --js is not taken for --json, as in fit/validate/test
        main(["predict", str(good), "--ckpt_path", str(tiny_ckpt), "--js"])
    assert exit_info.value.code == 2 and "--js" in capsys.readouterr().err
    assert main(["predict", str(good), "--ckpt_path", str(tiny_ckpt.parent)]) == 2
    assert f"--ckpt_path {tiny_ckpt.parent} is a folder" in capsys.readouterr().err

"""Tests of the synthetic motion dataset: layout, real H.264 files, determinism, motion-only classes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from video_gn.data import synthetic as syn
from video_gn.data.synthetic import CLASSES, SyntheticSpec, class_names, generate, render_video

TINY = SyntheticSpec(num_classes=3, train_per_class=2, val_per_class=1, size=(32, 48), fps=10, num_frames=12)


def _decode(path: Path) -> tuple[np.ndarray, dict]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = {"codec": s.codec_context.name, "pix_fmt": s.codec_context.pix_fmt, "fps": s.average_rate}
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(s)])
    return frames, info


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("syn") / "data", TINY, workers=2, progress=False)


def test_layout_and_files(tiny_root: Path) -> None:
    names = class_names(TINY)
    assert names == list(CLASSES[:3])
    assert (tiny_root / "classes.txt").read_text().splitlines() == names
    assert (tiny_root / ".complete").is_file()
    assert json.loads((tiny_root / "synthetic.json").read_text()) == TINY.to_dict()
    for split, n in (("train", 2), ("val", 1)):
        assert sorted(p.name for p in (tiny_root / split).iterdir()) == sorted(names)
        for name in names:
            files = sorted((tiny_root / split / name).glob("*.mp4"))
            assert len(files) == n
            frames, info = _decode(files[0])
            assert frames.shape == (TINY.num_frames, 32, 48, 3)
            assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
            assert info["fps"] == TINY.fps
            assert files[0].read_bytes()[4:8] == b"ftyp"  # an MP4 container
    # no temp directories left beside the root
    assert [p.name for p in tiny_root.parent.iterdir()] == ["data"]
    assert syn.is_complete(tiny_root, TINY)


def test_regenerate_is_noop_and_spec_mismatch_errors(tiny_root: Path) -> None:
    mtime = (tiny_root / ".complete").stat().st_mtime_ns
    assert generate(tiny_root, TINY, workers=1, progress=False) == tiny_root
    assert (tiny_root / ".complete").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="different spec") as exc:
        generate(tiny_root, dataclasses.replace(TINY, seed=1), workers=1, progress=False)
    # the message names what differs, and offers another root first, deleting only for an old synthetic set
    assert "seed: 0 there, 1 asked" in str(exc.value)
    assert str(exc.value).endswith(
        "choose another root (or delete it if it is an old synthetic set you no longer need)"
    )
    assert syn.check_root(tiny_root, TINY) is True  # reused
    assert syn.check_root(tiny_root.parent / "new", TINY) is False and not (tiny_root.parent / "new").exists()


def test_non_empty_root_rejected(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match="not an empty directory"):
        generate(tmp_path / "x", TINY, workers=1, progress=False)


def test_determinism_independent_of_workers(tiny_root: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", TINY, workers=1, progress=False)
    other = generate(tmp_path / "other", dataclasses.replace(TINY, seed=7), workers=1, progress=False)
    rel = Path("train") / CLASSES[1] / f"{CLASSES[1]}_00001.mp4"
    a, _ = _decode(tiny_root / rel)
    b, _ = _decode(again / rel)
    c, _ = _decode(other / rel)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(np.int16) - c).mean() > 5


def test_video_seed_depends_on_every_key() -> None:
    base = syn.video_seed(0, "train", "move_right", 0)
    others = [
        syn.video_seed(1, "train", "move_right", 0),
        syn.video_seed(0, "val", "move_right", 0),
        syn.video_seed(0, "train", "move_left", 0),
        syn.video_seed(0, "train", "move_right", 1),
    ]
    assert base not in others and len(set(others)) == 4
    assert syn.video_seed(0, "train", "move_right", 0) == base


def test_same_seed_same_first_frame_for_every_class() -> None:
    """Appearance and initial state do not depend on the class: a single frame carries no label."""
    first = [render_video(c, 123, size=(32, 40), num_frames=20)[0] for c in CLASSES]
    for f in first[1:]:
        np.testing.assert_array_equal(f, first[0])
    # ... but the motion does: later frames differ between classes.
    last = [render_video(c, 123, size=(32, 40), num_frames=20)[-1] for c in CLASSES]
    assert len({f.tobytes() for f in last}) == len(CLASSES)


def test_single_frame_statistics_do_not_separate_classes() -> None:
    """Per-class distributions of per-frame mean/std overlap: within-class spread dwarfs between-class."""
    stats = np.array(
        [
            [
                [f.mean(), f.std()]
                for f in (render_video(c, s, size=(32, 40), num_frames=8)[4] for s in range(12))
            ]
            for c in ("move_right", "rotate_cw", "expand", "oscillate_slow")
        ],
        dtype=np.float64,
    )  # (classes, videos, 2)
    between = stats.mean(axis=1).std(axis=0)
    within = stats.std(axis=1).mean(axis=0)
    assert (between < 0.5 * within).all(), (between, within)


def test_appearance_varies_across_videos() -> None:
    means = []
    for s in range(10):
        v = render_video("move_right", s, size=(32, 40), num_frames=4).astype(np.float64) / 255
        means.append([v.mean(), v.std(), *v.reshape(-1, 3).mean(0)])
    means = np.array(means)
    assert means[:, 0].std() > 0.05  # brightness differs from clip to clip
    assert means[:, 1].max() - means[:, 1].min() > 0.05  # so does contrast
    assert means[:, 2:].std(axis=0).min() > 0.05  # and colour


def _centroid_x(frames: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Circular mean of the x position of pixels that differ from a known background (T,)."""
    diff = np.abs(frames.astype(np.float64) - background).sum(-1) > 60
    w = frames.shape[2]
    ang = 2 * np.pi * np.arange(w) / w
    cols = diff.sum(1)  # (T, W)
    return np.angle((cols * np.exp(1j * ang)).sum(1)) * w / (2 * np.pi)


def test_motion_direction_and_late_reversal() -> None:
    """move_right drifts right all along; right_then_left reverses late: a short window cannot tell them apart."""
    kw = {"size": (48, 64), "num_frames": 50, "fps": 25}
    for seed in range(3):
        right = render_video("move_right", seed, **kw)
        rev = render_video("right_then_left", seed, **kw)
        # the object is the only thing that moves; the per-pixel median over time recovers the background
        bg = np.median(np.concatenate([right, rev]), axis=0)
        xr, xv = _centroid_x(right, bg), _centroid_x(rev, bg)
        step_r = np.angle(np.exp(1j * np.diff(xr) * 2 * np.pi / 64))
        step_v = np.angle(np.exp(1j * np.diff(xv) * 2 * np.pi / 64))
        assert (step_r[:15] > 0).mean() > 0.8 and (step_r[-10:] > 0).mean() > 0.8
        assert (step_v[:15] > 0).mean() > 0.8 and (step_v[-10:] < 0).mean() > 0.8
        np.testing.assert_array_equal(right[:15], rev[:15])  # identical until the reversal (>= 35 % of clip)


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="even"):
        SyntheticSpec(size=(33, 48))
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticSpec(num_classes=len(CLASSES) + 1)
    with pytest.raises(ValueError, match="num_frames"):
        SyntheticSpec(num_frames=1)
    # these failed only while generating (numpy: "expected non-negative integer"; x264: "returned 22"), or
    # wrote a dataset of no videos
    with pytest.raises(ValueError, match="seed must be >= 0"):
        SyntheticSpec(seed=-1)
    with pytest.raises(ValueError, match="preset must be an x264 preset .*'fastt'"):
        SyntheticSpec(preset="fastt")
    with pytest.raises(ValueError, match="no videos"):
        SyntheticSpec(train_per_class=0, val_per_class=0)
    assert SyntheticSpec.from_dict(SyntheticSpec().to_dict()) == SyntheticSpec()


def test_make_synthetic_script(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "data_scripts" / "make_synthetic.py"
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "d"), "--preset", "tiny", "--num-classes", "2",
         "--train-per-class", "1", "--val-per-class", "1", "--workers", "1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "done" in out.stderr
    assert (tmp_path / "d" / "classes.txt").read_text().split() == list(CLASSES[:2])
    assert len(list((tmp_path / "d").glob("*/*/*.mp4"))) == 4
    assert all(c in syn.describe() for c in CLASSES)


def test_quickstart_preset_is_the_quick_start_config() -> None:
    """make_synthetic's default preset writes exactly the dataset configs/quickstart.yaml asks for, so a
    dataset made ahead of time into data/synthetic_motion is reused by the quick start, not refused."""
    import yaml

    config = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    data = yaml.safe_load(config.read_text())["data"]
    assert data["root"] == "data/synthetic_motion"
    from_config = SyntheticSpec.from_dict(data["synthetic"])
    assert syn.PRESETS["quickstart"] == from_config
    assert syn.PRESETS["default"] == SyntheticSpec()
    assert from_config != SyntheticSpec()  # why the two presets exist


def test_make_synthetic_script_default_preset_is_quickstart(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "data_scripts" / "make_synthetic.py"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "d"), "--train-per-class", "1", "--val-per-class", "0",
         "--num-frames", "4", "--workers", "1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    written = json.loads((tmp_path / "d" / "synthetic.json").read_text())
    expected = dataclasses.replace(
        syn.PRESETS["quickstart"], train_per_class=1, val_per_class=0, num_frames=4
    )
    assert written == expected.to_dict()
    assert (written["num_classes"], written["size"]) == (6, [40, 48])


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_root_mode_follows_the_umask(tmp_path: Path, umask: int) -> None:
    """The root is renamed from a mkdtemp directory (0700); it must get a plain mkdir's mode instead."""
    import os
    import stat

    old = os.umask(umask)
    try:
        root = generate(tmp_path / "shared", dataclasses.replace(TINY, num_classes=1, train_per_class=1,
                        val_per_class=0), workers=1, progress=False)  # fmt: skip
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(old)
    mode = stat.S_IMODE(root.stat().st_mode)
    assert mode == 0o777 & ~umask == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert stat.S_IMODE((root / "train").stat().st_mode) == mode
    assert stat.S_IMODE((root / "classes.txt").stat().st_mode) == 0o666 & ~umask


def test_no_val_videos_means_no_val_split(tmp_path: Path) -> None:
    # val_per_class 0 writes no val/ folder, so the data module trains without validation (an empty val/
    # would be an "empty split" error at setup).
    from video_gn.data import KineticsDataModule

    spec = dataclasses.replace(TINY, num_classes=2, train_per_class=1, val_per_class=0)
    root = generate(tmp_path / "noval", spec, workers=1, progress=False)
    assert not (root / "val").exists() and len(list((root / "train").rglob("*.mp4"))) == 2
    dm = KineticsDataModule(
        root=str(root), batch_size=1, num_frames=4, crop_size=32, train_short_side=[32, 32], hflip=False
    )
    dm.setup("fit")
    assert "train" in dm.datasets and "val" not in dm.datasets and dm.val_dataloader() == []


def test_datamodule_says_generating_only_when_it_generates(tiny_root: Path, monkeypatch) -> None:
    """A root holding another spec is refused before any "Generating ..." line (nothing is generated)."""
    import video_gn.data.datamodule as dm_module
    from video_gn.data import KineticsDataModule

    said = []
    monkeypatch.setattr(dm_module, "rank_zero_info", said.append)
    other = KineticsDataModule(str(tiny_root), synthetic=dataclasses.replace(TINY, seed=1), hflip=False)
    with pytest.raises(ValueError, match="different spec"):
        other.prepare_data()
    assert not any("Generating" in s for s in said)
    KineticsDataModule(
        str(tiny_root), synthetic=TINY, hflip=False
    ).prepare_data()  # same spec: reused, silently
    assert not said


def test_temporaries_of_killed_generators_are_removed(tmp_path: Path) -> None:
    """A generator killed with SIGKILL leaves its temporary folder; the next run removes it, and only it."""
    spec = SyntheticSpec(num_classes=2, train_per_class=1, val_per_class=0, size=(32, 32), num_frames=4)
    root = tmp_path / "data"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is no longer running
    prefix = syn._tmp_prefix(root)
    abandoned = tmp_path / f"{prefix}{dead.pid}-abc123"
    live = tmp_path / f"{prefix}{1}-def456"  # pid 1 is always running
    other_host = tmp_path / f".data.tmp-elsewhere-{dead.pid}-ghi789"
    for d in (abandoned, live, other_host):
        (d / "train").mkdir(parents=True)
    generate(root, spec, workers=1, progress=False)
    assert not abandoned.exists() and live.is_dir() and other_host.is_dir()
    assert syn.is_complete(root, spec)

"""Tests of the data preparation tools: Kinetics download (offline), resize, verify, file lists, scripts."""

from __future__ import annotations

import csv
import re
import runpy
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from video_fixtures import remux_faststart, write_rotated_video, write_video

from video_gn.data.filelists import make_filelists, read_list, write_clean_csv
from video_gn.data.kinetics_download import (
    DownloaderNotFound,
    VideoGone,
    clip_path,
    download_kinetics,
    read_annotations,
    sanitize_name,
)
from video_gn.data.layout import find_classes, list_split
from video_gn.data.prep import find_videos, resize_tree, scaled_size, transcode
from video_gn.data.progress import TextProgress, parallel_map, progress_bar
from video_gn.data.verify import verify_video, verify_videos

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"
GOOD_ID, OTHER_ID = "abcDEF123_-", "zz9_zz9-zz9"


def run_script(name: str, *args: str) -> tuple[int, str, str]:
    """Run data_scripts/<name> as ``__main__`` in this process (imports are warm); returns (code, out, err)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = [str(SCRIPTS / name), *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(SCRIPTS / name), run_name="__main__")
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def make_video(path: Path, *, seconds: float = 3.0, fps: int = 10, size: tuple[int, int] = (48, 64)) -> Path:
    """Write an H.264 MP4 whose frame i has mean brightness ~ i (so cuts can be located)."""
    n = int(round(seconds * fps))
    h, w = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=Fraction(fps, 1))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "10", "preset": "ultrafast", "g": str(fps)}
        for i in range(n):
            img = np.full((h, w, 3), (7 * i) % 256, np.uint8)
            img[: h // 4, : w // 4] = 255  # a corner marker to check the aspect after resizing
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))
    return path


def probe(path: Path) -> tuple[int, int, int, float]:
    """(frames, height, width, fps) by decoding everything."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return len(frames), frames[0].height, frames[0].width, float(s.average_rate)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def source_video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("src") / "full.mp4", seconds=4.0, fps=10)


class FakeDownloader:
    """Copies a local MP4 into the download folder; fails the first ``fail_first`` calls per id."""

    def __init__(self, source: Path, fail_first: int = 0, always_fail: set[str] = frozenset()):
        self.source, self.fail_first, self.always_fail = source, fail_first, always_fail
        self.calls: dict[str, int] = {}

    def __call__(self, youtube_id: str, dest: Path) -> Path:
        self.calls[youtube_id] = self.calls.get(youtube_id, 0) + 1
        if youtube_id in self.always_fail or self.calls[youtube_id] <= self.fail_first:
            raise RuntimeError(f"simulated network error for {youtube_id}")
        out = dest / f"{youtube_id}.mp4"
        out.write_bytes(self.source.read_bytes())
        return out


def test_read_annotations_formats(tmp_path: Path) -> None:
    k400 = write_csv(
        tmp_path / "train.csv",
        ["label", "youtube_id", "time_start", "time_end", "split"],
        [
            ["passing American football (in game)", GOOD_ID, 1, 3, "train"],
            ["abseiling", "short", 0, 10, "train"],  # bad id
            ["abseiling", "ab;rm -rf /", 0, 10, "train"],  # bad id with shell metacharacters
            ["abseiling", OTHER_ID, 5, 2, "train"],  # end before start
            ["abseiling", OTHER_ID, 0, 2, "val"],
        ],
    )
    anns, rejected = read_annotations(k400)
    assert [(a.folder, a.youtube_id, a.start, a.end, a.split) for a in anns] == [
        ("passing_American_football_in_game", GOOD_ID, 1, 3, "train"),
        ("abseiling", OTHER_ID, 0, 2, "val"),
    ]
    assert len(rejected) == 3 and "invalid youtube id" in rejected[0][1]
    assert [a.split for a in read_annotations(k400, split="val")[0]] == ["val"]
    # 700-2020 style: extra column, different order; and a test CSV without label/split columns
    k700 = write_csv(
        tmp_path / "k700.csv",
        ["label", "youtube_id", "time_start", "time_end", "split", "is_cc"],
        [["yoga", GOOD_ID, "10.0", "20.0", "validate", "0"]],
    )
    # DeepMind's files call the validation split "validate": it goes to val/, which the DataModule reads
    assert read_annotations(k700)[0][0].split == "val"
    assert [a.split for a in read_annotations(k700, split="validate")[0]] == ["val"]
    assert [a.split for a in read_annotations(k400, split="validation")[0]] == ["val"]
    deepmind = write_csv(
        tmp_path / "validate.csv", ["youtube_id", "time_start", "time_end"], [[GOOD_ID, 0, 10]]
    )
    assert read_annotations(deepmind)[0][0].split == "val"  # no split column: the file name, normalised
    assert clip_path(tmp_path / "o", read_annotations(k700)[0][0]).parent.parent.name == "val"
    test = write_csv(tmp_path / "test.csv", ["youtube_id", "time_start", "time_end"], [[GOOD_ID, 0, 10]])
    (ann,) = read_annotations(test)[0]
    assert (ann.folder, ann.split) == ("unlabeled", "test")
    bad = write_csv(tmp_path / "bad.csv", ["label", "id"], [["x", GOOD_ID]])
    with pytest.raises(ValueError, match="missing columns youtube_id,time_start,time_end .*found label,id"):
        read_annotations(bad)
    # bad times are rejected rows naming the column (an infinite time crashed the run with OverflowError)
    times = write_csv(
        tmp_path / "times.csv",
        K_HEADER,
        [
            ["a", GOOD_ID, 0, "inf", "train"],
            ["a", GOOD_ID, "nan", 2, "train"],
            ["a", GOOD_ID, "", 2, "train"],
        ],
    )
    anns, rejected = read_annotations(times)
    assert anns == [] and [reason for _, reason in rejected] == [
        "time_end 'inf' is not a finite time >= 0 seconds",
        "time_start 'nan' is not a finite time >= 0 seconds",
        "time_start '' is not a number of seconds",
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("../../etc", "etc"), ("a/b\\c", "a_b_c"), ("$(reboot); `x` | y", "reboot_x_y"), ("-rf", "rf")],
)
def test_sanitize_name(raw: str, expected: str) -> None:
    assert sanitize_name(raw) == expected


@pytest.mark.parametrize("raw", ["..", "/", " ", "./."])
def test_sanitize_name_rejects_empty(raw: str) -> None:
    with pytest.raises(
        ValueError, match=rf"^name {re.escape(repr(raw))} has no usable characters for a file name$"
    ):
        sanitize_name(raw)


def test_download_trim_resume_and_failures(tmp_path: Path, source_video: Path) -> None:
    header = ["label", "youtube_id", "time_start", "time_end", "split"]
    annotations = write_csv(
        tmp_path / "k.csv",
        header,
        [
            ["riding a bike", GOOD_ID, 1, 3, "train"],
            ["../../etc", OTHER_ID, 0, 2, "val"],  # traversal attempt in the label: stays inside out/
            ["ok", "../../../xx", 0, 2, "val"],  # traversal attempt in the id: rejected
            ["ok", "broken_id_1", 0, 2, "val"],  # download always fails
        ],
    )
    out = tmp_path / "out"
    fake = FakeDownloader(source_video, fail_first=1, always_fail={"broken_id_1"})
    summary = download_kinetics(
        annotations, out, download_fn=fake, workers=2, retries=2, retry_wait=0.0, progress=False
    )
    clip = out / "train" / "riding_a_bike" / f"{GOOD_ID}_000001_000003.mp4"
    escaped = out / "val" / "etc" / f"{OTHER_ID}_000000_000002.mp4"
    assert sorted(summary.done) == sorted([clip, escaped])
    assert not (tmp_path / "etc").exists() and not (tmp_path / "val").exists()
    # every written file lies inside out/, and only the expected files exist (no temp leftovers)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        [
            clip.relative_to(out).as_posix(),
            escaped.relative_to(out).as_posix(),
            "failures.csv",
            "label_map.csv",
        ]
    )
    # the cut: 2 s at 10 fps, starting at source frame 10 (brightness 70)
    frames, h, w, fps = probe(clip)
    assert (frames, h, w, fps) == (20, 48, 64, 10.0)
    with av.open(str(clip)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(np.float64)
    assert abs(first[24:, 32:].mean() - 70) < 4
    # retries: one simulated failure then success; the broken id is tried 1 + retries times
    assert fake.calls[GOOD_ID] == 2 and fake.calls["broken_id_1"] == 3
    with open(out / "failures.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["youtube_id"] for r in rows} == {"broken_id_1", "../../../xx"}
    failed = next(r for r in rows if r["youtube_id"] == "broken_id_1")
    assert "simulated network error" in failed["error"] and "3 attempts" in failed["error"]
    assert (failed["label"], failed["time_start"], failed["split"]) == ("ok", "0", "val")
    # resumable: a second run downloads nothing new
    fake2 = FakeDownloader(source_video, always_fail={"broken_id_1"})
    again = download_kinetics(annotations, out, download_fn=fake2, workers=1, retries=0, progress=False)
    assert sorted(again.skipped) == sorted([clip, escaped]) and not again.done
    assert set(fake2.calls) == {"broken_id_1"}


def test_download_deletes_what_a_killed_run_left(tmp_path: Path, source_video: Path) -> None:
    """A killed run (SIGKILL, preemption) leaves its work folders, each holding a full downloaded video, in
    <out>/.downloads: the next run deletes those of dead processes on this host (they piled up before)."""
    import os
    import socket
    import subprocess

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid names no process now
    downloads = tmp_path / "out" / ".downloads"
    host = socket.gethostname()
    left = {
        "dead": downloads / f"{host}.{dead.pid}.{GOOD_ID}-x1",
        "alive": downloads / f"{host}.{os.getppid()}.{OTHER_ID}-x2",  # a live process (pytest's parent)
        "other_host": downloads / f"{host}x.{dead.pid}.{OTHER_ID}-x3",
    }
    for d in left.values():
        d.mkdir(parents=True)
        (d / "video.mp4.part").write_bytes(b"x" * 1000)
    k = write_csv(tmp_path / "k.csv", K_HEADER, [["a", GOOD_ID, 0, 2, "train"]])
    summary = download_kinetics(
        k, tmp_path / "out", download_fn=FakeDownloader(source_video), workers=1, progress=False
    )
    assert len(summary.done) == 1
    assert not left["dead"].exists() and left["alive"].is_dir() and left["other_host"].is_dir()


def test_clip_path_stays_inside(tmp_path: Path) -> None:
    anns, _ = read_annotations(
        write_csv(
            tmp_path / "a.csv",
            ["label", "youtube_id", "time_start", "time_end", "split"],
            [["../..", GOOD_ID, 0, 1, "../../x"], ["a b", GOOD_ID, 0, 1, "/abs"]],
        )  # fmt: skip
    )
    assert len(anns) == 1  # the label ".." has no usable characters: rejected
    p = clip_path(tmp_path / "o", anns[0])
    assert p == (tmp_path / "o" / "abs" / "a_b" / f"{GOOD_ID}_000000_000001.mp4").absolute()


def test_label_clash_is_an_error(tmp_path: Path, source_video: Path) -> None:
    rows = [["a b", GOOD_ID, 0, 1, "train"], ["a/b", OTHER_ID, 0, 1, "train"]]
    k = write_csv(tmp_path / "k.csv", ["label", "youtube_id", "time_start", "time_end", "split"], rows)
    with pytest.raises(ValueError, match="same folder"):
        download_kinetics(k, tmp_path / "o", download_fn=FakeDownloader(source_video), progress=False)


def test_transcode_rejects_empty_range(tmp_path: Path, source_video: Path) -> None:
    with pytest.raises(ValueError, match="no video frames"):
        transcode(source_video, tmp_path / "x.mp4", start=50, end=60)
    assert not list(tmp_path.iterdir())  # the partial output was removed


@pytest.mark.parametrize(("degrees", "bright"), [(-90, "top"), (90, "bottom"), (180, "right")])
def test_transcode_turns_rotated_videos_upright(tmp_path: Path, degrees: int, bright: str) -> None:
    """A phone video stores landscape frames plus a display matrix saying how to turn them. The re-encoded
    file has no display matrix, so its pixels must be turned (as players and ffmpeg do), and the short side
    is that of the upright frame; before, the output lay on its side with the rotation lost."""
    src = write_rotated_video(tmp_path / "phone.mp4", degrees)
    if src is None:
        pytest.skip("this PyAV/FFmpeg cannot write or read back a display matrix")
    info = transcode(src, tmp_path / "out.mp4", start=0.2, short_side=32)
    with av.open(str(tmp_path / "out.mp4")) as c:
        frames = [f for f in c.decode(video=0)]
    assert len(frames) == info["frames"] == 8
    assert frames[0].rotation == 0
    upright = (48, 32) if degrees % 180 else (32, 48)  # (H, W): the 64 px side becomes 32 px
    assert (frames[0].height, frames[0].width) == (info["height"], info["width"]) == upright
    assert (info["source_height"], info["source_width"]) == ((96, 64) if degrees % 180 else (64, 96))
    img = frames[0].to_ndarray(format="rgb24").astype(float)
    h, w = img.shape[:2]
    halves = {
        "top": img[: h // 2],
        "bottom": img[h // 2 :],
        "left": img[:, : w // 2],
        "right": img[:, w // 2 :],
    }
    assert halves[bright].mean() > 230 and img.mean() == pytest.approx(127.5, abs=10)


def test_scaled_size() -> None:
    assert scaled_size(240, 320, 256) == (256, 342)
    assert scaled_size(1080, 1920, 320) == (320, 568)
    assert scaled_size(640, 360, 256) == (456, 256)
    assert scaled_size(256, 256, 320) == (320, 320)


def test_resize_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_video(src / "train" / "a" / "v1.mp4", seconds=1.0, fps=15, size=(48, 64))
    make_video(src / "train" / "b" / "v2.mp4", seconds=1.0, fps=12, size=(64, 36))  # portrait
    (src / "train" / "b" / "broken.mp4").write_bytes(b"not a video")
    (src / "classes.txt").write_text("b\na\n")  # not sorted: label 0 is b
    r = resize_tree(src, tmp_path / "dst", short_side=32, workers=2, progress=False)
    assert len(r["done"]) == 2 and len(r["failed"]) == 1 and "broken.mp4" in r["failed"][0][0]
    assert find_classes(tmp_path / "dst") == ["b", "a"]  # the labels keep their indices (were sorted: a, b)
    n, h, w, fps = probe(tmp_path / "dst" / "train" / "a" / "v1.mp4")
    assert (n, h, w, fps) == (15, 32, 42, 15.0)  # 64 * 32 / 48 = 42.7 -> even 42
    n, h, w, fps = probe(tmp_path / "dst" / "train" / "b" / "v2.mp4")
    assert (n, h, w, fps) == (12, 56, 32, 12.0)  # 64 * 32 / 36 = 56.9 -> even 56
    again = resize_tree(src, tmp_path / "dst", short_side=32, workers=1, progress=False)
    assert len(again["skipped"]) == 2 and not again["done"]
    # Outputs of a run without the settings record (older video_gn): their size is checked, not assumed.
    (tmp_path / "dst" / ".resize.json").unlink()
    with pytest.raises(ValueError, match="without a settings record.*32px short side, not 24"):
        resize_tree(src, tmp_path / "dst", short_side=24, workers=1, progress=False)
    (tmp_path / "dst" / ".resize.json").unlink(missing_ok=True)
    again = resize_tree(src, tmp_path / "dst", short_side=32, workers=1, progress=False)
    assert len(again["skipped"]) == 2 and (tmp_path / "dst" / ".resize.json").is_file()


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def test_verify_finds_bad_files(tmp_path: Path) -> None:
    good = make_video(tmp_path / "d" / "train" / "a" / "good.mp4", seconds=2.0)
    (tmp_path / "d" / "train" / "a" / "empty.mp4").write_bytes(b"")
    (tmp_path / "d" / "train" / "a" / "text.mp4").write_text("hello, I am not a video")
    (tmp_path / "d" / "train" / "b").mkdir()
    (tmp_path / "d" / "train" / "b" / "truncated.mp4").write_bytes(
        good.read_bytes()[: good.stat().st_size // 2]
    )
    _audio_only(tmp_path / "d" / "train" / "b" / "audio.mp4")
    checks = {
        Path(c.path).name: c for c in verify_videos(find_videos(tmp_path / "d"), workers=2, progress=False)
    }
    assert checks["good.mp4"].ok and checks["good.mp4"].frames_decoded == 4
    assert (checks["good.mp4"].num_frames, checks["good.mp4"].last_frame) == (20, 19)
    assert (checks["good.mp4"].height, checks["good.mp4"].width, checks["good.mp4"].fps) == (48, 64, 10.0)
    for name in ("empty.mp4", "text.mp4", "truncated.mp4", "audio.mp4"):
        assert not checks[name].ok, name
    assert checks["empty.mp4"].error.startswith("empty file")
    assert checks["audio.mp4"].error == "no video stream"
    assert verify_video(tmp_path / "missing.mp4").ok is False

    # the script: list input, bad-file CSV and a cleaned list
    lines = [f"train/{p.parent.name}/{p.name} {i}" for i, p in enumerate(find_videos(tmp_path / "d"))]
    (tmp_path / "d" / "train.csv").write_text("\n".join(lines) + "\n")
    code, _, err = run_script(
        "verify_videos.py", str(tmp_path / "d" / "train.csv"), "--workers", "1",
        "--bad", str(tmp_path / "bad.csv"), "--clean-csv", str(tmp_path / "clean.csv"),
    )  # fmt: skip
    assert code == 1, err
    assert "5 files checked: 1 ok, 4 bad" in err
    with open(tmp_path / "bad.csv", newline="") as f:
        assert sorted(Path(r["path"]).name for r in csv.DictReader(f)) == [
            "audio.mp4", "empty.mp4", "text.mp4", "truncated.mp4",
        ]  # fmt: skip
    assert [p for p, _ in read_list(tmp_path / "clean.csv")] == ["train/a/good.mp4"]


@pytest.mark.parametrize("kind", ["faststart_mp4", "mkv", "webm"])
def test_verify_catches_a_file_missing_its_last_5_percent(tmp_path: Path, kind: str) -> None:
    """A file cut 5 % short that still opens, and whose first and middle frames decode, is truncated."""
    if kind == "faststart_mp4":
        fps = 10
        full = remux_faststart(
            make_video(tmp_path / "plain.mp4", seconds=6.0, fps=fps), tmp_path / "full.mp4"
        )
    else:
        fps, codec = 30, "libvpx" if kind == "webm" else "libx264"
        full = write_video(
            tmp_path / f"full.{kind}", num_frames=60, fps=fps, gop=10, codec=codec, pattern="noise"
        )
    good = verify_video(full)
    assert good.ok and (good.num_frames, good.last_frame) == (60, 59), good
    cut = tmp_path / f"cut{full.suffix}"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.95)])
    # readable but truncated: it opens, and frames at the start, a third and two thirds in decode
    with av.open(str(cut)) as c:
        stream = c.streams.video[0]
        assert sum(1 for _ in zip(range(4), c.decode(stream))) == 4
        for target in (20, 40):
            c.seek(int(target / fps / stream.time_base), stream=stream, backward=True)
            assert next(iter(c.decode(stream)), None) is not None
    assert verify_video(cut, check_end=False).ok  # what a check of the first frames sees
    check = verify_video(cut)
    assert not check.ok and "truncated" in check.error, check
    assert check.last_frame < 58 and check.num_frames == 60
    # an MP4 with its index at the end loses the index when cut: it does not even open properly
    if kind == "faststart_mp4":
        plain = tmp_path / "plain.mp4"
        short = tmp_path / "plain_cut.mp4"
        short.write_bytes(plain.read_bytes()[: int(plain.stat().st_size * 0.95)])
        assert not verify_video(short).ok and not verify_video(short, check_end=False).ok


def test_write_clean_csv_with_spaces(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("a b/x.mp4 0\nc/y.mp4 1\n")
    assert write_clean_csv(tmp_path / "l.csv", tmp_path / "o.csv", [str(tmp_path / "a b" / "x.mp4")]) == 1
    assert (tmp_path / "o.csv").read_text() == "c/y.mp4 1\n"
    # label-less lines: a last token that is a file name belongs to the path
    (tmp_path / "u.csv").write_text("# comment\na b/x.mp4\nmy clip.mkv\nc/y.mp4   swim\n")
    assert read_list(tmp_path / "u.csv") == [("a b/x.mp4", ""), ("my clip.mkv", ""), ("c/y.mp4", "swim")]
    assert write_clean_csv(tmp_path / "u.csv", tmp_path / "o.csv", [str(tmp_path / "a b" / "x.mp4")]) == 1
    assert (tmp_path / "o.csv").read_text() == "my clip.mkv\nc/y.mp4 swim\n"


def test_make_filelists_matches_folders(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    layout = {"train": {"jump": 2, "run": 1, "swim fast": 1}, "val": {"jump": 1, "swim fast": 1}}
    for split, classes in layout.items():
        for cls, n in classes.items():
            for i in range(n):
                (root / split / cls).mkdir(parents=True, exist_ok=True)
                (root / split / cls / f"{i}.mp4").write_bytes(b"x")  # contents are not read
    (root / "train" / "run" / "notes.txt").write_text("not a video")
    written = make_filelists(root)
    assert set(written) == {"train", "val"}
    classes = (root / "classes.txt").read_text().splitlines()
    assert classes == ["jump", "run", "swim fast"]
    for split, csv_path in written.items():
        rows = read_list(csv_path)
        # the class map of the lists equals the folder layout's
        from_lists = {(Path(p).parent.name, int(label)) for p, label in rows}
        assert from_lists == {(c, classes.index(c)) for c in layout[split]}
        assert len(rows) == sum(layout[split].values())
        assert all((root / p).is_file() and not Path(p).is_absolute() for p, _ in rows)
    # an existing classes.txt fixes the order; a folder missing from it is an error
    (root / "classes.txt").write_text("swim fast\nrun\njump\n")
    make_filelists(root, splits=["val"])
    assert {int(label) for _, label in read_list(root / "val.csv")} == {0, 2}
    (root / "classes.txt").write_text("jump\n")
    with pytest.raises(ValueError, match="not in the class list"):
        make_filelists(root)
    with pytest.raises(FileNotFoundError):
        make_filelists(tmp_path / "nope")
    # a split with no videos fails before anything is written: the earlier lists stay as they were
    (root / "classes.txt").write_text("jump\nrun\nswim fast\n")
    before = {f: (root / f).read_text() for f in ("classes.txt", "train.csv", "val.csv")}
    (root / "train" / "new").mkdir()
    (root / "train" / "new" / "0.mp4").write_bytes(b"x")
    (root / "test" / "jump").mkdir(parents=True)
    with pytest.raises(ValueError, match="split 'test' .* holds no video files"):
        make_filelists(root, classes=["jump", "new", "run", "swim fast"])
    assert {f: (root / f).read_text() for f in before} == before


def test_make_filelists_out_dir_lists_resolve_from_there(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    for cls in ("a", "b"):
        (root / "train" / cls).mkdir(parents=True)
        (root / "train" / cls / "x.mp4").write_bytes(b"x")
    out = tmp_path / "lists" / "k400"
    written = make_filelists(root, out_dir=out, progress=False)
    assert written == {"train": out / "train.csv"} and (out / "classes.txt").is_file()
    assert not (root / "train.csv").exists()
    # the loader reads the lists relative to their folder: every listed file must be found from there
    paths = list_split(out, "train", find_classes(out), max_missing_fraction=0.0)
    assert sorted(Path(p).resolve() for p, _ in paths) == sorted(
        (root / "train" / c / "x.mp4").resolve() for c in ("a", "b")
    )


def test_make_filelists_script(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "train" / cls / "v.mp4").write_bytes(b"x")
    code, _, err = run_script("make_filelists.py", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / "train.csv").read_text() == "train/a/v.mp4 0\ntrain/b/v.mp4 1\n"
    # progress with totals (class folders listed), as plain lines since stderr is not a terminal here
    assert f"list {tmp_path.name}: 0/2 (0%)" in err and f"list {tmp_path.name}: 2/2 (100%)" in err


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_scripts_help(script: str) -> None:
    code, out, err = run_script(script, "--help")
    assert code == 0 and "usage:" in out, err


# --------------------------------------------------------------------------- progress in logs


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_text_progress_lines_totals_and_eta() -> None:
    import io

    out, clock = io.StringIO(), FakeClock()
    bar = TextProgress(10, "resize -> 320px", interval=30.0, stream=out, clock=clock)
    for dt in (10.0, 21.0):  # 1 done at 10 s (no line: < 30 s since the last), 2 done at 31 s (a line)
        clock.now += dt
        bar.advance()
    clock.now += 5.0
    bar.advance(3)  # 5 done at 36 s: only 5 s after the last line
    clock.now += 4.0
    bar.advance(5)
    bar.close()
    bar.close()  # nothing new to say: no repeated line
    assert out.getvalue().splitlines() == [
        "resize -> 320px: 0/10 (0%) elapsed 0:00:00 eta ?",
        "resize -> 320px: 2/10 (20%) elapsed 0:00:31 eta 0:02:04",  # 31 s / 2 x 8 left = 124 s
        "resize -> 320px: 10/10 (100%) elapsed 0:00:40 eta 0:00:00",
    ]
    with pytest.raises(ValueError, match="interval"):
        TextProgress(1, "x", interval=-1.0)


def test_progress_bar_writes_plain_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch) -> None:
    monkeypatch.delenv("VIDEO_GN_PROGRESS", raising=False)
    monkeypatch.delenv("VIDEO_GN_PROGRESS_INTERVAL", raising=False)
    with progress_bar(total=3, description="verify", interval=0.0) as advance:  # a line per update
        for _ in range(3):
            advance()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" elapsed")[0] for line in lines] == [
        "verify: 0/3 (0%)", "verify: 1/3 (33%)", "verify: 2/3 (67%)", "verify: 3/3 (100%)",
    ]  # fmt: skip
    # the times depend on the machine's speed: check their form (H:MM:SS), not their value
    for line in lines:
        assert re.fullmatch(r"verify: \d/3 \(\d+%\) elapsed \d+:\d\d:\d\d eta (\?|\d+:\d\d:\d\d)", line), line
    assert lines[0].endswith(" eta ?") and lines[-1].endswith(" eta 0:00:00")  # no rate yet; all done
    # the default interval (30 s, or VIDEO_GN_PROGRESS_INTERVAL): a fast job logs its total and its end
    monkeypatch.setenv("VIDEO_GN_PROGRESS_INTERVAL", "3600")
    assert parallel_map(abs, [-1, -2, -3, -4], workers=1, description="job") == [1, 2, 3, 4]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" elapsed")[0] for line in lines] == ["job: 0/4 (0%)", "job: 4/4 (100%)"]
    monkeypatch.setenv("VIDEO_GN_PROGRESS", "0")  # off
    parallel_map(abs, [-1, -2], workers=1, description="job")
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("VIDEO_GN_PROGRESS", "text")
    monkeypatch.setenv("VIDEO_GN_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ValueError, match="VIDEO_GN_PROGRESS_INTERVAL"):
        parallel_map(abs, [-1], workers=1, description="job")


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_parallel_map_stops_at_the_first_error_or_ctrl_c(error: type[BaseException]) -> None:
    """A failing item (or Ctrl-C, which reaches the map as KeyboardInterrupt) stops the map: the queued items
    are dropped, not all run before the error is raised (a download run went on for hours after Ctrl-C)."""
    import threading
    import time

    ran, lock = [], threading.Lock()

    def work(i: int) -> int:
        if i == 0:
            raise error("stop")
        time.sleep(0.05)
        with lock:
            ran.append(i)
        return i

    with pytest.raises(error, match="stop"):
        parallel_map(work, list(range(100)), workers=2, threads=True, progress=False)
    assert len(ran) < 20, f"{len(ran)} of 99 queued items ran after the error"


# --------------------------------------------------------------------------- script errors and summaries

K_HEADER = ["label", "youtube_id", "time_start", "time_end", "split"]


def no_yt_dlp(monkeypatch) -> None:
    """Make yt-dlp look uninstalled: no executable on PATH and no importable module."""
    import shutil

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "yt-dlp" else real_which(name))
    monkeypatch.setitem(sys.modules, "yt_dlp", None)  # `import yt_dlp` raises ImportError


@pytest.fixture
def fake_yt_dlp(tmp_path: Path, source_video: Path, monkeypatch) -> Path:
    """A `yt-dlp` executable on PATH: ids starting with "gone" are removed videos, "flaky" ones fail with a
    transient error, others "download" the local source video. Returns the log of requested ids."""
    import os

    bin_dir, log = tmp_path / "bin", tmp_path / "yt_dlp_calls.log"
    bin_dir.mkdir()
    exe = bin_dir / "yt-dlp"
    exe.write_text(
        f"""#!{sys.executable}
import shutil, sys
args = sys.argv[1:]
out, vid = args[args.index("-o") + 1], args[-1].split("=")[-1]
with open({str(log)!r}, "a") as f:
    f.write(vid + "\\n")
if vid.startswith("gone"):
    print(f"ERROR: [youtube] {{vid}}: Video unavailable. This video has been removed", file=sys.stderr)
    sys.exit(1)
if vid.startswith("flaky"):
    # YouTube's rate limiting also says "Video unavailable": it must be retried, not taken for a gone video.
    print(f"ERROR: [youtube] {{vid}}: Video unavailable. This content isn't available, try again later. "
          "(HTTP Error 429)", file=sys.stderr)
    sys.exit(1)
shutil.copy({str(source_video)!r}, out.replace("%(ext)s", "mp4"))
"""
    )
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


def test_download_without_yt_dlp_stops_before_doing_anything(tmp_path: Path, monkeypatch) -> None:
    no_yt_dlp(monkeypatch)
    k = write_csv(tmp_path / "k.csv", K_HEADER, [["a", GOOD_ID, 0, 2, "train"], ["b", OTHER_ID, 0, 2, "val"]])
    code, _, err = run_script("download_kinetics.py", str(k), "--out", str(tmp_path / "out"))
    assert code == 2, err
    assert err.strip() == (
        "download_kinetics.py: error: yt-dlp is not installed: pip install -e '.[download]' or "
        "pip install yt-dlp"
    )
    assert not (tmp_path / "out").exists()  # nothing done: no retries, no output folder, no failures CSV
    # a mistyped CSV path is reported first: installing yt-dlp would not fix the run
    code, _, err = run_script(
        "download_kinetics.py", str(tmp_path / "trian.csv"), "--out", str(tmp_path / "out")
    )
    assert code == 2 and f"annotation CSV {tmp_path / 'trian.csv'} not found" in err and "yt-dlp" not in err
    with pytest.raises(DownloaderNotFound):
        download_kinetics(k, tmp_path / "out", progress=False)
    # an injected download function does not need yt-dlp
    summary = download_kinetics(
        k, tmp_path / "out", download_fn=FakeDownloader(tmp_path, always_fail={GOOD_ID, OTHER_ID}),
        workers=1, retries=0, progress=False,
    )  # fmt: skip
    assert len(summary.failed) == 2


def test_download_script_summary_names_the_failures_csv(
    tmp_path: Path, fake_yt_dlp: Path, source_video: Path
) -> None:
    gone, flaky = "gone_000001", "flaky_00001"
    k = write_csv(
        tmp_path / "k.csv",
        K_HEADER,
        [
            ["a", GOOD_ID, 1, 3, "train"],
            ["b", gone, 0, 2, "val"],
            ["b", flaky, 0, 2, "val"],
            ["c", "x", 0, 1, "val"],
        ],
    )
    out = tmp_path / "out"
    code, _, err = run_script(
        "download_kinetics.py",
        str(k),
        "--out",
        str(out),
        "--retries",
        "2",
        "--retry-wait",
        "0",
        "--workers",
        "1",
    )
    assert code == 1, err
    assert (out / "train" / "a" / f"{GOOD_ID}_000001_000003.mp4").is_file()  # through the real yt-dlp path
    assert "1 downloaded, 0 already present, 2 failed, 1 rejected rows" in err
    assert f"2 failed clips and 1 rejected rows listed with the reason in {out / 'failures.csv'}" in err
    assert "pass it back as input to retry" in err
    examples = [line for line in err.splitlines() if line.startswith("  e.g. ")]
    assert len(examples) == 2 and "Video unavailable" in examples[0] and "HTTP Error 429" in examples[1]
    # a removed video is tried once, a transient error 1 + retries times
    calls = fake_yt_dlp.read_text().split()
    assert calls.count(gone) == 1 and calls.count(flaky) == 3
    with open(out / "failures.csv", newline="") as f:
        errors = {r["youtube_id"]: r["error"] for r in csv.DictReader(f)}
    assert errors[gone].startswith("not retried, the video is gone") and "3 attempts" in errors[flaky]
    # rerun with the failures CSV as input: the clip already there is not fetched again, exit 1 again
    code, _, err = run_script(
        "download_kinetics.py",
        str(out / "failures.csv"),
        "--out",
        str(out),
        "--retries",
        "0",
        "--workers",
        "1",
    )
    assert code == 1 and "0 downloaded" in err and str(out / "failures.csv") in err


def test_video_gone_is_not_retried(tmp_path: Path, source_video: Path) -> None:
    class Gone(FakeDownloader):
        def __call__(self, youtube_id: str, dest: Path) -> Path:
            self.calls[youtube_id] = self.calls.get(youtube_id, 0) + 1
            raise VideoGone("Private video")

    fake = Gone(source_video)
    k = write_csv(tmp_path / "k.csv", K_HEADER, [["a", GOOD_ID, 0, 2, "train"]])
    s = download_kinetics(k, tmp_path / "o", download_fn=fake, retries=3, retry_wait=0, progress=False)
    assert fake.calls == {GOOD_ID: 1} and "Private video" in s.failed[0][1]
    assert s.failures_csv == (tmp_path / "o" / "failures.csv").absolute()
    assert f"listed with the reason in {s.failures_csv}" in s.report()


def test_download_upscaled_clips_are_reported(tmp_path: Path, source_video: Path) -> None:
    k = write_csv(tmp_path / "k.csv", K_HEADER, [["a", GOOD_ID, 0, 1, "train"]])
    s = download_kinetics(
        k, tmp_path / "o", download_fn=FakeDownloader(source_video), short_side=96, workers=1, progress=False
    )
    assert (
        len(s.upscaled) == 1
        and "1 clips were smaller than the target short side and were upscaled" in s.report()
    )


def _bad_download_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = write_csv(tmp_path / "good.csv", K_HEADER, [["a", GOOD_ID, 0, 2, "train"]])
    bad = write_csv(tmp_path / "bad.csv", ["label", "id"], [["x", GOOD_ID]])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir").mkdir()
    json_file = tmp_path / "kinetics_train.json"
    json_file.write_text('{"abcDEF123_-": {"annotations": {"label": "a", "segment": [0.0, 2.0]}}}')
    clash = write_csv(
        tmp_path / "clash.csv", K_HEADER, [["a b", GOOD_ID, 0, 1, "train"], ["a/b", OTHER_ID, 0, 1, "train"]]
    )
    out = ["--out", str(tmp_path / "out")]
    return {
        "missing": ([str(tmp_path / "nope.csv"), *out], f"annotation CSV {tmp_path / 'nope.csv'} not found"),
        "header": (
            [str(bad), *out],
            f"{bad}: missing columns youtube_id,time_start,time_end (expected the official Kinetics header "
            "label,youtube_id,time_start,time_end,split; found label,id)",
        ),
        "empty": ([str(empty), *out], "the file is empty"),
        "directory": ([str(tmp_path / "a_dir"), *out], "is a directory, not a CSV file"),
        "json": ([str(json_file), *out], "JSON annotations are not read; pass the CSV files"),
        "clash": ([str(clash), *out], "same folder name"),
        "out_is_file": ([str(good), "--out", str(tmp_path / "a_file")], "--out: "),
        "failures_is_dir": ([str(good), *out, "--failures", str(tmp_path / "a_dir")], "--failures: "),
        "bad_retries": ([str(good), *out, "--retries", "-1"], "argument --retries: must be >= 0"),
        "retry_wait_inf": (
            [str(good), *out, "--retry-wait", "inf"],
            "argument --retry-wait: must be a number",
        ),
        "no_rows_of_split": ([str(good), *out, "--split", "validate"], "no clips of split 'val' in"),
        "header_only": ([str(write_csv(tmp_path / "h.csv", K_HEADER, [])), *out], "list no clips"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "header",
        "empty",
        "directory",
        "json",
        "clash",
        "out_is_file",
        "failures_is_dir",
        "bad_retries",
        "retry_wait_inf",
        "no_rows_of_split",
        "header_only",
    ],  # fmt: skip
)
def test_download_script_bad_input_is_one_line(tmp_path: Path, fake_yt_dlp: Path, case: str) -> None:
    args, expected = _bad_download_inputs(tmp_path)[case]
    code, _, err = run_script("download_kinetics.py", *args)
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("download_kinetics.py: error: ") and expected in err, err
    assert not (tmp_path / "out").exists()


def test_make_filelists_script_bad_input(tmp_path: Path) -> None:
    (tmp_path / "ds" / "train" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "train" / "a" / "v.mp4").write_bytes(b"x")
    (tmp_path / "ds" / "train" / "b").mkdir()
    (tmp_path / "ds" / "train" / "b" / "v.mp4").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    ds = str(tmp_path / "ds")
    cases = [
        ([str(tmp_path / "nope")], f"dataset root {tmp_path / 'nope'} does not exist"),
        ([str(tmp_path / "a_file")], "is not a directory"),
        ([str(tmp_path / "empty")], "no split folders"),
        ([ds, "--splits", "train", "vall"], "split folder"),
        ([ds, "--splits", "train", "vall"], "(folders in"),
        ([ds, "--classes", str(tmp_path / "nope.txt")], "--classes: "),
        ([ds, "--classes", str(tmp_path / "dup.txt")], f"{tmp_path / 'dup.txt'} lists classes twice: ['a']"),
        ([ds, "--out-dir", str(tmp_path / "a_file")], "--out-dir: "),
    ]
    for args, expected in cases:
        code, _, err = run_script("make_filelists.py", *args)
        assert code == 2 and "Traceback" not in err and expected in err, (args, err)
    assert not list((tmp_path / "ds").glob("*.csv")) and not (tmp_path / "ds" / "classes.txt").exists()
    code, _, err = run_script("make_filelists.py", ds)
    assert code == 0 and f"classes: 2 (sorted class folder names) -> {tmp_path / 'ds' / 'classes.txt'}" in err


def test_make_synthetic_script_reuses_and_refuses(tmp_path: Path) -> None:
    code, out, _ = run_script("make_synthetic.py", "--help")
    assert "reused" in out and "must not exist" not in out
    args = ["--preset", "tiny", "--num-classes", "1", "--train-per-class", "1", "--val-per-class", "0",
            "--num-frames", "4", "--workers", "1"]  # fmt: skip
    root = tmp_path / "syn"
    code, _, err = run_script("make_synthetic.py", str(root), *args)
    assert code == 0 and "done in" in err, err
    code, _, err = run_script("make_synthetic.py", str(root), *args)
    assert code == 0 and "already holds this dataset" in err and "reused, nothing generated" in err, err
    code, _, err = run_script("make_synthetic.py", str(root), *args, "--seed", "5")
    assert code == 2 and "Traceback" not in err, err
    assert "seed: 0 there, 5 asked" in err
    assert "choose another root (or delete it if it is an old synthetic set you no longer need)" in err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user data")
    (tmp_path / "a_file").write_text("x")
    for target, expected in (
        ("mine", "not an empty directory (and holds no synthetic dataset)"),
        ("a_file", "exists and is not a directory"),
        ("a_file/sub", "is a file, not a directory"),
    ):
        code, _, err = run_script("make_synthetic.py", str(tmp_path / target), *args)
        assert code == 2 and expected in err and "Traceback" not in err, err
        assert "SyntheticSpec(" not in err  # refused before announcing any work
    assert (tmp_path / "mine" / "notes.txt").read_text() == "user data"


def test_verify_script_default_bad_csv_is_beside_the_target(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    make_video(ds / "train" / "a" / "good.mp4", seconds=1.0)
    (ds / "train" / "a" / "broken.mp4").write_text("not a video")
    code, out, _ = run_script("verify_videos.py", "--help")
    assert "<folder>_bad_videos.csv next to the folder" in " ".join(out.split())
    code, _, err = run_script("verify_videos.py", str(ds), "--workers", "1")
    assert code == 1, err
    bad_csv = tmp_path / "ds_bad_videos.csv"
    assert f"1 bad files listed in {bad_csv}" in err and "e.g. " in err
    assert sorted(p.name for p in ds.iterdir()) == ["train"]  # nothing written into the dataset
    with open(bad_csv, newline="") as f:
        assert [Path(r["path"]).name for r in csv.DictReader(f)] == ["broken.mp4"]
    # a list: <stem>_bad_videos.csv beside it (so train and val lists do not overwrite each other)
    (ds / "train.csv").write_text("train/a/good.mp4 0\ntrain/a/broken.mp4 0\n")
    code, _, err = run_script("verify_videos.py", str(ds / "train.csv"), "--workers", "1")
    assert code == 1 and f"listed in {ds / 'train_bad_videos.csv'}" in err and "--clean-csv" in err


def test_verify_script_bad_input(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    kinetics = write_csv(tmp_path / "train.csv", K_HEADER, [["a", GOOD_ID, 0, 1, "train"]])
    (tmp_path / "lst.csv").write_text("train/a/x.mp4 0\n")
    cases = [
        ([str(tmp_path / "nope")], "does not exist"),
        ([str(tmp_path / "empty")], "no video files under"),
        ([str(kinetics)], "header of an official Kinetics annotation CSV"),
        ([str(tmp_path / "lst.csv")], "none of the 1 files listed"),
        ([str(tmp_path / "lst.csv"), "--root", str(tmp_path / "nope")], "--root"),
        ([str(tmp_path / "empty"), "--bad", str(tmp_path / "empty")], "--bad: "),
        ([str(tmp_path / "empty"), "--clean-csv", "x.csv"], "--clean-csv needs a list file"),
        ([str(tmp_path / "lst.csv"), "--frames", "0"], "argument --frames: must be >= 1"),
    ]
    for args, expected in cases:
        code, _, err = run_script("verify_videos.py", *args)
        assert code == 2 and "Traceback" not in err and expected in err, (args, err)
    assert not list(tmp_path.glob("*bad_videos.csv"))


def test_unwritable_outputs_fail_at_start_up(tmp_path: Path) -> None:
    """An output the user may not write (a read-only shared dataset folder, where verify_videos.py puts its
    default bad-file list) is an error before any file is checked or listed, not a traceback at the end."""
    import os
    import shutil
    import subprocess

    videos = tmp_path / "videos"
    make_video(videos / "train" / "a" / "x.mp4", seconds=0.5, size=(48, 40))
    videos.joinpath("train", "a").chmod(0o555)
    videos.joinpath("train").chmod(0o555)
    videos.chmod(0o555)
    prefix = []
    if os.access(videos, os.W_OK):  # root: drop the capabilities that let it write anywhere
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a folder unwritable")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]
    cases = [
        (
            ["verify_videos.py", str(videos / "train"), "--bad", str(videos / "bad.csv")],
            "--bad: cannot create",
        ),
        (["make_filelists.py", str(videos)], f"{videos} is not writable"),
        (
            ["make_filelists.py", str(tmp_path), "--out-dir", str(videos / "lists")],
            "--out-dir: cannot create",
        ),
    ]
    try:
        for (script, *args), expected in cases:
            cmd = [*prefix, sys.executable, str(SCRIPTS / script), *args]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            assert proc.returncode == 2 and expected in proc.stderr, (script, proc.stderr)
            assert "Traceback" not in proc.stderr and "/1 (" not in proc.stderr, proc.stderr  # no progress
    finally:
        for d in (videos, videos / "train", videos / "train" / "a"):
            d.chmod(0o755)
    assert not (videos / "bad.csv").exists() and not (videos / "train.csv").exists()


def test_resize_script_reports_upscaling_and_refuses_bad_folders(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_video(src / "train" / "a" / "small.mp4", seconds=0.5, size=(48, 40))
    make_video(src / "train" / "a" / "big.mp4", seconds=0.5, size=(96, 128))
    code, _, err = run_script(
        "resize_videos.py", str(src), str(tmp_path / "dst"), "--short-side", "64", "--workers", "1"
    )
    assert code == 0, err
    assert "2 resized, 0 already done, 0 failed" in err
    assert "1 videos were smaller than the target (64 px short side) and were upscaled" in err
    assert "small.mp4 (40x48 -> 64x76)" in err
    assert probe(tmp_path / "dst" / "train" / "a" / "small.mp4")[1:3] == (76, 64)
    # --no-upscale keeps the small one at its size
    code, _, err = run_script(
        "resize_videos.py",
        str(src),
        str(tmp_path / "keep"),
        "--short-side",
        "64",
        "--no-upscale",
        "--workers",
        "1",
    )
    assert code == 0 and "were kept at their size (--no-upscale)" in err, err
    assert probe(tmp_path / "keep" / "train" / "a" / "small.mp4")[1:3] == (48, 40)
    assert probe(tmp_path / "keep" / "train" / "a" / "big.mp4")[1:3] == (64, 86)
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("x")
    cases = [
        ([str(tmp_path / "nope"), str(tmp_path / "o")], "source folder"),
        ([str(tmp_path / "a_file"), str(tmp_path / "o")], "is not a directory"),
        ([str(tmp_path / "empty"), str(tmp_path / "o")], "no video files under"),
        ([str(src), str(src)], "must differ from the source folder"),
        ([str(src), str(src / "out")], "lies inside the source folder"),
        ([str(src), str(tmp_path / "a_file")], "exists and is not a directory"),
        ([str(src), str(tmp_path / "dst"), "--short-side", "32"], "resized with {'short_side': 64"),
        ([str(src), str(tmp_path / "o"), "--short-side", "0"], "argument --short-side: must be >= 2"),
        ([str(src), str(tmp_path / "o"), "--preset", "speedy"], "invalid choice"),
    ]
    for args, expected in cases:
        code, _, err = run_script("resize_videos.py", *args)
        assert code == 2 and "Traceback" not in err and expected in err, (args, err)
    assert not (tmp_path / "o").exists() and not (src / "out").exists()


def test_resize_tree_reports_an_output_name_clash(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_video(src / "a" / "v.mp4", seconds=0.5)
    (src / "a" / "v.webm").write_bytes((src / "a" / "v.mp4").read_bytes())  # same output a/v.mp4
    r = resize_tree(src, tmp_path / "dst", short_side=32, workers=1, progress=False)
    assert [Path(p).name for p in r["done"]] == ["v.mp4"]
    assert (
        len(r["failed"]) == 1 and "same output" in r["failed"][0][1] and r["failed"][0][0].endswith("v.webm")
    )


@pytest.mark.parametrize("suffix", [".ts", ".mkv", ".mp4"])
def test_transcode_cut_starts_at_the_asked_frame(tmp_path: Path, suffix: str) -> None:
    # An MPEG-TS seek can land after the cut's start; the cut must still begin exactly there.
    from video_fixtures import read_index

    src = write_video(tmp_path / f"src{suffix}", num_frames=150, fps=25, gop=12)
    for start, end in ((1.0, 3.0), (4.4, 6.0)):
        info = transcode(src, tmp_path / "cut.mp4", start=start, end=end, short_side=64)
        with av.open(str(tmp_path / "cut.mp4")) as c:
            got = [read_index(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
        assert info["frames"] == len(got) == round((end - start) * 25), (suffix, start)
        assert (got[0], got[-1]) == (round(start * 25), round(end * 25) - 1), (suffix, start)


def _sigint_handler_is_ignored(_) -> bool:
    import signal

    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_ctrl_c_in_a_script_is_one_line_and_workers_leave_it_to_the_parent(capsys) -> None:
    """Ctrl-C reaches every process of the terminal's group: pool workers ignore it (the parent stops the
    map and the items in progress finish cleanly, without a traceback per worker), and a script prints one
    line saying what to do next and exits 130."""
    from video_gn.data.progress import parallel_map, run_script

    assert parallel_map(_sigint_handler_is_ignored, [0, 1], workers=2, progress=False) == [True, True]

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_script(interrupted, "rerun the same command to resume") == 130
    assert capsys.readouterr().err.strip() == "interrupted: rerun the same command to resume"
    assert run_script(lambda: 1, "unused") == 1


def test_a_stopping_download_run_starts_no_further_attempt(tmp_path: Path) -> None:
    """Ctrl-C reaches yt-dlp too, which then looks like an ordinary failure: the downloads in progress must
    not be retried (with the default waits that kept a Ctrl-C'd run alive for minutes)."""
    import threading

    calls: list[str] = []
    lock = threading.Lock()

    def download(youtube_id: str, work: Path) -> Path:
        with lock:
            calls.append(youtube_id)
        if youtube_id.startswith("b"):
            time.sleep(0.3)
            raise KeyboardInterrupt  # what Ctrl-C raises in the run
        raise RuntimeError("yt-dlp killed by SIGINT")  # what the killed downloader looks like

    rows = [["x", "a" * 11, 0, 1, "train"], ["x", "b" * 11, 0, 1, "train"]]
    k = write_csv(tmp_path / "k.csv", ["label", "youtube_id", "time_start", "time_end", "split"], rows)
    with pytest.raises(KeyboardInterrupt):
        download_kinetics(k, tmp_path / "o", download_fn=download, workers=2, retries=3, retry_wait=0.5,
                          progress=False)  # fmt: skip
    assert calls.count("a" * 11) <= 2  # without the stop: 4 attempts (0.5 + 1 + 1.5 s of waits)

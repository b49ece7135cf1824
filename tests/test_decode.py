"""Frame-exact decoding: the frames returned are exactly the requested indices, after seeking, in any GOP."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from video_fixtures import (
    index_frame,
    read_index,
    remux_faststart,
    write_corrupt,
    write_rotated_video,
    write_video,
)

from video_gn.data import DecodeError, clip_indices, decode_frames, load_video_views, probe_video
from video_gn.data.sampler import UniformWindows
from video_gn.data.transforms import eval_transform


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    """300-frame videos: GOP 30 and x264's default GOP (250), both with B-frames; and a GOP-12 MKV."""
    d = tmp_path_factory.mktemp("long")
    return {
        "gop30": write_video(d / "gop30.mp4", num_frames=300, gop=30),
        "gop_default": write_video(d / "gop_default.mp4", num_frames=300, gop=None),
        "mkv_gop12": write_video(d / "gop12.mkv", num_frames=300, gop=12),
    }


def _decoded_indices(frames: torch.Tensor) -> list[int]:
    return [read_index(f.numpy()) for f in frames]


def test_clip_indices_reference():
    assert clip_indices(3, 4, 5, 100).tolist() == [3, 8, 13, 18]
    # Looping: a 10-frame video and a window of 8 x 2 wraps around.
    assert clip_indices(0, 8, 2, 10).tolist() == [0, 2, 4, 6, 8, 0, 2, 4]
    with pytest.raises(ValueError, match="total_frames"):
        clip_indices(0, 4, 1, 0)


@pytest.mark.parametrize("name", ["gop30", "gop_default", "mkv_gop12"])
def test_decoded_frames_are_the_requested_ones(long_videos, name):
    path = long_videos[name]
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.height, info.width) == (300, 30.0, 64, 96)
    for start in (0, 1, 29, 30, 31, 59, 61, 137, 240, 251, 299):
        for num_frames, rate in ((8, 8), (32, 2), (16, 1), (1, 1)):
            want = clip_indices(start, num_frames, rate, info.num_frames)
            frames, got_info = decode_frames(path, want)
            assert frames.dtype == torch.uint8 and frames.shape == (num_frames, 64, 96, 3)
            assert got_info == info
            assert _decoded_indices(frames) == want.tolist(), (name, start, num_frames, rate)


@pytest.mark.parametrize(
    ("fps", "suffix"), [(Fraction(30000, 1001), ".mp4"), (25, ".mp4"), (25, ".webm"), (24, ".mkv")]
)
def test_frame_exact_at_other_frame_rates(tmp_path, fps, suffix):
    # Seeking goes through timestamps: NTSC's 29.97 and the 25 / 24 fps of film and PAL must land exactly too.
    codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
    path = write_video(tmp_path / f"v{suffix}", num_frames=120, fps=fps, gop=12, codec=codec)
    info = probe_video(path)
    assert info.num_frames == 120 and abs(info.fps - float(fps)) < 1e-3
    for start in (0, 11, 12, 13, 50, 97, 119):
        for num_frames, rate in ((8, 2), (4, 5), (1, 1)):
            want = clip_indices(start, num_frames, rate, info.num_frames)
            frames, _ = decode_frames(path, want)
            assert _decoded_indices(frames) == want.tolist(), (fps, suffix, start, num_frames, rate)


def test_unsorted_and_repeated_indices(long_videos):
    want = [200, 3, 3, 150, 299, 0]
    frames, _ = decode_frames(long_videos["gop30"], want)
    assert _decoded_indices(frames) == want


def test_indices_from_callable(long_videos):
    seen = []

    def pick(info):
        seen.append(info.num_frames)
        return [info.num_frames - 1]

    frames, _ = decode_frames(long_videos["gop30"], pick)
    assert seen == [300] and _decoded_indices(frames) == [299]


class _CountingContainer:
    """Wraps a PyAV input container and records the frame number of every packet ``demux`` yields."""

    def __init__(self, container, log: list[list[int | None]]) -> None:
        self._container, self._log = container, log

    def __getattr__(self, name):
        return getattr(self._container, name)

    def __enter__(self):
        self._container.__enter__()
        return self

    def __exit__(self, *exc):
        return self._container.__exit__(*exc)

    def demux(self, *args, **kwargs):
        run: list[int | None] = []  # packet pts, in decode order, one list per demux pass
        self._log.append(run)
        for packet in self._container.demux(*args, **kwargs):
            run.append(packet.pts)
            yield packet


# Packets read after the last needed frame: x264 B-frames (bf=2) put the next P-frame up to 3 frames
# ahead in decode order, and the decoder's reorder delay holds back output by a packet or two more.
_REORDER_MARGIN = 6


@pytest.mark.parametrize("name", ["gop30", "gop_default", "mkv_gop12"])
@pytest.mark.parametrize(("start", "num_frames", "rate"), [(251, 8, 2), (251, 16, 1), (137, 8, 8)])
def test_decoding_reads_only_from_the_key_frame_before_the_window_to_its_end(
    long_videos, monkeypatch, name, start, num_frames, rate
):
    """Seek to the nearest key frame at or before the window, stop right after its last needed frame.

    Every packet that ``decode_frames`` pulls out of the demuxer is counted (a spy on ``av.open``'s
    container), so neither decoding from the start nor decoding on to the end of the file can pass.
    """
    import av

    path = long_videos[name]
    with av.open(str(path)) as c:  # reference: the key frames, numbered by pts, from a full demux
        s = c.streams.video[0]
        start_pts, scale = s.start_time or 0, float(s.time_base) * 30
        keys = [round((p.pts - start_pts) * scale) for p in c.demux(s) if p.pts is not None and p.is_keyframe]
    want = clip_indices(start, num_frames, rate, 300)
    first, last = int(want.min()), int(want.max())
    key_before = max(k for k in keys if k <= first)

    log: list[list[int | None]] = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: _CountingContainer(real_open(*a, **k), log))
    frames, _ = decode_frames(path, want)
    monkeypatch.undo()
    assert _decoded_indices(frames) == want.tolist()

    # Matroska counts no frames: a pass (once per file and process) demuxes only the last GOP to count them.
    frames_of = [[round((pts - start_pts) * scale) for pts in run if pts is not None] for run in log]
    counting = [run for run in frames_of if run and min(run) == keys[-1] and max(run) == 299]
    assert name.startswith("mkv") or not counting
    log = [run for run, numbers in zip(log, frames_of) if numbers not in counting]
    read = [round((pts - start_pts) * scale) for run in log for pts in run if pts is not None]
    assert read, "the spy saw no packets: decode_frames no longer reads through container.demux"
    where = f"{name}: window {first}..{last}, key frame {key_before}, packets read {sorted(read)}"
    assert min(read) == key_before, where  # seeked to the nearest key frame before the window
    assert max(read) <= last + _REORDER_MARGIN, where  # stopped after the window
    # In all: at most the frames from that key frame to the window's end (about GOP + window span).
    assert len(read) <= last - key_before + 1 + _REORDER_MARGIN, where


@pytest.mark.parametrize("thread_type", ["SLICE", "FRAME", "AUTO"])
def test_thread_settings_do_not_change_frames(long_videos, thread_type):
    want = clip_indices(100, 8, 4, 300)
    frames, _ = decode_frames(long_videos["gop_default"], want, thread_type=thread_type, thread_count=2)
    assert _decoded_indices(frames) == want.tolist()


def test_short_video_loops(tmp_path):
    path = write_video(tmp_path / "short.mp4", num_frames=10, gop=5)
    want = clip_indices(0, 8, 2, probe_video(path).num_frames)
    frames, _ = decode_frames(path, want)
    assert _decoded_indices(frames) == [0, 2, 4, 6, 8, 0, 2, 4]


def test_other_codecs_and_containers(tmp_path):
    for name, codec in (("a.avi", "mpeg4"), ("b.webm", "libvpx")):
        path = write_video(tmp_path / name, num_frames=40, gop=10, codec=codec)
        want = clip_indices(13, 5, 4, probe_video(path).num_frames)
        frames, _ = decode_frames(path, want)
        assert _decoded_indices(frames) == want.tolist(), name


@pytest.mark.parametrize("kind", ["empty", "garbage", "text", "truncated", "audio"])
def test_bad_files_raise_decode_error_naming_the_file(tmp_path, kind):
    good = write_video(tmp_path / "good.mp4", num_frames=60, pattern="noise")
    bad = write_corrupt(tmp_path / f"bad_{kind}.mp4", kind, source=good)
    with pytest.raises(DecodeError, match=f"bad_{kind}"):
        frames, _ = decode_frames(bad, clip_indices(30, 8, 2, 60))
        # A truncated file may open and decode its surviving prefix; it must not pass as a full clip.
        raise AssertionError(f"decoded {tuple(frames.shape)} from a {kind} file")


@pytest.mark.parametrize(("image_format", "demuxer"), [("JPEG", "jpeg_pipe"), ("PNG", "png_pipe")])
def test_a_still_image_under_a_video_name_is_not_a_video(tmp_path, image_format, demuxer):
    """FFmpeg opens a photo saved as .mp4 as a one-frame stream: refused by the loader and by verify_videos."""
    from PIL import Image

    from video_gn.data.verify import verify_video

    photo = tmp_path / "photo.mp4"
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(photo, format=image_format)
    with av.open(str(photo)) as c:
        assert c.format.name == demuxer and c.streams.video  # what made it pass before
    with pytest.raises(DecodeError, match=f"photo.mp4: a still image \\({demuxer} format\\), not a video"):
        probe_video(photo)
    with pytest.raises(DecodeError, match="a still image"):
        decode_frames(photo, [0])
    check = verify_video(photo)
    assert not check.ok and "still image" in check.error


def test_truncated_data_with_intact_header(tmp_path):
    """moov first (faststart), media data cut: frames before the cut decode, windows after it fail."""
    import av

    src = write_video(tmp_path / "src.mp4", num_frames=90, gop=10, pattern="noise")
    fast = remux_faststart(src, tmp_path / "fast.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(fast.read_bytes()[: int(fast.stat().st_size * 0.5)])
    assert probe_video(cut).num_frames == 90  # the header still announces every frame
    frames, _ = decode_frames(cut, [0, 5, 10])
    assert frames.shape[0] == 3
    with pytest.raises(DecodeError, match="cut.mp4: truncated video") as exc:
        decode_frames(cut, [80, 85])
    # Nothing decodes after the seek (an MPEG-TS seek can overshoot too, so the start is tried as well):
    # the message must not claim the stream "ends at frame 0", and says what failed.
    message = str(exc.value)
    assert "ends at frame 0" not in message
    assert (
        "truncated video: no frame decodes from the key frame before frame 80 on, and decoding from the "
        in message
    )
    # Cut exactly before packet 60 (of 90, in decode order): decoding from the start runs out after frame
    # 59, and the message names it.
    with av.open(str(fast)) as c:
        positions = [p.pos for p in c.demux(video=0) if p.dts is not None]
    clean = tmp_path / "clean_cut.mp4"
    clean.write_bytes(fast.read_bytes()[: positions[60]])
    with av.open(str(clean)) as c:  # reference: a plain sequential decode of what is left, numbered by pts
        s = c.streams.video[0]
        last = max(round((f.pts - (s.start_time or 0)) * s.time_base * 30) for f in c.decode(s))
    assert 50 <= last < 70
    with pytest.raises(DecodeError) as exc:
        decode_frames(clean, [0, 85])
    assert str(exc.value).endswith(
        f"truncated video: the header announces 90 frames, but the last frame that decodes is frame {last} "
        "(frame 85 was asked for)"
    )


def test_load_video_views_matches_eval_transform(tmp_path):
    path = write_video(tmp_path / "v.mp4", num_frames=90, width=80, height=48)
    views = load_video_views(
        path, num_frames=4, sampling_rate=3, num_clips=3, num_crops=3, short_side=40, crop_size=32
    )
    assert views.shape == (9, 3, 4, 32, 32) and views.dtype == torch.float32
    windows = UniformWindows(4, 3, 3)
    info = probe_video(path)
    for k in range(3):
        frames, _ = decode_frames(path, windows(info, k))
        clip = frames.permute(0, 3, 1, 2)
        for c in range(3):
            ref = eval_transform(short_side=40, crop_size=32, crop_index=c, num_crops=3)(clip)
            torch.testing.assert_close(views[k * 3 + c], ref, rtol=0, atol=0)
    # Windows spread from the first to the last possible start (90 frames, span 10: starts 0, 40, 80).
    assert [int(windows(info, k)[0]) for k in range(3)] == [0, 40, 80]
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        load_video_views(tmp_path / "nope.mp4")


@pytest.mark.parametrize("thread_count", [1, 0])
@pytest.mark.parametrize("options", [{"preset": "veryfast", "bf": "2"}, {"preset": "medium", "bf": "3"}])
def test_decoded_pixels_match_a_full_sequential_decode(tmp_path, options, thread_count):
    """Seeking, skipping unneeded non-reference frames and the clip's one reused RGB converter give
    bit-identical pixels to a full decode converted frame by frame with PyAV's ``to_ndarray``."""
    import av

    path = write_video(tmp_path / "noise.mp4", num_frames=120, gop=30, pattern="noise", options=options)
    with av.open(str(path)) as c:
        every = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    for start, num_frames, rate in ((47, 6, 7), (0, 8, 8), (61, 30, 2), (33, 40, 1), (100, 5, 5)):
        want = clip_indices(start, num_frames, rate, 120)
        frames, _ = decode_frames(path, want, thread_count=thread_count)
        np.testing.assert_array_equal(frames.numpy(), every[want])


# ---------------------------------------------------------------- containers whose headers or seeks mislead


@pytest.mark.parametrize(("name", "codec"), [("v.ts", "libx264"), ("v.mpg", "mpeg2video")])
def test_mpeg_ts_and_ps_are_frame_exact(tmp_path, name, codec):
    # Their seeks are bisections by timestamp and land off the key frame, in either direction; "seeking to
    # the start" lands several frames in. Every window must still come back exact, and verify must pass.
    from video_gn.data.verify import verify_video

    path = write_video(tmp_path / name, num_frames=120, gop=12, codec=codec)
    info = probe_video(path)
    assert info.num_frames == 120
    for want in ([0, 1, 2], [10], [40, 48], [100], [110, 119]):
        frames, _ = decode_frames(path, want)
        assert _decoded_indices(frames) == want, (name, want)
    check = verify_video(path)
    assert check.ok, check.error


def _stream_copy_cut(src, dst, cut_frame: int, fps: int) -> None:
    """What ``ffmpeg -ss T -i src -c copy dst`` writes: packets from the key frame before T, timestamps shifted
    so that T is 0; the MP4 muxer hides the pre-roll (negative times) with an edit list."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        ticks = int(1 / (stream.time_base * fps))
        packets = [p for p in inp.demux(stream) if p.size and p.pts is not None and p.dts is not None]
        key = max(p.pts for p in packets if p.is_keyframe and p.pts <= cut_frame * ticks)
        ostream = out.add_stream_from_template(stream)
        for p in packets:
            if p.dts >= key - 2 * ticks:
                p.pts, p.dts, p.stream = p.pts - cut_frame * ticks, p.dts - cut_frame * ticks, ostream
                out.mux(p)


def test_stream_copied_cut_counts_only_the_frames_its_edit_list_shows(tmp_path):
    from video_gn.data.verify import verify_video

    src = write_video(tmp_path / "src.mp4", num_frames=120, fps=25, gop=12)
    cut = tmp_path / "cut.mp4"
    _stream_copy_cut(src, cut, cut_frame=30, fps=25)  # key frame at 24: 6 pre-roll frames in the file
    with av.open(str(cut)) as c:
        assert c.streams.video[0].frames > 90  # the header counts the hidden pre-roll
    assert probe_video(cut).num_frames == 90
    frames, _ = decode_frames(cut, [0, 1, 88, 89])
    assert _decoded_indices(frames) == [30, 31, 118, 119]
    check = verify_video(cut)
    assert check.ok and check.num_frames == 90, check


def _write_timed(
    path, pts: list[int], time_base: Fraction, *, fmt: str | None = None, codec="libx264", raw=None
):
    """Frames i = 0.. at the given pts (no B-frames), into ``path`` or the file object ``raw``."""
    with av.open(raw if raw is not None else str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = 5
        if codec == "libx264":
            stream.options = {"bf": "0"}
        for i, t in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(index_frame(i, 64, 96), format="rgb24")
            frame.pts, frame.time_base = t, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_matroska_without_frame_count_is_counted_from_its_packets(tmp_path):
    # Matroska gives no frame count; its segment duration is an end time (here 5 s offset + 1.2 s), and a live
    # recording (muxed to a pipe) has no duration at all. Both are 30 frames.
    import io

    from video_gn.data.verify import verify_video

    offset = tmp_path / "offset.mkv"
    _write_timed(offset, [5000 + 40 * i for i in range(30)], Fraction(1, 1000))

    class Pipe(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def writable(self):
            return True

        def write(self, b):
            return self.f.write(b)

    live = tmp_path / "live.webm"
    with open(live, "wb") as f:
        _write_timed(
            None, [40 * i for i in range(30)], Fraction(1, 1000), fmt="webm", codec="libvpx", raw=Pipe(f)
        )
    for path in (offset, live):
        assert probe_video(path).num_frames == 30, path
        frames, _ = decode_frames(path, [0, 17, 29])
        assert _decoded_indices(frames) == [0, 17, 29], path
        check = verify_video(path)
        assert check.ok and check.num_frames == 30, check


def test_a_codec_without_decoder_is_a_decode_error(tmp_path):
    from video_gn.data.verify import verify_video

    src = write_video(tmp_path / "src.mkv", num_frames=10)
    data = src.read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    bad = tmp_path / "unknown_codec.mkv"
    bad.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/AVX"))
    for read in (probe_video, lambda p: decode_frames(p, [0, 1])):
        with pytest.raises(DecodeError, match="unknown_codec.mkv: no decoder"):
            read(bad)
    check = verify_video(bad)
    assert not check.ok and "no decoder" in check.error


@pytest.mark.parametrize(("degrees", "bright"), [(-90, "top"), (90, "bottom"), (180, "right")])
def test_rotated_videos_are_decoded_upright(tmp_path, degrees: int, bright: str) -> None:
    """A phone video stores its frames on their side plus a display matrix; the loader turns them upright,
    as players and ``resize_videos.py`` do (before, training saw them sideways or upside down)."""
    src = write_rotated_video(tmp_path / "phone.mp4", degrees, num_frames=12)
    if src is None:
        pytest.skip("this PyAV/FFmpeg cannot write or read back a display matrix")
    frames, _ = decode_frames(src, [0, 5, 5, 11])
    assert frames.shape == ((4, 96, 64, 3) if degrees % 180 else (4, 64, 96, 3))
    img = frames[0].float()
    h, w = img.shape[:2]
    halves = {"top": img[: h // 2], "bottom": img[h // 2 :], "right": img[:, w // 2 :]}
    assert halves[bright].mean() > 230 and img.mean() == pytest.approx(127.5, abs=10)
    assert torch.equal(frames[1], frames[2])

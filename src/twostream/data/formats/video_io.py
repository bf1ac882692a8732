"""Read the few frames a clip needs, from a video file or from a folder of pre-extracted frames;
write mp4s (the synthetic video data and the test fixtures).

Why decoding matters: a 10 s clip at 30 fps has 300 frames and the model sees 8-12 of them, so
decoding and colour-converting every frame wastes most of a data-loader worker (PITFALLS 10).

Why PyAV and not ``torchvision.io``: the torchvision installed here (0.28) no longer ships video
decoding — ``read_video``/``VideoReader`` were deprecated in 0.22 and removed in 0.24 (``from
torchvision.io import read_video`` raises ImportError) — and PyAV exposes exactly what sampled
decoding needs: the container's keyframe index, seeking, and per-frame decode without conversion.
PyAV is a declared dependency.

Sampling (TSN-style): the video is cut into ``num_frames`` equal segments; training takes a random
frame of each segment (offsets from a generator the caller seeds, e.g. with the sample key, so a
resumed run reads the same frames), evaluation takes each segment's centre.

Decoding plan: targets are visited in order; we seek (to the keyframe at or before the target)
only when the container index shows a keyframe between the last decoded frame and the target —
otherwise decoding forward is cheaper — and stop as soon as the last target is reached. Only
targets are converted to RGB.

Frames come out as uint8 arrays [T, H, W, 3]; turning them into model input (resize, crop,
normalise) is :class:`~twostream.data.datamodules.transforms.ClipTransform`'s job.
"""
from __future__ import annotations

import bisect
import os
import random
from dataclasses import dataclass
from pathlib import Path

import av
from av.error import FFmpegError
import numpy as np
from PIL import Image

from twostream.data.health import SkipReason

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
_CONTINUE_WITHIN = 30  # without a keyframe index: decode forward (not seek) to targets this close


class VideoSkip(Exception):
    """This video cannot give a clip; ``reason`` is a :class:`SkipReason` value."""

    def __init__(self, reason: str, path: str | os.PathLike, detail: str) -> None:
        super().__init__(f"{reason}: {path}: {detail}")
        self.reason, self.path, self.detail = reason, str(path), detail


@dataclass
class DecodeStats:
    """How much work a read did (tests and the benchmark check that little is decoded)."""

    decoded: int = 0  # frames the codec produced
    converted: int = 0  # frames converted to RGB
    seeks: int = 0


def sample_frame_indices(num_available: int, num_frames: int, rng: random.Random | None = None) -> list[int]:
    """``num_frames`` indices in [0, num_available): one per equal segment, random (rng) or centred.

    Shorter videos repeat frames, so every clip has exactly ``num_frames`` frames.
    """
    if num_available < 1 or num_frames < 1:
        raise ValueError(f"need num_available >= 1 and num_frames >= 1, got {num_available}, {num_frames}")
    width = num_available / num_frames
    offsets = [0.5] * num_frames if rng is None else [rng.random() for _ in range(num_frames)]
    return [min(num_available - 1, int((i + u) * width)) for i, u in enumerate(offsets)]


# ----------------------------------------------------------------------------- video files
@dataclass(frozen=True)
class _Timeline:
    """Frame index <-> pts for a constant-rate stream (pts units per frame may be fractional)."""

    start: int
    step: float

    def pts(self, index: int) -> int:
        return self.start + int(round(index * self.step))

    def index(self, pts: int) -> int:
        return int(round((pts - self.start) / self.step))


def _open(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise VideoSkip(SkipReason.MISSING_FILE, path, "no such file")
    if os.path.getsize(path) == 0:
        raise VideoSkip(SkipReason.EMPTY_VIDEO, path, "file is 0 bytes")
    try:
        container = av.open(path)
    except (FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoSkip(SkipReason.UNDECODABLE_VIDEO, path, f"cannot open: {e}") from None
    if not container.streams.video:
        container.close()
        raise VideoSkip(SkipReason.EMPTY_VIDEO, path, "no video stream")
    return container


def _frame_count(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Frames in the stream: the container's count, else duration x rate, else a demux-only count."""
    if stream.frames > 0:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if rate and stream.duration and stream.time_base:
        return int(round(float(stream.duration * stream.time_base * rate)))
    if rate and container.duration:
        return int(round(container.duration / av.time_base * float(rate)))
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def _timeline(stream: av.video.stream.VideoStream) -> _Timeline | None:
    rate = stream.average_rate or stream.guessed_rate
    if not rate or not stream.time_base:
        return None
    return _Timeline(int(stream.start_time or 0), float(1 / (rate * stream.time_base)))


def _keyframes(stream: av.video.stream.VideoStream, timeline: _Timeline) -> list[int] | None:
    """Keyframe indices from the container index (no decoding, no I/O: mp4 keeps it in memory).

    Index timestamps are decode times; the first entry's offset to the start pts is the B-frame
    delay. Only used to decide seek-or-continue, so being slightly off costs time, not frames.
    """
    entries = getattr(stream, "index_entries", None)
    if not entries:
        return None
    delay = timeline.start - entries[0].timestamp
    keys = sorted({timeline.index(e.timestamp + delay) for e in entries if e.is_keyframe})
    return keys or None


def _should_seek(pos: int | None, target: int, keyframes: list[int] | None) -> bool:
    """Seek iff it skips decoding: a keyframe lies in (pos, target] (or, with no index, it is far)."""
    if pos is None:
        return True
    if pos >= target:
        return False
    if keyframes is None:
        return target - pos > _CONTINUE_WITHIN
    return bisect.bisect_right(keyframes, target) > bisect.bisect_right(keyframes, pos)


def _decode_targets(container, stream, targets: list[int], timeline: _Timeline | None,
                    stats: DecodeStats) -> dict[int, np.ndarray]:
    """RGB arrays for ``targets``; stops at the last one. At the end of a short stream the last
    decoded frame stands in for the targets past it. Without a frame rate (no timeline) frames are
    counted from the start instead of seeking."""
    keyframes = _keyframes(stream, timeline) if timeline else None
    wanted, out = sorted(set(targets)), {}
    frames, pos, last, i = None, None, None, 0
    while i < len(wanted):
        if frames is None or (timeline and _should_seek(pos, wanted[i], keyframes)):
            if timeline:
                container.seek(timeline.pts(wanted[i]), stream=stream, backward=True)
                stats.seeks += 1
            frames = container.decode(stream)
        reached = False
        for frame in frames:
            stats.decoded += 1
            known = timeline is not None and frame.pts is not None
            pos, last = timeline.index(frame.pts) if known else (0 if pos is None else pos + 1), frame
            if pos >= wanted[i]:
                image = frame.to_ndarray(format="rgb24")
                stats.converted += 1
                while i < len(wanted) and wanted[i] <= pos:
                    out[wanted[i]], i = image, i + 1
                reached = True
                break
        if not reached:  # end of stream
            break
    if i < len(wanted) and last is not None:
        image = last.to_ndarray(format="rgb24")
        out.update({t: image for t in wanted[i:]})
    return out


def _read_video_file(path: str, num_frames: int, rng: random.Random | None, stats: DecodeStats,
                     threads: int) -> np.ndarray:
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        total = _frame_count(container, stream)
        if total < 1:
            raise VideoSkip(SkipReason.EMPTY_VIDEO, path, "the video stream has no frames")
        indices = sample_frame_indices(total, num_frames, rng)
        frames = _decode_targets(container, stream, indices, _timeline(stream), stats)
    if not frames:
        raise VideoSkip(SkipReason.EMPTY_VIDEO, path, "no frame could be decoded")
    return np.stack([frames[i] for i in indices])


def decode_all_frames(path: str | os.PathLike, threads: int = 1) -> np.ndarray:
    """Every frame as RGB [N, H, W, 3]: the naive reader, kept as the benchmark's baseline."""
    with _open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise VideoSkip(SkipReason.EMPTY_VIDEO, path, "no frame could be decoded")
    return np.stack(frames)


# ----------------------------------------------------------------------------- frame folders
def frame_files(folder: str | os.PathLike) -> list[str]:
    """Image files of a pre-extracted frames folder, in name order (``000001.jpg`` ...)."""
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(FRAME_EXTENSIONS))
    return [os.path.join(folder, n) for n in names]


def _read_frame_folder(folder: str, num_frames: int, rng: random.Random | None, stats: DecodeStats) -> np.ndarray:
    files = frame_files(folder)
    if not files:
        raise VideoSkip(SkipReason.EMPTY_VIDEO, folder, f"no {'/'.join(FRAME_EXTENSIONS)} frames in the folder")
    indices = sample_frame_indices(len(files), num_frames, rng)
    loaded: dict[int, np.ndarray] = {}
    try:
        for i in sorted(set(indices)):
            with Image.open(files[i]) as image:
                loaded[i] = np.asarray(image.convert("RGB"))
            stats.decoded, stats.converted = stats.decoded + 1, stats.converted + 1
        return np.stack([loaded[i] for i in indices])
    except (OSError, ValueError) as e:  # truncated/corrupt image, or frames of different sizes
        raise VideoSkip(SkipReason.CORRUPT_IMAGE, folder, f"frame {files[i]!r}: {e}") from None


# ----------------------------------------------------------------------------- public entry points
def read_clip(path: str | os.PathLike, num_frames: int, rng: random.Random | None = None,
              stats: DecodeStats | None = None, threads: int = 1) -> np.ndarray:
    """``num_frames`` RGB frames [T, H, W, 3] uint8 of a video file or frames folder.

    ``rng`` None = centred (evaluation). Raises :class:`VideoSkip` (never an FFmpeg error) for a
    missing, empty or undecodable video, so readers can skip and count it.
    """
    path, stats = str(path), stats if stats is not None else DecodeStats()
    if os.path.isdir(path):
        return _read_frame_folder(path, num_frames, rng, stats)
    try:
        return _read_video_file(path, num_frames, rng, stats, threads)
    except (FFmpegError, OSError, ValueError) as e:  # corrupt data, an I/O error, frames that change size
        raise VideoSkip(SkipReason.UNDECODABLE_VIDEO, path, f"decoding failed: {e}") from None


def video_path(root: str | os.PathLike, video_id: str, frames_dir: str | os.PathLike | None = None,
               ext: str = ".mp4") -> Path:
    """Where a video lives: ``frames_dir/<id>/`` (pre-extracted frames) if given, else ``root/<id><ext>``."""
    return Path(frames_dir) / video_id if frames_dir else Path(root) / f"{video_id}{ext}"


def write_mp4(path: str | Path, frames: list[np.ndarray], fps: int, gop: int, crf: int = 18) -> None:
    """H.264 (yuv420p) via PyAV; ``gop`` = keyframe interval (scene-cut keyframes off: exact GOPs)."""
    options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "crf": str(crf), "preset": "veryfast"}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())

"""Video I/O at the edge of Kinema: uint8 (T, H, W, 3) frames plus an fps."""

from kinema.io.atomic import atomic_path, atomic_write_text
from kinema.io.video import (
    VideoError,
    VideoInfo,
    check_frames,
    contact_sheet,
    probe,
    read_video,
    write_contact_sheet,
    write_gif,
    write_video,
)

__all__ = [
    "VideoError",
    "VideoInfo",
    "atomic_path",
    "atomic_write_text",
    "check_frames",
    "contact_sheet",
    "probe",
    "read_video",
    "write_contact_sheet",
    "write_gif",
    "write_video",
]

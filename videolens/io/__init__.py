"""Reading inputs: videos (decoded frames with their timestamps)."""

from videolens.io.video import Video, load_video

__all__ = ["Video", "load_video"]
